"""The kubernetes target: one namespace per environment, the workloads a Kubernetes engineer would
write (see `manifests`), applied server-side and waited for like `kubectl rollout status`.

Images are built on the local Docker engine and pushed to the pipeline's `registry:`, where the
cluster pulls them from; the same content tags as the docker target, so nothing is built twice.
The Docker login for that registry becomes an image pull Secret of each environment, and a public
service's Ingress serves https when the target has `tls:` (DESIGN.md §11).
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from deploy_pipeline.backends import manifests, sizing
from deploy_pipeline.backends.base import (
    BackendState,
    LogStream,
    StepContext,
    StepResult,
    replica_names,
)
from deploy_pipeline.backends.build import Builder
from deploy_pipeline.backends.kube import MANAGER, ApplyConflict, Cluster
from deploy_pipeline.backends.kube_sizing import advised, check_volume, prune, scale_up
from deploy_pipeline.backends.patches import apply_patches
from deploy_pipeline.backends.registry_login import (
    Found,
    Login,
    docker_login,
    image_registry,
    registry_of,
)
from deploy_pipeline.errors import DeployPipelineError, NoLogs, PermanentError, StepError
from deploy_pipeline.model import Service, Target

POLL = 0.25
WATCH = 1  # seconds a watch lasts before the step looks at its deadline and cancel again
WORKLOADS = [
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
]
EVERYTHING = [
    *WORKLOADS,
    ("v1", "Service"),
    ("networking.k8s.io/v1", "Ingress"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Secret"),  # a service's own image pull Secret (its `registry_auth:` login)
    sizing.HPA,
    sizing.PDB,
]


class KubernetesBackend:
    def __init__(
        self,
        target: Target,
        state: BackendState,
        *,
        root: Path,
        registry: str | None,
        rehearsal: bool = False,
        force_conflicts: bool = False,
    ) -> None:
        if rehearsal:
            raise AssertionError("a rehearsal runs on the simulated backend")
        self.target, self.state, self.root, self.registry = target, state, root, registry
        self.force = force_conflicts
        try:
            self.cluster = Cluster(target.context)
        except DeployPipelineError as exc:
            context = f"context {target.context}" if target.context else "the current context"
            raise DeployPipelineError(
                f"target '{target.name}' cannot reach its cluster ({context} of KUBECONFIG): "
                f"{exc}; check the kubeconfig, or rehearse with --dry-run"
            ) from exc
        self.builder: Builder | None = None
        self.lock = threading.Lock()
        self.namespaces: set[str] = set()
        self.login: Found | None = None  # the Docker login for `registry:`, read on first use
        self.pull_namespaces: set[str] = set()  # those that hold its image pull Secret

    def close(self) -> None:
        self.cluster.close()
        if self.builder is not None:
            self.builder.engine.close()

    # --- the step protocol ---------------------------------------------------------------------

    def build(self, ctx: StepContext) -> StepResult:
        return self.images().build(ctx)

    def test(self, ctx: StepContext) -> StepResult:
        """On the local engine that built the image, before it is pushed for the cluster."""
        return self.images().test(ctx)

    def image_status(self, service: Service) -> str:
        """For `plan` and rehearsals: whether a build of the service would be reused (its
        content-tagged image is in the registry) or is to build."""
        plan = self.images().image(service)
        return f"{'reused' if plan.exists else 'to build'}: {plan.ref}"

    def images(self) -> Builder:
        """The builder that makes and pushes this target's images (the engine is reached on
        first use: a target with nothing to build never needs one)."""
        if not self.registry:
            raise PermanentError(
                "a kubernetes target pulls its images from a registry: set "
                "`registry:` in the pipeline file"
            )
        with self.lock:
            if self.builder is None:
                from deploy_pipeline.backends.engine import Engine

                self.builder = Builder(Engine(), self.root, self.registry)
            return self.builder

    def image_user(self, image: str) -> str | None:
        """The user a built image runs as, when the local engine has it (it built it, or a
        promotion's image it built before); None when no engine or image is at hand."""
        try:
            return self.images().engine.image_user(image)
        except DeployPipelineError:
            return None

    def deploy(self, ctx: StepContext) -> StepResult:
        svc, env = ctx.service, ctx.environment
        image = ctx.artifact or svc.image
        if image is None:
            raise PermanentError(f"{svc.name} has no image: its build did not produce one")
        if ctx.artifact and self.builder is not None:  # built and pushed: run it by its digest
            engine = self.builder.engine
            image = engine.repo_digest(image) or engine.registry_digest(image) or image
        if svc.build is not None:  # built here: restricted where its image allows it
            svc = ctx.service = as_its_user(svc, self.image_user(image))
        self.ensure_namespace(ctx)
        # each service owns its own keys of the environment's Secret (its login's are not there)
        if own := ctx.service_secrets():
            self.apply(manifests.secret(env, own), manager=f"{MANAGER}-{svc.name}")
        host = manifests.host_for(self.target.domain, env, svc.name)
        objects = manifests.service_objects(
            env,
            svc,
            image,
            run=ctx.run or _stamp(),
            host=host,
            tls=self.target.tls,
            pull_secrets=self.pull_secrets(ctx, image),
        )
        objects = apply_patches(objects, svc)  # the escape hatch (DESIGN.md §11)
        if host and svc.public and svc.port:
            self.note_tls_secret(ctx)
        if svc.type == "database":
            check_volume(self.cluster, env, svc)
        unscaled = prune(self.cluster, env, svc, objects)
        for obj in objects:
            # an autoscaler just removed owned the replicas: they are ours again
            self.apply(obj, force=unscaled and obj["kind"] == "Deployment")
        main = next(o for o in objects if (o["apiVersion"], o["kind"]) in WORKLOADS)
        kind, name = main["kind"], main["metadata"]["name"]
        if svc.autoscale is not None:
            scale_up(self.cluster, env, name, svc.autoscale.min)
        if kind == "CronJob":
            return StepResult(message=f"CronJob {name} scheduled ({svc.schedule})", image=image)
        if kind == "Job":
            self.wait_job(ctx, name)
            return StepResult(message=f"Job {name} completed", image=image)
        self.wait_rollout(ctx, main["apiVersion"], kind, name)
        url = self.url(host) if svc.public else None
        return StepResult(message=f"{kind} {name} available ({image})", url=url, image=image)

    def restart(self, ctx: StepContext) -> StepResult:
        svc, env = ctx.service, ctx.environment
        if svc.type == "job":
            return StepResult(
                status="skipped", message="a job is not restarted; deploy runs it again"
            )
        api, kind = (
            ("apps/v1", "StatefulSet") if svc.type == "database" else ("apps/v1", "Deployment")
        )
        if self.cluster.get(api, kind, svc.name, env) is None:
            raise PermanentError(
                f"{svc.name} is not deployed in {env} on target {self.target.name}: deploy it first"
            )
        stamp = datetime.datetime.now(datetime.UTC).isoformat()
        patch = {
            "spec": {
                "template": {
                    "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}
                }
            }
        }
        self.cluster.patch(api, kind, svc.name, env, patch)
        self.wait_rollout(ctx, api, kind, svc.name)
        return StepResult(message=f"{kind} {svc.name} restarted")

    def stop(self, ctx: StepContext) -> StepResult:
        svc, env = ctx.service, ctx.environment
        done = []
        for api, kind in WORKLOADS:
            for obj in self.cluster.objects(api, kind, env, {manifests.SERVICE_LABEL: svc.name}):
                name = obj["metadata"]["name"]
                if kind in ("Deployment", "StatefulSet"):
                    self.cluster.patch(api, kind, name, env, {"spec": {"replicas": 0}})
                    done.append(f"{kind} {name} scaled to 0")
                elif kind == "CronJob":
                    self.cluster.patch(api, kind, name, env, {"spec": {"suspend": True}})
                    done.append(f"CronJob {name} suspended")
        return StepResult(message="; ".join(done) if done else "nothing running")

    def delete(self, ctx: StepContext) -> StepResult:
        svc, env = ctx.service, ctx.environment
        removed = 0
        for api, kind in EVERYTHING:
            for obj in self.cluster.objects(api, kind, env, {manifests.SERVICE_LABEL: svc.name}):
                removed += self.cluster.delete(api, kind, obj["metadata"]["name"], env)
        left = sum(
            len(self.cluster.objects(api, kind, env, {manifests.ENV_LABEL: env}))
            for api, kind in WORKLOADS
        )
        if not left and self.cluster.get("v1", "Namespace", env, None) is not None:
            self.cluster.delete("v1", "Namespace", env, None)
            while self.cluster.get("v1", "Namespace", env, None) is not None:
                if ctx.remaining() <= POLL * 2:
                    raise PermanentError(f"namespace {env} is still terminating at the timeout")
                ctx.sleep(POLL)
            with self.lock:
                self.namespaces.discard(env)
                self.pull_namespaces.discard(env)
            return StepResult(message=f"removed {removed} objects and namespace {env}")
        return StepResult(message=f"removed {removed} objects" if removed else "nothing to delete")

    def status(self, environment: str, service: Service) -> str:
        for api, kind in WORKLOADS:
            if self.cluster.objects(
                api, kind, environment, {manifests.SERVICE_LABEL: service.name}
            ):
                return kind
        return "absent"

    def service_url(self, environment: str, service: Service) -> str | None:
        """A public service's Ingress URL (for `${url:SERVICE}`), as its deploy reports it."""
        host = manifests.host_for(self.target.domain, environment, service.name)
        return self.url(host) if service.public else None

    def url(self, host: str | None) -> str | None:
        return manifests.public_url(host, self.target.tls)

    def service_logs(
        self,
        environment: str,
        service: Service,
        *,
        tail: int | None,
        follow: bool,
        stop: threading.Event,
    ) -> list[LogStream]:
        """Each of the service's pods' output, oldest pod first (a job's pods included)."""
        pods = sorted(
            self.cluster.objects("v1", "Pod", environment, {manifests.SERVICE_LABEL: service.name}),
            key=lambda p: (str(p["metadata"].get("creationTimestamp", "")), p["metadata"]["name"]),
        )
        names = replica_names(service.name, len(pods))
        return [
            LogStream(name, self.pod_lines(pod, environment, tail=tail, follow=follow, stop=stop))
            for name, pod in zip(names, pods, strict=True)
        ]

    def pod_lines(
        self,
        pod: Mapping[str, Any],
        environment: str,
        *,
        tail: int | None,
        follow: bool,
        stop: threading.Event,
    ) -> Iterator[str]:
        """One pod's lines; what the API server answers instead of a log becomes NoLogs."""
        name, node = pod["metadata"]["name"], (pod.get("spec") or {}).get("nodeName")
        lines = self.cluster.pod_log(name, environment, tail=tail, follow=follow, stop=stop)
        try:
            yield from lines
        except StepError as exc:
            raise NoLogs(no_logs(name, node, str(exc))) from exc

    # --- helpers -------------------------------------------------------------------------------

    def pull_secrets(self, ctx: StepContext, image: str) -> list[str]:
        """The image pull Secrets the service's workloads name, applied first: the Docker login
        for the pipeline's `registry:` when the image comes from there, and the service's own
        `registry_auth:` login for its image's registry. No login, no Secret (an anonymous pull)."""
        svc, env, registry = ctx.service, ctx.environment, image_registry(image)
        names = []
        if self.registry and registry == registry_of(self.registry):
            found = self.docker_login()
            if found.login is not None:
                self.ensure_registry_secret(env, found.login)
                names.append(manifests.REGISTRY_SECRET)
                ctx.log(
                    f"pulls through {manifests.REGISTRY_SECRET}: the Docker login for {registry}"
                )
            elif found.note:
                ctx.log(f"no image pull Secret: {found.note}")
        auth = svc.registry_auth
        if auth is not None:
            user, password = ctx.secrets.get(auth.username), ctx.secrets.get(auth.password)
            if not user or not password:
                unset = [n for n, v in ((auth.username, user), (auth.password, password)) if not v]
                raise PermanentError(
                    f"{svc.name}'s registry_auth names {' and '.join(unset)}, which "
                    f"{'is' if len(unset) == 1 else 'are'} empty or not set: export "
                    f"{'it' if len(unset) == 1 else 'them'} before deploying"
                )
            name = manifests.login_secret_name(svc.name)
            login = Login(registry, user, password)
            self.apply(manifests.pull_secret(env, name, login, svc.name))
            names.append(name)
            ctx.log(f"pulls through {name}: the login in {auth.username} and {auth.password}")
        return names

    def docker_login(self) -> Found:
        with self.lock:
            if self.login is None:
                self.login = docker_login(registry_of(self.registry or ""))
            return self.login

    def ensure_registry_secret(self, environment: str, login: Login) -> None:
        """The environment's image pull Secret for `registry:`, applied once per run."""
        with self.lock:
            if environment in self.pull_namespaces:
                return
        self.apply(manifests.pull_secret(environment, manifests.REGISTRY_SECRET, login))
        with self.lock:
            self.pull_namespaces.add(environment)

    def note_tls_secret(self, ctx: StepContext) -> None:
        """With `tls: {secret}`, say when that Secret is not in the environment's namespace: the
        Ingress controller serves its own default certificate until it is."""
        tls = self.target.tls
        if tls is None or not tls.secret:
            return
        try:
            found = self.cluster.get("v1", "Secret", tls.secret, ctx.environment)
        except DeployPipelineError:  # not allowed to read Secrets: nothing to say
            return
        if found is None:
            ctx.log(
                f"TLS Secret {tls.secret} is not in namespace {ctx.environment}: the Ingress "
                "controller serves its default certificate until it is there"
            )

    def apply(self, obj: dict[str, Any], *, manager: str = MANAGER, force: bool = False) -> None:
        """Apply server-side. Fields our own stop or restart patched are taken back; fields
        another tool owns are a clear error, not silently overwritten."""
        try:
            self.cluster.apply(obj, manager=manager, force=self.force or force)
        except ApplyConflict as exc:
            if exc.managers and all(m.startswith(MANAGER) for m in exc.managers):
                self.cluster.apply(obj, manager=manager, force=True)
                return
            owners = ", ".join(sorted(exc.managers)) or "another field manager"
            raise PermanentError(
                f"{exc} (owned by {owners}); change them back, or deploy with "
                "--force-conflicts to take them over"
            ) from exc

    def environment_records(self) -> dict[str, Mapping[str, object]]:
        """The records on the namespaces deploy-pipeline made here (not those being deleted)."""
        found: dict[str, Mapping[str, object]] = {}
        selector = {"app.kubernetes.io/managed-by": MANAGER}
        for ns in self.cluster.objects("v1", "Namespace", None, selector):
            meta = ns.get("metadata") or {}
            text = (meta.get("annotations") or {}).get(manifests.RECORD)
            if not text or (ns.get("status") or {}).get("phase") == "Terminating":
                continue
            try:
                record = json.loads(text)
            except ValueError:
                continue  # edited by hand into something else: not ours to guess at
            if isinstance(record, dict):
                found[str(meta["name"])] = record
        return found

    def keep_release(self, environment: str, release: Mapping[str, object]) -> None:
        """Write the environment's latest release on its namespace, for `env recover`."""
        if self.cluster.get("v1", "Namespace", environment, None) is None:
            return  # nothing of it here (every service skipped on this target)
        annotations = {manifests.RELEASE: json.dumps(dict(release), sort_keys=True)}
        self.cluster.patch(
            "v1", "Namespace", environment, None, {"metadata": {"annotations": annotations}}
        )

    def environment_releases(
        self, environments: Collection[str] | None = None
    ) -> dict[str, Mapping[str, object]]:
        """The latest release on each namespace deploy-pipeline made here (of the named
        environments, when given)."""
        found: dict[str, Mapping[str, object]] = {}
        selector = {"app.kubernetes.io/managed-by": MANAGER}
        for ns in self.cluster.objects("v1", "Namespace", None, selector):
            meta = ns.get("metadata") or {}
            text = (meta.get("annotations") or {}).get(manifests.RELEASE)
            if not text or (ns.get("status") or {}).get("phase") == "Terminating":
                continue
            try:
                release = json.loads(text)
            except ValueError:
                continue  # edited by hand into something else: not ours to guess at
            name = str(meta["name"])
            if environments is not None and name not in environments:
                continue
            if isinstance(release, dict) and release.get("target") == self.target.name:
                found[name] = release
        return found

    def ensure_namespace(self, ctx: StepContext) -> None:
        with self.lock:
            if ctx.environment in self.namespaces:
                return
        self.apply(manifests.namespace(ctx.environment, ctx.record))
        with self.lock:
            self.namespaces.add(ctx.environment)

    def wait_rollout(self, ctx: StepContext, api: str, kind: str, name: str) -> None:
        """Done when the new generation is observed and every replica is updated and available."""
        ready_key = "availableReplicas" if kind == "Deployment" else "readyReplicas"
        begun = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
        since = begun.strftime("%Y-%m-%dT%H:%M:%SZ")  # as the API server writes its times

        def done(obj: Mapping[str, Any] | None) -> bool:
            spec, status = (obj or {}).get("spec", {}), (obj or {}).get("status") or {}
            want = int(spec.get("replicas", 1))
            generation = (obj or {}).get("metadata", {}).get("generation", 0)
            return refused(obj, since) is not None or (
                obj is not None
                and status.get("observedGeneration", 0) >= generation
                and status.get("updatedReplicas", 0) >= want
                and status.get(ready_key, 0) >= want
                and status.get("replicas", 0) == want
            )

        obj = self.follow(ctx, api, kind, name, done)
        if (why := refused(obj, since)) is not None:
            raise PermanentError(
                f"{kind} {name}: the cluster refuses to create its pods: {why}; change what it "
                "refuses (the service's settings or patches, or the cluster's objects), then "
                "deploy again"
            )
        if not done(obj):
            status = (obj or {}).get("status") or {}
            want = int((obj or {}).get("spec", {}).get("replicas", 1))
            raise PermanentError(
                f"{kind} {name}: {status.get(ready_key, 0)}/{want} ready at the timeout; "
                + self.reasons(ctx.environment, ctx.service)
            )

    def wait_job(self, ctx: StepContext, name: str) -> None:
        def finished(obj: Mapping[str, Any] | None) -> bool:
            status = (obj or {}).get("status") or {}
            return bool(status.get("succeeded", 0) or status.get("failed", 0))

        status = (self.follow(ctx, "batch/v1", "Job", name, finished) or {}).get("status") or {}
        if status.get("succeeded", 0) >= 1:
            return
        what = "failed" if status.get("failed", 0) else "not complete at the timeout"
        raise PermanentError(f"Job {name} {what}; " + self.reasons(ctx.environment, ctx.service))

    def follow(
        self,
        ctx: StepContext,
        api: str,
        kind: str,
        name: str,
        done: Callable[[Mapping[str, Any] | None], bool],
    ) -> Mapping[str, Any] | None:
        """Watch an object until `done` holds for it, or until a second before the step's
        timeout, so the reasons are still gathered in time; cancellation is seen within WATCH."""
        while True:
            if ctx.remaining() > WATCH + 1.5:
                obj = self.cluster.watch(api, kind, name, ctx.environment, done, WATCH)
            else:
                obj = self.cluster.get(api, kind, name, ctx.environment)
            if done(obj) or ctx.remaining() <= POLL * 4:
                return obj
            ctx.sleep(0 if ctx.remaining() > WATCH + 1.5 else POLL)

    def reasons(self, env: str, svc: Service) -> str:
        """What a human needs: why the pods are not ready, and the Warning events, de-duplicated."""
        found: dict[str, None] = {}
        for pod in self.cluster.objects("v1", "Pod", env, {manifests.SERVICE_LABEL: svc.name}):
            status = pod.get("status", {})
            for cond in status.get("conditions") or []:
                if cond.get("status") == "False" and cond.get("reason"):
                    found.setdefault(
                        f"{cond['type']} {cond['reason']}: {cond.get('message', '')}".strip(": "),
                        None,
                    )
            for cs in status.get("containerStatuses") or []:
                state: Mapping[str, Any] = cs.get("state") or {}
                for phase in ("waiting", "terminated"):
                    if phase in state and state[phase].get("reason"):
                        detail = state[phase]
                        code = f" (exit code {detail['exitCode']})" if "exitCode" in detail else ""
                        found.setdefault(
                            f"{detail['reason']}{code}: {detail.get('message', '')}".strip(": "),
                            None,
                        )
        for warning in self.cluster.warnings(env, {svc.name}):
            found.setdefault(warning, None)
        return advised("; ".join(found)) if found else "no pod says why"


def no_logs(pod: str, node: str | None, answer: str) -> str:
    """Why a pod's log cannot be shown, from the API server's answer. The server reads a log
    from the kubelet of the pod's node. A node with no kubelet endpoint (kwok's simulated nodes:
    port 0, no container runs) makes it answer 404 for the `pods/log` resource; one it cannot
    reach, an error about dialling it."""
    answer = answer.split(": ", 1)[-1] if answer.startswith("reading the log") else answer
    unserved = f"( pods/log {pod})" in answer or any(
        w in answer for w in ("dial tcp", "kubelet", "no route to host")
    )
    if node and unserved:
        return f"no logs: node {node} does not serve them (the API server answered: {answer})"
    return f"no logs: {answer}"


def refused(obj: Mapping[str, Any] | None, since: str = "") -> str | None:
    """Why the cluster refuses to create a workload's pods (its admission said `forbidden`: no
    such PriorityClass, a quota, a policy), from a ReplicaFailure condition updated at `since`
    (an RFC 3339 UTC time) or later; None otherwise. Waiting would not help: the rollout fails at
    once, saying why. An older condition is a refusal the user may have fixed since: the
    controller tries again, and the rollout waits for it."""
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        message = str(condition.get("message") or "")
        updated = str(condition.get("lastUpdateTime") or condition.get("lastTransitionTime") or "")
        if (
            condition.get("type") == "ReplicaFailure"
            and condition.get("status") == "True"
            and "forbidden" in message
            and updated >= since
        ):
            return message
    return None


def as_its_user(svc: Service, user: str | None) -> Service:
    """A built service runs restricted (non-root) where its image allows it (DESIGN.md §11): an
    image with no `USER`, or root's, runs as root instead of failing to start, unless the file
    says how it runs (`security: {run_as_root: …}`). None: the image is not known here."""
    if user is None or svc.security.run_as_root is not None:
        return svc
    root = user.split(":")[0] in ("", "root", "0")
    return replace(svc, security=replace(svc.security, run_as_root=root)) if root else svc


def _stamp() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime())
