"""Fixtures that wire `tests.support` into pytest: every test gets its own state database,
pipelines are written as files, and the test beds, the GitHub stand-in and in-process receivers
are a parameter away. What they hand out lives in `tests/support/`."""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.docker_testbed import DockerBed, require_bed
from tests.support.github_standin import GitHubStandin
from tests.support.kube_testbed import delete_namespace, kube_clients, require_kubeconfig
from tests.support.receiver import ReceiverFactory


@pytest.fixture(autouse=True)
def own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Keep each test's state database in its own folder, never the developer's."""
    state = tmp_path / "state" / "state.db"
    monkeypatch.setenv("DEPLOY_PIPELINE_STATE", str(state))
    monkeypatch.setenv("DEPLOY_PIPELINE_PLAIN", "1")
    monkeypatch.delenv("DEPLOY_PIPELINE_DATABASE_URL", raising=False)  # not a shared database
    yield state


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a pipeline file (dedented) and return its path."""

    def write(text: str, name: str = ".deploy-pipeline.yml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a skipped test fails: CI must never pass by skipping the real thing."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"


@pytest.fixture(scope="session")
def docker_bed() -> DockerBed:
    """The real Docker engine and registry (skip by hand, fail under CI=true, when missing)."""
    return require_bed()


@pytest.fixture
def docker_env(docker_bed: DockerBed, monkeypatch: pytest.MonkeyPatch) -> Iterator[DockerBed]:
    """Point the SDK at the test bed; afterwards remove the containers, volumes and networks
    the test created (by label), and nothing that was there before it: others may share it."""
    monkeypatch.setenv("DOCKER_HOST", docker_bed.host)
    before = {kind: set(_managed(docker_bed, kind)) for kind in ("container", "volume", "network")}
    yield docker_bed
    for kind in ("container", "volume", "network"):  # best effort: in use means not ours to take
        new = [i for i in _managed(docker_bed, kind) if i not in before[kind]]
        if new:
            command = ["rm", "-f"] if kind == "container" else [kind, "rm"]
            docker_bed.cli(*command, *new, check=False)


def _managed(bed: DockerBed, kind: str) -> list[str]:
    label = "label=app.kubernetes.io/managed-by=deploy-pipeline"
    listing = ["ps", "-aq"] if kind == "container" else [kind, "ls", "-q"]
    return bed.cli(*listing, "--filter", label).split()


@pytest.fixture(scope="session")
def kubeconfig() -> Path:
    """The real Kubernetes API (skip by hand, fail under CI=true, when missing)."""
    return require_kubeconfig()


@pytest.fixture
def kube_env(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the client (and deploy-pipeline) at the test cluster."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return kubeconfig


@pytest.fixture
def k8s(kube_env: Path) -> Iterator[dict[str, Any]]:
    """The test cluster's APIs by short name: core, apps, batch, net, hpa, policy, dynamic."""
    with kube_clients(kube_env) as apis:
        yield apis


@pytest.fixture
def kube_namespace(kube_env: Path) -> Iterator[str]:
    """An environment (a namespace) of this test's own on the cluster, removed afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    yield name
    delete_namespace(kube_env, name)


@pytest.fixture
def standin() -> Iterator[GitHubStandin]:
    """A running GitHub stand-in on loopback that knows REPO and accepts TOKEN."""
    with GitHubStandin() as server:
        yield server


@pytest.fixture
def make_receiver(write_config: Callable[[str], Path]) -> ReceiverFactory:
    """Receivers of pipeline files this test writes, checking deliveries against SECRET; serve
    one in-process with `tests.support.receiver.serving`."""
    return ReceiverFactory(write_config)
