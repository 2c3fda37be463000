"""Shared fixtures: every test gets its own state database, and pipelines are written as files."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.docker_testbed import DockerBed, require_bed


@pytest.fixture(autouse=True)
def own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Keep each test's state database in its own folder, never the developer's."""
    state = tmp_path / "state" / "state.db"
    monkeypatch.setenv("DEPLOY_PIPELINE_STATE", str(state))
    monkeypatch.setenv("DEPLOY_PIPELINE_PLAIN", "1")
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
    """Point the SDK at the test bed, and remove whatever the test created there, by label."""
    monkeypatch.setenv("DOCKER_HOST", docker_bed.host)
    yield docker_bed
    managed = "label=app.kubernetes.io/managed-by=deploy-pipeline"
    ids = docker_bed.cli("ps", "-aq", "--filter", managed)
    if ids:
        docker_bed.cli("rm", "-f", *ids.split(), check=False)
    for kind in ("volume", "network"):  # best effort: one still in use is left for the next test
        names = docker_bed.cli(kind, "ls", "-q", "--filter", managed)
        if names:
            docker_bed.cli(kind, "rm", *names.split(), check=False)
