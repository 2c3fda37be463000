"""`plan -e ENV --manifests` (DESIGN.md §11): per Kubernetes target, the objects a deploy would
apply, as YAML documents (as `helm template` prints them), made by the functions a deploy uses,
with no cluster. Secrets' values are left out; a built image is named by the tag its build pushes
(a deploy runs it by that tag's digest); a lifecycle Job is named after a run still to come."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import yaml

from deploy_pipeline.backends import manifests
from deploy_pipeline.backends.patches import apply_patches
from deploy_pipeline.model import Plan, RunPlan, Service, Target
from deploy_pipeline.plan import resolve_env

RUN = "<run>"  # the run's label (run42): known once the deploy starts
LEFT_OUT = "(secret left out: the deploy sets it from NAME in its environment)"


def manifests_text(run_plan: RunPlan, root: Path, registry: str | None) -> str:
    """Every environment's objects, target by target, in the order a deploy applies them."""
    return "\n".join(_environment(plan, root, registry) for plan in run_plan.plans)


def _environment(plan: Plan, root: Path, registry: str | None) -> str:
    env = plan.environment.name
    out = []
    for tp in plan.targets:
        target = tp.target
        if target.kind != "kubernetes":
            out.append(
                f"# deploy {env} · target {target.name} ({target.kind}): no manifests, only a "
                "kubernetes target applies objects"
            )
            continue
        out.append(f"# deploy {env} · target {target.name} (kubernetes)")
        record = {
            "source": plan.environment.source,
            "skipped": sorted(plan.environment.skipped),
            "pull_request": plan.environment.pull_request,
        }
        about = f"target {target.name} · environment {env}: its namespace"
        out.append(_document(about, manifests.namespace(env, record)))
        for sp in tp.stages:
            for planned in sp.services:
                svc = resolve_env(plan, planned.service, partial(_url, plan, target))
                about = f"target {target.name} · stage {sp.name} · service {svc.name}"
                for obj in _objects(plan, target, svc, root, registry):
                    out.append(_document(about, obj))
    return "\n".join(out)


def _objects(
    plan: Plan, target: Target, svc: Service, root: Path, registry: str | None
) -> list[manifests.Manifest]:
    """What a deploy of `svc` applies, in order: its keys of the environment's Secret, then
    its own objects with its patches applied."""
    env = plan.environment.name
    if svc.needs_build:
        from deploy_pipeline.backends.build import image_name

        image = image_name(root, registry, svc)[0]
    else:
        image = svc.image or ""
    objects = []
    if svc.secrets:
        values = {name: secret_placeholder(name) for name in svc.secrets}
        objects.append(manifests.secret(env, values))
    pulls = _pull_secrets(env, svc, image, registry)
    objects.extend(pulls.values())
    host = manifests.host_for(target.domain, env, svc.name)
    made = manifests.service_objects(
        env, svc, image, run=RUN, host=host, tls=target.tls, pull_secrets=list(pulls)
    )
    return objects + apply_patches(made, svc)


def _pull_secrets(
    env: str, svc: Service, image: str, registry: str | None
) -> dict[str, manifests.Manifest]:
    """The image pull Secrets a deploy of `svc` would make and name (DESIGN.md §11), by name,
    each shown with its login left out: the Docker login for the pipeline's registry, when this
    machine has one, and the service's own `registry_auth:`."""
    from deploy_pipeline.backends.registry_login import docker_login, image_registry, registry_of

    found: dict[str, manifests.Manifest] = {}
    where = image_registry(image)
    if registry and where == registry_of(registry) and docker_login(where).login is not None:
        found[manifests.REGISTRY_SECRET] = _left_out_login(env, manifests.REGISTRY_SECRET, where)
    if svc.registry_auth is not None:
        name = manifests.login_secret_name(svc.name)
        found[name] = _left_out_login(env, name, where)
    return found


def _left_out_login(env: str, name: str, registry: str) -> manifests.Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": env},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": f"(login for {registry} left out)"},
    }


def _url(plan: Plan, target: Target, name: str) -> str:
    """`${url:NAME}` as a deploy on `target` makes it: a public service's Ingress URL."""
    other = next((s for s in plan.services if s.name == name), None)
    host = manifests.host_for(target.domain, plan.environment.name, name)
    url = manifests.public_url(host, target.tls)
    return url if other is not None and other.public and url else ""


def _document(about: str, obj: dict[str, Any]) -> str:
    text = yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=100)
    return f"---\n# {about}\n{text.rstrip()}"


def secret_placeholder(name: str) -> str:
    """What `--manifests` shows instead of a secret's value."""
    return LEFT_OUT.replace("NAME", name)
