"""`deploy-pipeline logs` on the Kubernetes test bed (DESIGN.md §10). Its nodes are kwok's: no
container runs, so no pod has output, and the API server, asked for a pod's log, answers with
an error about the node's kubelet it cannot reach. What is tested here is that answer, as the
user reads it, for each replica; on a real cluster the same request returns the pod's output."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client, config

from deploy_pipeline.cli import main

pytestmark = pytest.mark.engine


@pytest.fixture
def env(kube_namespace: str) -> str:
    """An environment (namespace) of this test's own, removed afterwards."""
    return kube_namespace


@pytest.fixture
def kwok_nodes(kube_env: Path) -> list[str]:
    """The cluster's nodes, which must be kwok's: a real cluster's pods do have logs."""
    api = config.new_client_from_config(config_file=str(kube_env))
    try:
        nodes = client.CoreV1Api(api).list_node().items
    finally:
        api.close()
    if not nodes or any((n.metadata.labels or {}).get("type") != "kwok" for n in nodes):
        pytest.skip("these tests read what kwok's nodes answer; this cluster's nodes are real")
    return sorted(n.metadata.name for n in nodes)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_pods_of_kwok_nodes_have_no_logs_and_each_replica_says_why(
    env: str,
    kwok_nodes: list[str],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each replica's pod is listed (`api-1`, `api-2`) and, as its kwok node serves no logs,
    says so on stderr with its node and the API server's answer; stdout stays empty and the
    command succeeds. An unknown service exits 2 listing the services."""
    path = str(
        write_config(
            "version: 1\ntargets: {eu: {kind: kubernetes}}\n"
            "services:\n  api: {type: container, image: api:1, replicas: 2}\n"
            f"environments: {{{env}: {{target: eu}}}}\n"
        )
    )
    code, _, err = cli(capsys, "deploy", "-f", path, "-e", env)
    assert code == 0, err

    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    try:
        pods = client.CoreV1Api(api).list_namespaced_pod(env).items
    finally:
        api.close()
    pods.sort(key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))
    assert all(p.spec.node_name in kwok_nodes for p in pods)
    expected = [
        f"api-{i}: no logs: node {p.spec.node_name} does not serve them (the API server "
        f"answered: the server could not find the requested resource ( pods/log "
        f"{p.metadata.name}))"
        for i, p in enumerate(pods, start=1)
    ]
    assert len(expected) == 2
    for extra in (["--tail", "5"], ["--follow"]):  # following ends: no pod has a stream
        code, out, err = cli(capsys, "logs", "-f", path, "-e", env, *extra)
        assert (code, out) == (0, "")
        assert err.splitlines() == expected

    code, _, err = cli(capsys, "logs", "-f", path, "-e", env, "--service", "web")
    assert (code, err) == (2, "error: no service named 'web'; the services are: api\n")
