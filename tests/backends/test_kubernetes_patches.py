"""The escape hatch on a real control plane (DESIGN.md §11): a service's `kubernetes.patches`
change the objects the API server holds, a field the API's schema does not know is refused by the
server (strict field validation), and a patch that does not fit fails the step, clearly."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_pipeline.cli import main

pytestmark = pytest.mark.engine

PIPELINE = """
version: 1
targets:
  eu: {{kind: kubernetes}}
services:
  api:
    type: container
    image: api:1
    port: 8000
    env: {{LOG_LEVEL: info}}
    kubernetes:
      patches:
{patches}
environments:
  {env}: {{target: eu}}
"""


def deploy(capsys: pytest.CaptureFixture[str], path: Path, env: str) -> tuple[int, list[Any]]:
    code = main(["deploy", "-f", str(path), "-e", env, "--events", "jsonl"])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    if code not in (0, 1) or (code == 1 and not events):
        pytest.fail(f"deploy exited {code}:\n{err}")
    return code, events


def test_a_strategic_merge_patch_and_a_json_patch_change_the_deployment(
    kube_namespace: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both kinds of patch reach the Deployment the API server holds, and what the service's
    own settings made is kept beside them."""
    patches = """\
        - kind: Deployment
          patch:
            spec:
              revisionHistoryLimit: 3
              template:
                spec:
                  terminationGracePeriodSeconds: 5
                  containers: [{name: api, env: [{name: EXTRA, value: "on"}]}]
        - kind: Deployment
          patch:
            - {op: add, path: /spec/minReadySeconds, value: 1}
            - {op: add, path: /metadata/labels/team, value: shop}
        - {kind: Service, patch: [{op: add, path: /spec/ports/0/name, value: http}]}"""
    path = write_config(PIPELINE.format(env=kube_namespace, patches=patches))
    code, events = deploy(capsys, path, kube_namespace)
    assert code == 0, events[-1]
    deployment = k8s["apps"].read_namespaced_deployment("api", kube_namespace)
    assert deployment.spec.revision_history_limit == 3
    assert deployment.spec.min_ready_seconds == 1
    assert deployment.metadata.labels["team"] == "shop"
    assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "deploy-pipeline"
    pod = deployment.spec.template.spec
    assert pod.termination_grace_period_seconds == 5
    assert [(e.name, e.value) for e in pod.containers[0].env] == [
        ("LOG_LEVEL", "info"),
        ("EXTRA", "on"),
    ]
    assert pod.containers[0].image == "api:1"
    service = k8s["core"].read_namespaced_service("api", kube_namespace)
    assert service.spec.ports[0].name == "http"


def test_a_field_the_api_does_not_know_is_refused_by_the_server(
    kube_namespace: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Server-side apply validates fields strictly: a patch's misspelt field fails the deploy
    with the API server's own message, and nothing of the Deployment is made."""
    patches = """\
        - kind: Deployment
          patch:
            spec: {template: {spec: {containers: [{name: api, imagePullPolicyy: Always}]}}}"""
    path = write_config(PIPELINE.format(env=kube_namespace, patches=patches))
    code, events = deploy(capsys, path, kube_namespace)
    assert code == 1
    failed = next(e for e in events if e["status"] == "failed" and e["service"] == "api")
    assert failed["message"].startswith("applying Deployment/api: ")
    assert (
        'containers[name="api"].imagePullPolicyy: field not declared in schema'
        in (failed["message"])
    )
    assert not k8s["apps"].list_namespaced_deployment(kube_namespace).items


def test_a_json_patch_whose_path_is_not_in_the_object_fails_the_step(
    kube_namespace: str,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The step fails naming the service, the patch, the kind and what did not fit."""
    patches = """\
        - {kind: Deployment, patch: [{op: replace, path: /spec/paused, value: true}]}"""
    path = write_config(PIPELINE.format(env=kube_namespace, patches=patches))
    code, events = deploy(capsys, path, kube_namespace)
    assert code == 1
    failed = next(e for e in events if e["status"] == "failed" and e["service"] == "api")
    assert failed["message"] == (
        "api: services.api.kubernetes.patches[0] (a JSON patch on Deployment api) does not "
        "apply: can't replace a non-existent object 'paused'; `deploy-pipeline plan -e ENV "
        "--manifests` shows the objects as they are made"
    )


def within(shown: Any, held: Any) -> bool:
    """Whether everything `shown` says is in `held` (the API server adds its defaults)."""
    if isinstance(shown, dict):
        return isinstance(held, dict) and all(within(v, held.get(k)) for k, v in shown.items())
    if isinstance(shown, list):
        return (
            isinstance(held, list)
            and len(shown) == len(held)
            and all(within(a, b) for a, b in zip(shown, held, strict=True))
        )
    return bool(shown == held)


def test_plan_manifests_shows_what_the_deploy_then_applies(
    kube_namespace: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Deployment and Service `plan --manifests` prints are what the API server holds after
    the deploy (its defaults aside), patches applied; the Secret's value is printed nowhere."""
    monkeypatch.setenv("API_TOKEN", "token-never-printed-0042")
    patches = """\
        - {kind: Deployment, patch: {spec: {template: {spec: {terminationGracePeriodSeconds: 7}}}}}
    secrets: [API_TOKEN]"""
    path = write_config(PIPELINE.format(env=kube_namespace, patches=patches))
    assert main(["plan", "-f", str(path), "-e", kube_namespace, "--manifests"]) == 0
    out = capsys.readouterr().out
    assert "token-never-printed-0042" not in out
    shown = {d["kind"]: d for d in yaml.safe_load_all(out)}
    code, events = deploy(capsys, path, kube_namespace)
    assert code == 0, events[-1]
    api = k8s["apps"].api_client
    deployment = api.sanitize_for_serialization(
        k8s["apps"].read_namespaced_deployment("api", kube_namespace)
    )
    service = api.sanitize_for_serialization(
        k8s["core"].read_namespaced_service("api", kube_namespace)
    )
    assert shown["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 7
    assert within(shown["Deployment"]["spec"], deployment["spec"])
    assert within(shown["Service"]["spec"], service["spec"])
    assert within(shown["Deployment"]["metadata"]["labels"], deployment["metadata"]["labels"])
    assert shown["Secret"]["stringData"] == {
        "API_TOKEN": "(secret left out: the deploy sets it from API_TOKEN in its environment)"
    }


def test_pods_the_cluster_refuses_fail_the_rollout_at_once_saying_why(
    kube_namespace: str, write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A patch naming a PriorityClass the cluster lacks: the API server forbids the pods, and
    the deploy fails with its reason instead of waiting out its timeout."""
    path = write_config(
        "version: 1\ntargets: {eu: {kind: kubernetes}}\nservices:\n"
        "  api: {type: container, image: 'api:1', timeout: 5m, kubernetes: {patches: [{kind: "
        "Deployment, patch: {spec: {template: {spec: {priorityClassName: no-such-class}}}}}]}}\n"
        f"environments: {{{kube_namespace}: {{target: eu}}}}\n"
    )
    started = time.monotonic()
    code = main(["deploy", "-f", str(path), "-e", kube_namespace, "--events", "jsonl"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    [failed] = [e for e in events if e["service"] == "api" and e["status"] == "failed"]
    assert failed["message"].startswith("Deployment api: the cluster refuses to create its pods:")
    assert "no PriorityClass with name no-such-class was found" in failed["message"]
    assert time.monotonic() - started < 60  # not the 5 minute timeout
