"""One environment on two Kubernetes clusters, each a kubeconfig context of one merged KUBECONFIG
(DESIGN.md §2's targets matrix on real control planes: two kube-apiservers with their own etcd,
controllers, scheduler and kwok nodes)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from deploy_pipeline.cli import main
from tests.support.kube_testbed import require_kubeconfig

pytestmark = pytest.mark.engine

PIPELINE = """
version: 1
targets:
  east: {{kind: kubernetes, context: {east}}}
  west: {{kind: kubernetes, context: {west}}}
services:
  api: {{type: container, image: api:1, port: 8000, replicas: 2}}
  worker: {{type: container, image: worker:1}}
environments:
  {env}: {{targets: [east, west], strategy: {{targets: {targets}}}}}
"""


def context_of(kubeconfig: Path) -> str:
    return str(yaml.safe_load(kubeconfig.read_text())["current-context"])


@pytest.fixture
def clusters(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Two control planes merged into one KUBECONFIG; per context, an AppsV1 and a CoreV1 API."""
    east, west = require_kubeconfig(), require_kubeconfig(second=True)
    if context_of(east) == context_of(west):
        pytest.fail(f"both kubeconfigs name their context {context_of(east)}: rename one")
    monkeypatch.setenv("KUBECONFIG", f"{east}:{west}")
    apis = {
        name: config.new_client_from_config(config_file=str(path))
        for name, path in (("east", east), ("west", west))
    }
    yield {
        "contexts": {"east": context_of(east), "west": context_of(west)},
        "apps": {name: client.AppsV1Api(api) for name, api in apis.items()},
        "core": {name: client.CoreV1Api(api) for name, api in apis.items()},
    }
    for api in apis.values():
        api.close()


@pytest.fixture
def env(clusters: dict[str, Any]) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    yield name
    for core in clusters["core"].values():
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)


def namespaces(core: client.CoreV1Api) -> list[str]:
    return [n.metadata.name for n in core.list_namespace().items]


def deploy_events(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    code = main([*args, "--events", "jsonl"])
    out, err = capsys.readouterr()
    assert code == 0, err or out
    return [json.loads(line) for line in out.splitlines()]


def test_sequential_targets_roll_out_one_cluster_after_the_other(
    clusters: dict[str, Any],
    env: str,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each context gets the namespace with every Deployment Available, and with sequential
    targets nothing starts on west before everything on east is up."""
    path = str(write_config(PIPELINE.format(**clusters["contexts"], env=env, targets="sequential")))
    events = deploy_events(capsys, "deploy", "-f", path, "-e", env)
    for target in ("east", "west"):
        apps = clusters["apps"][target]
        ready = {
            d.metadata.name: d.status.available_replicas
            for d in apps.list_namespaced_deployment(env).items
        }
        assert ready == {"api": 2, "worker": 1}, target
    east_done = max(e["ts"] for e in events if e["target"] == "east" and e["status"] == "succeeded")
    west_start = min(e["ts"] for e in events if e["target"] == "west" and e["status"] == "started")
    assert east_done <= west_start


def test_one_cluster_of_an_environment_is_changed_alone(
    clusters: dict[str, Any],
    env: str,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With parallel targets both clusters are deployed; `--target west` then stops and deletes
    only west's copy, and east's keeps running."""
    path = str(write_config(PIPELINE.format(**clusters["contexts"], env=env, targets="parallel")))
    deploy_events(capsys, "deploy", "-f", path, "-e", env)
    events = deploy_events(capsys, "stop", "-f", path, "-e", env, "--target", "west")
    assert {e["target"] for e in events if e["service"]} == {"west"}
    west, east = clusters["apps"]["west"], clusters["apps"]["east"]
    assert [d.spec.replicas for d in west.list_namespaced_deployment(env).items] == [0, 0]
    deploy_events(capsys, "delete", "-f", path, "-e", env, "--target", "west")
    assert env not in namespaces(clusters["core"]["west"])
    assert env in namespaces(clusters["core"]["east"])
    assert [d.status.available_replicas for d in east.list_namespaced_deployment(env).items] == [
        2,
        1,
    ]
