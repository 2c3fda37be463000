"""The docker target: a laptop or a CI runner becomes a small environment.

One bridge network per environment (`dp-<environment>`, services reach each other by name);
every container, volume and network labelled with deploy-pipeline's labels, so a delete finds
them all without the store. Long-running services are replaced start-new-first, so a redeploy
of a healthy service never leaves it down.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets as secrets_module
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from deploy_pipeline import quantities
from deploy_pipeline.backends.base import (
    DATA,
    BackendState,
    LogStream,
    StepContext,
    StepResult,
    data_path,
    gone_image,
    replica_names,
)
from deploy_pipeline.backends.build import Builder
from deploy_pipeline.backends.containers import Container, ContainerSpec
from deploy_pipeline.backends.engine import Engine
from deploy_pipeline.errors import DeployPipelineError, PermanentError
from deploy_pipeline.model import Service, Target

ENV_LABEL = "io.deploy-pipeline.environment"
SERVICE_LABEL = "io.deploy-pipeline.service"
SPEC_LABEL = "io.deploy-pipeline.spec"
GEN_LABEL = "io.deploy-pipeline.generation"
RELEASE_LABEL = "io.deploy-pipeline.release"  # the release that deployed it, with its part of it
RELEASE_KEYS = ("id", "run", "action", "commit", "source", "rolled_back_to", "finished")
STABLE = 1.5  # seconds a service with no health check must stay up to count as started
POLL = 0.25
FIRST_POLL = 0.02  # the first wait between health checks, doubling up to POLL


class DockerBackend:
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
        self.target, self.state = target, state
        try:
            self.engine = Engine()
        except DeployPipelineError as exc:
            raise DeployPipelineError(
                f"target '{target.name}' needs a Docker engine and none answers ({exc}); start "
                "one or set DOCKER_HOST, or rehearse with --dry-run"
            ) from exc
        self.builder = Builder(self.engine, root, registry)

    # --- the step protocol ---------------------------------------------------------------------

    def build(self, ctx: StepContext) -> StepResult:
        return self.builder.build(ctx)

    def test(self, ctx: StepContext) -> StepResult:
        return self.builder.test(ctx)

    def deploy(self, ctx: StepContext) -> StepResult:
        svc = ctx.service
        if svc.type == "job" and svc.schedule is not None:
            return StepResult(status="skipped", message="cron jobs need a Kubernetes target")
        image = ctx.artifact or svc.image
        if image is None:
            raise PermanentError(f"{svc.name} has no image: its build did not produce one")
        # prebuilt, or reused from the registry but no longer on this engine: pull it
        try:
            self.engine.ensure_image(image, ctx.log)
        except PermanentError as exc:
            raise gone_image(ctx, image) or exc from exc
        # what runs is the digest, never a moving tag: an image pushed to (or pulled from) a
        # registry runs as REPO@sha256:…; one only this engine has is known by its id
        digest = self.engine.repo_digest(image)
        runs = digest or self.engine.local_image(image) or image
        image = digest or image
        network = f"dp-{ctx.environment}"
        self.engine.ensure_network(network, {ENV_LABEL: ctx.environment})
        if svc.type == "job":
            return replace(self.run_job(ctx, image, network, runs=runs), image=runs)
        spec = self.spec_hash(ctx, image)
        old = self.engine.containers(self.labels(ctx))
        if (
            len(old) == svc.replicas
            and all(self.as_specified(ctx, c, image, spec) for c in old)
            and all(c.status == "running" for c in old)
        ):
            return StepResult(
                message="unchanged, already running", url=self.url(svc, old), image=runs
            )
        generation = 1 + max((int(c.labels.get(GEN_LABEL, "0")) for c in old), default=0)
        if svc.type == "database":  # one volume: never two database processes on it at once
            for c in old:
                self.engine.remove(c.id)
            old = []
        labels = {
            **self.labels(ctx),
            SPEC_LABEL: spec,
            GEN_LABEL: str(generation),
            **self.release_label(ctx, runs),
        }
        volumes = self.volumes(ctx)
        started: list[Container] = []
        try:
            for i in range(svc.replicas if svc.type != "database" else 1):
                started.append(
                    self.engine.run(
                        ContainerSpec(
                            name=f"dp-{ctx.environment}-{svc.name}-{generation}-{i}",
                            image=image,
                            labels=labels,
                            network=network,
                            alias=svc.name,
                            command=svc.command,
                            env={**dict(svc.env), **ctx.service_secrets()},
                            port=svc.port,
                            volumes=volumes,
                            memory=memory_limit(svc),
                            nano_cpus=cpu_limit(svc),
                        )
                    )
                )
            started = [self.wait_healthy(ctx, c) for c in started]
        except BaseException:
            for c in started:  # the old containers keep serving; the new ones go
                self.engine.remove(c.id)
            raise
        each(self.engine.remove, [c.id for c in old])
        return StepResult(
            message=f"{len(started)} running ({image})", url=self.url(svc, started), image=runs
        )

    def run_job(
        self, ctx: StepContext, image: str, network: str, *, runs: str | None = None
    ) -> StepResult:
        """Run the job to completion. Its last run's container is started again when nothing
        changed (as compose does), or replaced by a new one."""
        svc, spec = ctx.service, self.spec_hash(ctx, image)
        job = None
        for c in self.engine.containers(self.labels(ctx)):
            if job is None and self.as_specified(ctx, c, image, spec) and c.status == "exited":
                job = c
            else:
                self.engine.remove(c.id)
        begun = time.time()
        if job is not None:
            self.engine.start(job.id)
        else:
            job = self.engine.run(
                ContainerSpec(
                    name=f"dp-{ctx.environment}-{svc.name}-{int(begun)}",
                    image=image,
                    labels={
                        **self.labels(ctx),
                        SPEC_LABEL: spec,
                        **self.release_label(ctx, runs or image),
                    },
                    network=network,
                    alias=svc.name,
                    command=svc.command,
                    env={**dict(svc.env), **ctx.service_secrets()},
                    restart=False,
                    volumes=self.volumes(ctx),
                    memory=memory_limit(svc),
                    nano_cpus=cpu_limit(svc),
                )
            )
        while self.engine.wait(job.id, timeout=1) is None:  # back at once when it exits
            if ctx.cancel.is_set() or ctx.remaining() <= 1:
                raise PermanentError(
                    f"{svc.name} did not finish within its timeout; " + self.last_lines(job.id)
                )
        info = self.engine.inspect(job.id)
        output = self.engine.logs(job.id, tail=200, since=begun - 0.5)
        for line in output.splitlines():
            ctx.log(line)
        if info.exit_code != 0:
            last = "\n".join(output.splitlines()[-10:])
            raise PermanentError(
                f"{svc.name} exited with code {info.exit_code}; "
                + (f"last log lines:\n{last}" if last else "it wrote no log")
            )
        return StepResult(message="ran to completion (exit code 0)")

    def restart(self, ctx: StepContext) -> StepResult:
        found = self.engine.containers(self.labels(ctx))
        if not found:
            if ctx.service.type == "job":
                return StepResult(status="skipped", message="a job has nothing running to restart")
            raise PermanentError(
                f"{ctx.service.name} is not deployed in {ctx.environment} on "
                f"target {self.target.name}: deploy it first"
            )
        if ctx.service.type == "job":
            return StepResult(
                status="skipped", message="a job is not restarted; deploy runs it again"
            )
        each(self.engine.restart, [c.id for c in found])
        healthy = [self.wait_healthy(ctx, self.engine.inspect(c.id)) for c in found]
        return StepResult(message=f"{len(healthy)} restarted", url=self.url(ctx.service, healthy))

    def stop(self, ctx: StepContext) -> StepResult:
        found = [c for c in self.engine.containers(self.labels(ctx)) if c.status == "running"]
        each(self.engine.stop, [c.id for c in found])
        return StepResult(message=f"{len(found)} stopped" if found else "nothing running")

    def delete(self, ctx: StepContext) -> StepResult:
        labels = self.labels(ctx)
        found = self.engine.containers(labels)
        each(self.engine.remove, [c.id for c in found])
        volumes = self.engine.volumes(labels)
        for volume in volumes:
            self.engine.remove_volume(volume)
        left = self.engine.containers({ENV_LABEL: ctx.environment})
        if not left:  # the environment's last service is gone: so is its network
            self.engine.remove_network(f"dp-{ctx.environment}")
        what = f"{len(found)} containers" + (f", {len(volumes)} volumes" if volumes else "")
        return StepResult(message=f"removed {what}" if found or volumes else "nothing to delete")

    def image_status(self, service: Service) -> str:
        plan = self.builder.image(service)
        return f"{'reused' if plan.exists else 'to build'}: {plan.ref}"

    def close(self) -> None:
        self.engine.close()

    def service_url(self, environment: str, service: Service) -> str | None:
        """The URL of a service's running containers (for `${url:SERVICE}`)."""
        found = self.engine.containers({ENV_LABEL: environment, SERVICE_LABEL: service.name})
        return self.url(service, [c for c in found if c.status == "running"])

    def status(self, environment: str, service: Service) -> str:
        found = self.engine.containers({ENV_LABEL: environment, SERVICE_LABEL: service.name})
        states = sorted({c.status for c in found})
        return ",".join(states) if states else "absent"

    def service_logs(
        self,
        environment: str,
        service: Service,
        *,
        tail: int | None,
        follow: bool,
        stop: threading.Event,
    ) -> list[LogStream]:
        """Each of the service's containers' output (stopped ones too: their last words count),
        replicas in the order of their names."""
        found = self.engine.containers({ENV_LABEL: environment, SERVICE_LABEL: service.name})
        return [
            LogStream(name, self.engine.log_lines(c.id, tail=tail, follow=follow, stop=stop))
            for name, c in zip(replica_names(service.name, len(found)), found, strict=True)
        ]

    def environment_releases(
        self, environments: Collection[str] | None = None
    ) -> dict[str, Mapping[str, object]]:
        """The latest release of each environment on this engine, read from its containers'
        labels: each container carries the release that deployed it and its own part of it
        (a service a later release carried over keeps its older label, with the same image
        and settings), so the newest number with every service's newest part is the whole.
        Only the named environments' containers are read, when `environments` is given."""
        parts: dict[str, dict[str, dict[str, Any]]] = {}
        if environments is None:
            containers = self.engine.containers({})
        else:
            containers = [c for e in environments for c in self.engine.containers({ENV_LABEL: e})]
        for c in containers:
            text, env = c.labels.get(RELEASE_LABEL), c.labels.get(ENV_LABEL)
            service = c.labels.get(SERVICE_LABEL)
            try:
                part = json.loads(text) if text else None
            except ValueError:
                continue  # edited by hand into something else: not ours to guess at
            if not (isinstance(part, dict) and env and service and isinstance(part.get("id"), int)):
                continue
            if part.get("target") != self.target.name:
                continue
            mine = parts.setdefault(env, {})
            if service not in mine or part["id"] > mine[service]["id"]:
                mine[service] = part
        found: dict[str, Mapping[str, object]] = {}
        for env, services in parts.items():
            newest = max(services.values(), key=lambda p: int(p["id"]))
            found[env] = {
                **{k: newest.get(k) for k in RELEASE_KEYS},
                "target": self.target.name,
                "services": {
                    name: {k: part.get(k) for k in ("image", "target", "env", "replicas")}
                    for name, part in sorted(services.items())
                },
            }
        return found

    # --- helpers -------------------------------------------------------------------------------

    def release_label(self, ctx: StepContext, image: str) -> dict[str, str]:
        """The label that says which release deployed a container, with its part of it (the
        image by digest, the settings): what `env recover` reads back. None outside a deploy
        that makes a release."""
        note = ctx.release
        if not note:
            return {}
        settings = note.get("settings")
        mine = settings.get(ctx.service.name) if isinstance(settings, Mapping) else None
        part = {
            **{k: note.get(k) for k in RELEASE_KEYS},
            "finished": time.time(),
            "image": image,
            "target": self.target.name,
            **(dict(mine) if isinstance(mine, Mapping) else {}),
        }
        return {RELEASE_LABEL: json.dumps(part, sort_keys=True)}

    def volumes(self, ctx: StepContext) -> dict[str, str]:
        """A database's volume (at its image's data folder), or the one `storage:` asks for
        (at its path, or /data): volume name → path inside. Docker volumes have no size."""
        svc = ctx.service
        if svc.type != "database" and svc.storage is None:
            return {}
        volume = f"dp-{ctx.environment}-{svc.name}-data"
        self.engine.ensure_volume(volume, self.labels(ctx))
        path = svc.storage.path if svc.storage is not None else None
        default = data_path(svc.image or "") if svc.type == "database" else DATA
        return {volume: path or default}

    def labels(self, ctx: StepContext) -> dict[str, str]:
        return {ENV_LABEL: ctx.environment, SERVICE_LABEL: ctx.service.name}

    def spec_hash(self, ctx: StepContext, image: str, image_id: str | None = None) -> str:
        """What the running containers must match to be left alone. Secret values count (a
        rotated secret redeploys) but only through a keyed hash: labels never reveal them.
        `image_id`: the engine's id of `image`, when known (else it is looked up)."""
        svc = ctx.service
        key = self.state.get("spec-key")
        if key is None:
            key = secrets_module.token_hex(16)
            self.state.put("spec-key", key)
        data = json.dumps(
            [
                image,
                self.engine.local_image(image) if image_id is None else image_id,
                svc.command,
                sorted(svc.env),
                svc.port,
                svc.replicas,
                svc.health,
                sorted(ctx.secrets.items()),
            ]
            # sizing counts once given (a file without it keeps the hash it had)
            + ([sorted(svc.limits), svc.storage and vars(svc.storage)] if sized(svc) else [])
        )
        return hashlib.sha256(f"{key}:{data}".encode()).hexdigest()[:24]

    def as_specified(self, ctx: StepContext, c: Container, image: str, spec: str) -> bool:
        """Whether container `c` runs what `spec` (the hash of `image` and the settings) says.
        Also when it was started from another name of the same image: a release names an image
        only this engine has by its id, where the deploy that started it named it by its tag, so
        a rollback or promotion must not replace what already runs that image as it should."""
        label = c.labels.get(SPEC_LABEL)
        if label == spec:
            return True
        if not c.image or not c.image_id or c.image == image or label is None:
            return False
        return c.image_id == self.engine.local_image(image) and label == self.spec_hash(
            ctx, c.image, c.image_id
        )

    def url(self, svc: Service, running: list[Container]) -> str | None:
        if svc.port is None or not running or svc.port not in running[0].ports:
            return None
        scheme = "tcp" if svc.type == "database" else "http"
        return f"{scheme}://127.0.0.1:{running[0].ports[svc.port]}"

    def last_lines(self, container_id: str) -> str:
        logs = self.engine.logs(container_id, tail=10)
        return f"last log lines:\n{logs}" if logs else "it wrote no log"

    def crashed(self, info: Container, wait: float = 2.0) -> str:
        """How a container that exited says so. One its restart policy has started again reads
        exit code 0 while it runs: the code is read once it has exited again."""
        deadline = time.monotonic() + wait
        while info.status == "running" and time.monotonic() < deadline:
            time.sleep(POLL / 5)
            info = self.engine.inspect(info.id)
        if info.status == "running":
            times = "once" if info.restarts == 1 else f"{info.restarts} times"
            return f"{info.name} exited and was restarted {times}; " + self.last_lines(info.id)
        return f"{info.name} exited with code {info.exit_code}; " + self.last_lines(info.id)

    def wait_healthy(self, ctx: StepContext, container: Container) -> Container:
        """Until the health path answers 2xx, the image's HEALTHCHECK says healthy, or (with
        neither) the container has stayed up for STABLE seconds since its last start. A container
        that exits, or that its restart policy keeps restarting, fails at once."""
        svc, last, seen = ctx.service, "not checked yet", None
        delay = FIRST_POLL  # a server is often up within milliseconds: look again soon, then less
        while True:
            info = self.engine.inspect(container.id)
            if info.status in {"exited", "dead", "restarting"} or info.restarts > 0:
                raise PermanentError(self.crashed(info))
            if info.started_at != seen:  # (re)started: stability counts from here
                seen, since = info.started_at, time.monotonic()
            if svc.health and svc.port and svc.port in info.ports:
                wait = min(2.0, max(ctx.remaining() - POLL, 0.1))
                last = _probe(f"http://127.0.0.1:{info.ports[svc.port]}{svc.health}", wait)
                if last == "ok":
                    return info
            elif info.health is not None:
                if info.health == "healthy":
                    return info
                last = f"its HEALTHCHECK says {info.health}"
            elif info.status == "running" and time.monotonic() - since >= STABLE:
                return info
            if ctx.remaining() <= 2 * POLL:  # report the reason before the runner's deadline
                raise PermanentError(
                    f"{info.name} not healthy within its timeout ({last}); "
                    + self.last_lines(info.id)
                )
            ctx.sleep(delay)
            delay = min(delay * 2, POLL)


def sized(svc: Service) -> bool:
    return bool(svc.limits) or svc.storage is not None


def memory_limit(svc: Service) -> int | None:
    """`resources.limits.memory` in bytes, as the engine takes it (the requests have no Docker
    counterpart: the engine reserves nothing)."""
    given = dict(svc.limits).get("memory")
    memory = quantities.value(given) if given is not None else None
    return math.ceil(memory) if memory is not None else None


def cpu_limit(svc: Service) -> int | None:
    """`resources.limits.cpu` in billionths of a CPU (`docker run --cpus`)."""
    given = dict(svc.limits).get("cpu")
    cpu = quantities.value(given) if given is not None else None
    return math.ceil(cpu * 1_000_000_000) if cpu is not None else None


def _probe(url: str, wait: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=wait) as response:
            return "ok" if 200 <= response.status < 300 else f"GET answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"GET {url.split('/', 3)[-1]} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"GET failed: {getattr(exc, 'reason', exc)}"


def each(action: Callable[[str], None], ids: list[str]) -> None:
    """Apply an engine call to a service's containers at once (plain map for one)."""
    if len(ids) <= 1:
        list(map(action, ids))
        return
    with ThreadPoolExecutor(len(ids)) as pool:
        list(pool.map(action, ids))
