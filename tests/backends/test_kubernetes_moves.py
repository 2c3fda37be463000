"""`rollback` and `promote` on a real Kubernetes control plane (DESIGN.md §10): the Deployments
run the release's image and settings again, each namespace's annotation holds the new release,
and nothing is built."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from deploy_pipeline.cli import main
from tests.support.kube_testbed import delete_namespace

pytestmark = pytest.mark.engine

PIPELINE = """
version: 1
stages: [data, apps]
targets:
  eu: {{kind: kubernetes}}
services:
  db: {{type: database, image: postgres:16, port: 5432, stage: data}}
  api: {{type: container, image: "api:{version}", port: 8000, stage: apps,
        env: {{MODE: {mode}}}}}
environments:
  {staging}: {{target: eu, env: {{TIER: staging}}}}
  {production}: {{target: eu, env: {{TIER: production}}, services: {{api: {{replicas: 3}}}}}}
"""


@pytest.fixture
def production(kube_env: Path) -> Iterator[str]:
    """A second namespace of this test's own, removed afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    yield name
    delete_namespace(kube_env, name)


@pytest.fixture
def apps(kube_env: Path) -> Iterator[client.AppsV1Api]:
    api = config.new_client_from_config(config_file=str(kube_env))
    yield client.AppsV1Api(api)
    api.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    """Run the CLI with JSON lines; it must succeed, or the test shows what the user read."""
    code = main([*args, "--events", "jsonl"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_rollback_and_promote_roll_the_deployments_to_the_releases_images_and_settings(
    kube_namespace: str,
    production: str,
    apps: client.AppsV1Api,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """api:1 (MODE a) then api:2 (MODE b) in staging; rollback rolls the Deployment back to
    api:1 with MODE a and annotates release 3 rolled back to 1; promote gives production api:1
    with production's TIER and replicas; only deploy steps run."""
    staging = kube_namespace

    def write(version: str, mode: str) -> str:
        text = PIPELINE.format(version=version, mode=mode, staging=staging, production=production)
        return str(write_config(text))

    path = write("1", "a")
    run(capsys, "deploy", "-f", path, "-e", staging)
    path = write("2", "b")
    run(capsys, "deploy", "-f", path, "-e", staging)

    seen = run(capsys, "rollback", "-f", path, "-e", staging)
    assert {e["phase"] for e in seen} == {"deploy", "run"}
    [api] = apps.read_namespaced_deployment("api", staging).spec.template.spec.containers
    assert api.image == "api:1"
    assert {e.name: e.value for e in api.env} == {"MODE": "a", "TIER": "staging"}
    core = client.CoreV1Api(apps.api_client)
    kept = json.loads(
        core.read_namespace(staging).metadata.annotations["deploy-pipeline.io/release"]
    )
    assert (kept["id"], kept["action"], kept["rolled_back_to"]) == (3, "rollback", 1)

    seen = run(capsys, "promote", "-f", path, "--from", staging, "-e", production)
    assert {e["phase"] for e in seen} == {"deploy", "run"}
    deployment = apps.read_namespaced_deployment("api", production)
    assert deployment.spec.replicas == 3
    [api] = deployment.spec.template.spec.containers
    assert api.image == "api:1"
    assert {e.name: e.value for e in api.env} == {"MODE": "b", "TIER": "production"}
    kept = json.loads(
        core.read_namespace(production).metadata.annotations["deploy-pipeline.io/release"]
    )
    assert (kept["id"], kept["action"], kept["source"]) == (1, "promote", staging)
