"""Sizing on a real control plane (DESIGN.md §11): requests and limits, storage, autoscaling
(HPA), disruption budgets, the probes made from `health:` and the security context; the objects
exist with the numbers the file gives, pass the API server's strict validation, follow the
environment's overrides (§8) and go with the service."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.dynamic.exceptions import DynamicApiError

from deploy_pipeline.backends import manifests
from deploy_pipeline.cli import main
from deploy_pipeline.config import parse_config
from deploy_pipeline.model import Service, Storage
from deploy_pipeline.plan import in_environment

pytestmark = pytest.mark.engine

PIPELINE = """
version: 1
targets:
  eu: {{kind: kubernetes, domain: "{{service}}.{{environment}}.example.test"}}
services:
  db: {{type: database, image: postgres:16, port: 5432, storage: 20Gi}}
  cache: {{type: container, image: cache:1, storage: {{size: 5Gi, path: /var/cache/app}}}}
  api:
    type: container
    image: api:1
    port: 8000
    health: /healthz
    public: true
    resources: {{cpu: 250m, memory: 256Mi, limits: {{cpu: "1", memory: 512Mi}}}}
    autoscale: {{min: 2, max: 10, cpu: 70}}
    probes: {{initial_delay: 3s, period: 5s, timeout: 2s, failure_threshold: 4,
             startup_timeout: 1m}}
    security: {{run_as_root: false, read_only: true}}
  web: {{type: container, image: web:1, replicas: 3}}
environments:
  {env}: {{target: eu{overrides}}}
"""


@pytest.fixture
def env(kube_namespace: str) -> str:
    return kube_namespace


def deploy(
    capsys: pytest.CaptureFixture[str], path: Path, env: str, *args: str
) -> list[dict[str, Any]]:
    """Run `deploy` with JSON lines; fail with what a user would read when it does not succeed."""
    code = main(["deploy", "-f", str(path), "-e", env, *args, "--events", "jsonl"])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    if code != 0:
        failed = [e["message"] for e in events if e["status"] == "failed"]
        pytest.fail(f"deploy exited {code}: {failed or err}")
    return events


def pipeline(write_config: Callable[[str], Path], env: str, overrides: str = "") -> Path:
    return write_config(PIPELINE.format(env=env, overrides=overrides))


def names(items: list[Any]) -> list[str]:
    return sorted(i.metadata.name for i in items)


def test_the_objects_carry_the_sizes_probes_and_security_the_file_gives(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An HPA (2–10 at 70% CPU) holds api at its minimum, PDBs guard api and web, limits and
    tuned probes are on api's container, db's claim is 20Gi, cache's own claim is 5Gi at its
    path, and the security context is restricted where asked, the image's own elsewhere."""
    deploy(capsys, pipeline(write_config, env), env)
    hpa = k8s["hpa"].read_namespaced_horizontal_pod_autoscaler("api", env).spec
    assert (hpa.min_replicas, hpa.max_replicas) == (2, 10)
    assert (hpa.scale_target_ref.kind, hpa.scale_target_ref.name) == ("Deployment", "api")
    assert hpa.metrics[0].resource.name == "cpu"
    assert hpa.metrics[0].resource.target.average_utilization == 70
    api = k8s["apps"].read_namespaced_deployment("api", env)
    assert (api.spec.replicas, api.status.available_replicas) == (2, 2)
    budgets = k8s["policy"].list_namespaced_pod_disruption_budget(env).items
    assert names(budgets) == ["api", "web"]  # db and cache run one replica
    assert {b.spec.max_unavailable for b in budgets} == {1}
    pod = api.spec.template.spec
    container = pod.containers[0]
    assert container.resources.requests == {"cpu": "250m", "memory": "256Mi"}
    assert container.resources.limits == {"cpu": "1", "memory": "512Mi"}
    live, start = container.liveness_probe, container.startup_probe
    assert (live.http_get.path, live.period_seconds, live.failure_threshold) == ("/healthz", 5, 4)
    assert (live.timeout_seconds, start.initial_delay_seconds) == (2, 3)
    assert start.period_seconds * start.failure_threshold == 60
    assert container.readiness_probe.http_get.path == "/healthz"
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    assert container.security_context.read_only_root_filesystem is True
    db = k8s["apps"].read_namespaced_stateful_set("db", env).spec
    assert db.volume_claim_templates[0].spec.resources.requests == {"storage": "20Gi"}
    assert db.template.spec.security_context.run_as_non_root is None  # postgres starts as root
    claims = {
        c.metadata.name: c for c in k8s["core"].list_namespaced_persistent_volume_claim(env).items
    }
    assert claims["data-db-0"].spec.resources.requests == {"storage": "20Gi"}
    assert claims["cache-data"].spec.resources.requests == {"storage": "5Gi"}
    cache = k8s["apps"].read_namespaced_deployment("cache", env).spec.template.spec
    assert cache.volumes[0].persistent_volume_claim.claim_name == "cache-data"
    assert cache.containers[0].volume_mounts[0].mount_path == "/var/cache/app"


