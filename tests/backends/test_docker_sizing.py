"""Sizing on the docker target (DESIGN.md §11, Docker's parity): `resources.limits` become the
container's memory and CPU limits (`docker run --memory/--cpus`), `storage:` a named volume."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy_pipeline.cli import main
from tests.support.docker_testbed import DockerBed, busybox_context

pytestmark = pytest.mark.engine

ENV_LABEL = "io.deploy-pipeline.environment"
# writes a random id to /state/first unless it is there, then sleeps
KEEPER = (
    "/bin/busybox test -f /state/first || /bin/busybox cat /proc/sys/kernel/random/uuid "
    "> /state/first; exec /bin/busybox sleep 3600"
)


@pytest.fixture
def env(docker_bed: DockerBed, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An environment of this test's own on the shared engine, removed afterwards."""
    monkeypatch.setenv("DOCKER_HOST", docker_bed.host)
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    for kind in ("container", "volume", "network"):
        found = ids(docker_bed, kind, name)
        if found:
            docker_bed.cli(*(["rm", "-f"] if kind == "container" else [kind, "rm"]), *found)


@pytest.fixture(scope="module")
def keeper(docker_bed: DockerBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ref = f"dp-test/keeper:{uuid.uuid4().hex[:12]}"
    folder = busybox_context(tmp_path_factory.mktemp("keeper"), KEEPER)
    docker_bed.cli("build", "-q", "-t", ref, str(folder))
    yield ref
    docker_bed.cli("rmi", ref)


def ids(bed: DockerBed, kind: str, env: str) -> list[str]:
    label = ["--filter", f"label={ENV_LABEL}={env}"]
    if kind == "container":
        return bed.cli("ps", "-aq", *label).split()
    return bed.cli(kind, "ls", "-q", *label).split()


def deploy(
    config: Path, env: str, capsys: pytest.CaptureFixture[str], action: str = "deploy"
) -> str:
    """Run an action; fail with what a user would read unless it succeeds; its step's message."""
    code = main([action, "-f", str(config), "-e", env, "--events", "jsonl"])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    steps = [e for e in events if e["service"] == "keep" and e["status"] != "started"]
    return str(steps[-1]["message"])


def config(write: Callable[[str], Path], env: str, image: str, memory: str) -> Path:
    return write(
        "version: 1\ntargets: {laptop: {kind: docker}}\nservices:\n"
        f"  keep: {{type: container, image: '{image}', storage: {{size: 1Gi, path: /state}},\n"
        f"         resources: {{cpu: 250m, limits: {{cpu: 500m, memory: {memory}}}}}}}\n"
        f"environments: {{{env}: {{target: laptop}}}}\n"
    )


def containers(bed: DockerBed, env: str) -> list[dict[str, Any]]:
    found = ids(bed, "container", env)
    return list(json.loads(bed.cli("inspect", *found))) if found else []


def test_limits_are_the_containers_and_storage_is_a_volume_that_outlives_it(
    env: str,
    keeper: str,
    docker_bed: DockerBed,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The container runs with 64Mi of memory and half a CPU and writes to its own volume at
    /state; a new limit replaces the container, the volume (and what it holds) stays; delete
    removes the volume too."""
    deploy(config(write_config, env, keeper, "64Mi"), env, capsys)
    [first] = containers(docker_bed, env)
    assert (first["HostConfig"]["Memory"], first["HostConfig"]["NanoCpus"]) == (
        64 * 1024 * 1024,
        500_000_000,
    )
    [mount] = [m for m in first["Mounts"] if m["Type"] == "volume"]
    assert (mount["Name"], mount["Destination"]) == (f"dp-{env}-keep-data", "/state")
    written = docker_bed.cli("exec", first["Id"], "/bin/busybox", "cat", "/state/first")
    assert deploy(config(write_config, env, keeper, "64Mi"), env, capsys) == (
        "unchanged, already running"
    )

    deploy(config(write_config, env, keeper, "128Mi"), env, capsys)
    [second] = containers(docker_bed, env)
    assert second["Id"] != first["Id"]
    assert second["HostConfig"]["Memory"] == 128 * 1024 * 1024
    assert docker_bed.cli("exec", second["Id"], "/bin/busybox", "cat", "/state/first") == written

    deploy(config(write_config, env, keeper, "128Mi"), env, capsys, action="delete")
    assert ids(docker_bed, "volume", env) == []
