"""A prebuilt image's `registry_auth:` login on the docker target (DESIGN.md §11): the login's
variables are read for the deploy like secrets, but only the service's own `secrets:` reach its
container's environment."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy_pipeline.cli import main
from tests.support.docker_testbed import DockerBed, busybox_context

pytestmark = pytest.mark.engine


@pytest.fixture
def image(docker_env: DockerBed, tmp_path: Path) -> Iterator[str]:
    """A 'prebuilt' image the engine has locally (no pull), removed afterwards."""
    ref = f"dp-test/sleeper:{uuid.uuid4().hex[:12]}"
    docker_env.cli("build", "-q", "-t", ref, str(busybox_context(tmp_path / "img", "sleep 3600")))
    yield ref
    docker_env.cli("rmi", "-f", ref, check=False)


def test_a_registry_login_never_reaches_a_containers_env(
    docker_env: DockerBed,
    image: str,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The container gets API_TOKEN (its `secrets:`) and neither variable of its login."""
    env = f"t-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("API_TOKEN", "api-token-0042")
    monkeypatch.setenv("BOX_USER", "box-bot")
    monkeypatch.setenv("BOX_TOKEN", "box-token-0042")
    path = write_config(
        f"version: 1\ntargets: {{laptop: {{kind: docker}}}}\nservices:\n"
        f"  box: {{type: container, image: '{image}', secrets: [API_TOKEN],\n"
        "        registry_auth: {username: BOX_USER, password: BOX_TOKEN}}\n"
        f"environments: {{{env}: {{target: laptop}}}}\n"
    )
    code = main(["deploy", "-f", str(path), "-e", env, "--events", "jsonl"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "box-token-0042" not in out + err
    ids = docker_env.cli(
        "ps", "-q", "--filter", f"label=io.deploy-pipeline.environment={env}"
    ).split()
    assert len(ids) == 1
    variables = json.loads(docker_env.cli("inspect", ids[0]))[0]["Config"]["Env"]
    assert "API_TOKEN=api-token-0042" in variables
    assert not [v for v in variables if v.startswith(("BOX_USER=", "BOX_TOKEN="))]