def test_a_redeploy_leaves_the_replicas_to_the_autoscaler(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Replicas the autoscaler chose survive a redeploy; a stopped service comes back at min."""
    path = pipeline(write_config, env)
    deploy(capsys, path, env)
    # what the HPA does: scale through the scale subresource, as its own field manager
    k8s["apps"].patch_namespaced_deployment_scale(
        "api", env, {"spec": {"replicas": 5}}, field_manager="horizontal-pod-autoscaler"
    )
    deploy(capsys, path, env)
    assert k8s["apps"].read_namespaced_deployment("api", env).spec.replicas == 5
    assert main(["stop", "-f", str(path), "-e", env, "--service", "api"]) == 0
    capsys.readouterr()
    assert k8s["apps"].read_namespaced_deployment("api", env).spec.replicas == 0
    deploy(capsys, path, env, "--service", "api")
    assert k8s["apps"].read_namespaced_deployment("api", env).status.available_replicas == 2


def test_one_replica_in_an_environment_removes_the_autoscaler_and_the_budgets(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An environment's `replicas: 1` turns api's autoscaling off there and web's replicas down:
    the next deploy removes the HPA and both PDBs, and the replicas are the file's again."""
    deploy(capsys, pipeline(write_config, env), env)
    k8s["apps"].patch_namespaced_deployment_scale(
        "api", env, {"spec": {"replicas": 4}}, field_manager="horizontal-pod-autoscaler"
    )
    overrides = ", services: {api: {replicas: 1}, web: {replicas: 1}, db: {storage: 20Gi}}"
    path = pipeline(write_config, env, overrides)
    deploy(capsys, path, env)
    assert not k8s["hpa"].list_namespaced_horizontal_pod_autoscaler(env).items
    assert not k8s["policy"].list_namespaced_pod_disruption_budget(env).items
    assert k8s["apps"].read_namespaced_deployment("api", env).status.available_replicas == 1
    assert k8s["apps"].read_namespaced_deployment("web", env).spec.replicas == 1


def test_deleting_a_service_removes_its_autoscaler_and_budget(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`delete --service api` leaves no HPA or PDB of api behind (web's budget stays)."""
    path = pipeline(write_config, env)
    deploy(capsys, path, env)
    assert main(["delete", "-f", str(path), "-e", env, "--service", "api"]) == 0
    capsys.readouterr()
    assert not k8s["hpa"].list_namespaced_horizontal_pod_autoscaler(env).items
    assert names(k8s["policy"].list_namespaced_pod_disruption_budget(env).items) == ["web"]


def test_a_new_size_for_a_deployed_database_says_what_to_do(
    env: str,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A StatefulSet's claims cannot change: a new `storage:` is refused with the way out; the
    same size written another way (20480Mi, which the API server reads back as 20Gi) is no
    change."""
    deploy(capsys, pipeline(write_config, env), env, "--service", "db")
    same = pipeline(write_config, env, ", services: {db: {storage: 20480Mi}}")
    deploy(capsys, same, env, "--service", "db")
    path = pipeline(write_config, env, ", services: {db: {storage: 50Gi}}")
    code = main(["deploy", "-f", str(path), "-e", env, "--service", "db", "--events", "jsonl"])
    out = capsys.readouterr().out
    assert code == 1
    failed = [json.loads(line) for line in out.splitlines() if '"failed"' in line]
    assert (
        "db's volume was made with 20Gi and `storage:` now says 50Gi; Kubernetes does not "
        "change a StatefulSet's volume claims: resize the claim data-db-0 itself"
    ) in failed[0]["message"]


def test_the_objects_pass_the_api_servers_strict_validation(
    env: str, k8s: dict[str, Any], write_config: Callable[[str], Path]
) -> None:
    """Every object of every service, applied as a server-side dry run with strict field
    validation, is accepted by the API server's own schema; a misspelt field would not be."""
    pipe = parse_config(PIPELINE.format(env=env, overrides=""))
    environment = pipe.environments[env]
    dynamic = k8s["dynamic"]
    k8s["core"].create_namespace({"metadata": {"name": env}})
    strict = [("fieldValidation", "Strict")]
    applied = []
    for svc in pipe.services.values():
        host = manifests.host_for(pipe.targets["eu"].domain, env, svc.name)
        for obj in manifests.service_objects(
            env, in_environment(environment, svc), "img:1", run="r1", host=host
        ):
            resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            resource.server_side_apply(
                body=obj,
                name=obj["metadata"]["name"],
                namespace=env,
                field_manager="dry-run",
                dry_run="All",
                query_params=list(strict),
            )
            applied.append(obj["kind"])
    assert sorted(set(applied)) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "Service",
        "StatefulSet",
    ]
    bad = manifests.service_objects(env, pipe.services["api"], "img:1", run="r1")[-1]
    bad["spec"]["maxUnavailabel"] = 1
    resource = dynamic.resources.get(api_version=bad["apiVersion"], kind=bad["kind"])
    with pytest.raises(DynamicApiError, match="maxUnavailabel: field not declared in schema"):
        resource.server_side_apply(
            body=bad,
            name=bad["metadata"]["name"],
            namespace=env,
            field_manager="dry-run",
            dry_run="All",
            query_params=list(strict),
        )


def test_every_quantity_the_file_takes_the_api_server_takes(env: str, k8s: dict[str, Any]) -> None:
    """Memory, CPU and storage in each form the file accepts pass the API server's own parsing
    (a server-side dry run), so a file that loads never fails at apply on a quantity."""
    forms = ["512Mi", "1.5Gi", "500M", "1e9", "128974848", "1k", ".5Gi", "2Ti"]
    cpus = ["250m", "0.5", "2", "1.25"]
    pipe = parse_config(
        "version: 1\nservices:\n"
        + "".join(
            f"  s{i}: {{type: container, image: x, storage: '{form}', resources: "
            f"{{cpu: '{cpus[i % 4]}', memory: '{form}', limits: {{memory: '{form}'}}}}}}\n"
            for i, form in enumerate(forms)
        )
    )
    k8s["core"].create_namespace({"metadata": {"name": env}})
    for svc in pipe.services.values():
        assert isinstance(svc, Service) and isinstance(svc.storage, Storage)
        for obj in manifests.service_objects(env, svc, "img:1", run="r1"):
            resource = k8s["dynamic"].resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            resource.server_side_apply(
                body=obj,
                name=obj["metadata"]["name"],
                namespace=env,
                field_manager="dry-run",
                dry_run="All",
                query_params=[("fieldValidation", "Strict")],
            )
