"""`deploy-pipeline plan -e ENV --manifests` (DESIGN.md §11) with no cluster: per Kubernetes target
the objects a deploy would apply, as YAML documents each named by its target, stage and service;
patches applied, a built image by its content tag, no secret's value; a line for other targets."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_pipeline.backends.build import image_name
from deploy_pipeline.cli import main
from deploy_pipeline.config import load_config

PIPELINE = """\
version: 1
registry: registry.example.test/shop
stages: [data, apps]
targets:
  eu: {kind: kubernetes, domain: "{service}.{environment}.example.test"}
  laptop: {kind: docker}
services:
  db: {type: database, image: postgres:16, port: 5432, stage: data}
  web: {type: container, image: nginx:1.27, port: 80, public: true, stage: data}
  api:
    type: application
    build: ./api
    port: 8000
    env: {SHOP_URL: "${url:web}", WHERE: "${environment}"}
    secrets: [API_TOKEN]
    stage: apps
    kubernetes:
      patches:
        - {kind: Deployment, patch: {spec: {template: {spec: {priorityClassName: high}}}}}
        - {kind: Service, patch: [{op: replace, path: /spec/ports/0/port, value: 80}]}
environments:
  staging: {targets: [eu, laptop]}
  production:
    target: eu
    services:
      api: {kubernetes: {patches: [{kind: Deployment, patch: {spec: {paused: true}}}]}}
"""
SECRET_VALUE = "hunter2-never-printed-0042"


@pytest.fixture
def pipeline(write_config: Callable[[str], Path]) -> Path:
    path = write_config(PIPELINE)
    (path.parent / "api").mkdir()
    (path.parent / "api" / "Dockerfile").write_text("FROM scratch\nCOPY app /app\n")
    (path.parent / "api" / "app").write_text("hello\n")
    return path


def manifests(
    capsys: pytest.CaptureFixture[str], path: Path, *args: str
) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """The output of `plan --manifests`, and its documents each with the comment naming it."""
    code = main(["plan", "-f", str(path), *args, "--manifests"])
    out, err = capsys.readouterr()
    assert code == 0, err
    docs = []
    for chunk in out.split("\n---\n")[1:]:
        about = re.match(r"# (.*)\n", chunk)
        assert about is not None, chunk
        docs.append((about.group(1), yaml.safe_load(chunk)))
    assert len(list(yaml.safe_load_all(out))) == len(docs)  # one stream, as kubectl reads it
    return out, docs


def test_the_objects_of_each_kubernetes_target_in_the_order_a_deploy_applies_them(
    pipeline: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The namespace, then stage by stage each service's objects, patches applied, env values
    substituted, the built image by the tag its build pushes; a docker target has none, and no
    secret's value is printed even when it is set. No cluster is asked (the kubeconfig points
    nowhere)."""
    monkeypatch.setenv("API_TOKEN", SECRET_VALUE)
    monkeypatch.setenv("KUBECONFIG", str(pipeline.parent / "no-such-kubeconfig"))
    out, docs = manifests(capsys, pipeline, "-e", "staging")
    assert SECRET_VALUE not in out
    assert [(about, d["kind"]) for about, d in docs] == [
        ("target eu · environment staging: its namespace", "Namespace"),
        ("target eu · stage data · service db", "Service"),
        ("target eu · stage data · service db", "StatefulSet"),
        ("target eu · stage data · service web", "Deployment"),
        ("target eu · stage data · service web", "Service"),
        ("target eu · stage data · service web", "Ingress"),
        ("target eu · stage apps · service api", "Secret"),
        ("target eu · stage apps · service api", "Deployment"),
        ("target eu · stage apps · service api", "Service"),
    ]
    assert out.splitlines()[0] == "# deploy staging · target eu (kubernetes)"
    assert out.splitlines()[-1] == (
        "# deploy staging · target laptop (docker): no manifests, only a kubernetes target "
        "applies objects"
    )
    secret, deployment, service = (d for _, d in docs[-3:])
    assert secret["stringData"] == {
        "API_TOKEN": "(secret left out: the deploy sets it from API_TOKEN in its environment)"
    }
    image = image_name(
        pipeline.parent, "registry.example.test/shop", load_config(pipeline).services["api"]
    )[0]
    assert re.fullmatch(r"registry\.example\.test/shop/api:sha-[0-9a-f]{20}", image)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "high"
    assert pod["containers"][0]["image"] == image
    assert pod["containers"][0]["env"] == [
        {"name": "SHOP_URL", "value": "http://web.staging.example.test"},
        {"name": "WHERE", "value": "staging"},
        {
            "name": "API_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "deploy-pipeline-secrets", "key": "API_TOKEN"}},
        },
    ]
    assert service["spec"]["ports"][0]["port"] == 80


def test_an_environment_s_own_patches_replace_the_service_s(
    pipeline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """production's list replaces api's: its Deployment is paused and keeps no priority class."""
    _, docs = manifests(capsys, pipeline, "-e", "production")
    deployment = next(d for about, d in docs if about.endswith("api") and d["kind"] == "Deployment")
    assert deployment["spec"]["paused"] is True
    assert "priorityClassName" not in deployment["spec"]["template"]["spec"]


def test_a_patch_that_does_not_apply_fails_the_plan_with_its_reason(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """What would fail the deploy step fails `--manifests` first, with the same message."""
    path = write_config(
        """\
        version: 1
        targets: {eu: {kind: kubernetes}}
        services:
          web:
            type: container
            image: nginx:1.27
            kubernetes: {patches: [{kind: Deployment, patch: [{op: remove, path: /spec/paused}]}]}
        environments: {staging: {target: eu}}
        """
    )
    assert main(["plan", "-f", str(path), "-e", "staging", "--manifests"]) == 1
    assert capsys.readouterr().err == (
        "error: web: services.web.kubernetes.patches[0] (a JSON patch on Deployment web) does "
        "not apply: can't remove a non-existent object 'paused'; `deploy-pipeline plan -e ENV "
        "--manifests` shows the objects as they are made\n"
    )


def test_manifests_are_what_a_deploy_applies_so_other_actions_are_refused(
    pipeline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--manifests` with another action or JSON output is a usage error saying what to drop."""
    assert (
        main(["plan", "-f", str(pipeline), "-e", "staging", "--manifests", "--action", "stop"]) == 2
    )
    assert capsys.readouterr().err == (
        "error: --manifests prints the objects a deploy applies, as YAML: leave out --action\n"
    )
    assert (
        main(["plan", "-f", str(pipeline), "-e", "staging", "--manifests", "--format", "json"]) == 2
    )
    assert capsys.readouterr().err == (
        "error: --manifests prints the objects a deploy applies, as YAML: leave out --format\n"
    )
