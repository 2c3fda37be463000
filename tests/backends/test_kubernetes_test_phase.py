"""The test phase on a kubernetes target (DESIGN.md §9): images are built on the local Docker
engine, so their tests run there too, before the image is pushed for the cluster to pull; a
failed test leaves the namespace without the service."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from deploy_pipeline.cli import main
from tests.support.docker_testbed import DockerBed, busybox_context

pytestmark = pytest.mark.engine


@pytest.fixture
def env(kube_namespace: str) -> str:
    """An environment (namespace) of this test's own, removed afterwards."""
    return kube_namespace


def jobs(kube_env: Path, namespace: str) -> list[str]:
    api = config.new_client_from_config(config_file=str(kube_env))
    try:
        found = client.BatchV1Api(api).list_namespaced_job(namespace).items
        return [str(j.metadata.name) for j in found]
    finally:
        api.close()


def deploy(path: str, env: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[Any]]:
    code = main(["deploy", "-f", path, "-e", env, "--events", "jsonl"])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_kubernetes_target_tests_on_the_local_engine_before_pushing_and_deploying(
    env: str,
    kube_env: Path,
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A passing test: built, tested, pushed, then the Job is deployed. A failing one: the run
    fails at the test with its output's last line, and no Job of it reaches the namespace."""
    for name in ("good", "bad"):
        busybox_context(tmp_path / name, f"echo {name}")
        (tmp_path / name / "nonce").write_text(f"{name} {uuid.uuid4()}")
    path = str(
        write_config(
            f"version: 1\nregistry: {docker_env.registry}/kube-tested\n"
            "targets: {eu: {kind: kubernetes}}\nservices:\n"
            "  good: {type: job, build: ./good, test: [/bin/busybox, echo, fine]}\n"
            f"environments: {{{env}: {{target: eu}}}}\n"
        )
    )
    code, events = deploy(path, env, capsys)
    assert code == 0, events
    done = [(e["phase"], e["status"]) for e in events if e["service"] == "good"]
    assert done == [
        ("build", "started"),
        ("build", "succeeded"),
        ("test", "started"),
        ("test", "succeeded"),
        ("deploy", "started"),
        ("deploy", "succeeded"),
    ]
    tested = next(e for e in events if e["phase"] == "test" and e["status"] == "succeeded")
    assert str(tested["message"]).startswith(f"test passed; pushed {docker_env.registry}/")
    Path(path).write_text(
        Path(path)
        .read_text()
        .replace(
            "  good:",
            "  bad: {type: job, build: ./bad, test: [/bin/busybox, sh, -c, 'echo nope; exit 2']}\n"
            "  good:",
        )
    )
    code, events = deploy(path, env, capsys)
    assert code == 1
    failed = next(e for e in events if e["phase"] == "test" and e["status"] == "failed")
    assert failed["service"] == "bad"
    assert failed["message"] == "bad's test exited with code 2; last lines of its output:\nnope"
    assert not [j for j in jobs(kube_env, env) if "bad" in j]
