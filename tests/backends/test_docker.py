"""The docker target on a real engine and registry: builds, reuse, health, failures, volumes,
labels and secrets (DESIGN.md §1–§3). Images are built FROM scratch with busybox."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_pipeline.cli import main
from tests.docker_testbed import HTTPD, DockerBed, busybox_context


def events(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def pipeline(bed: DockerBed, services: str, extra: str = "") -> str:
    return (f"version: 1\nregistry: {bed.registry}/t\ntargets: {{laptop: {{kind: docker}}}}\n"
            f"{extra}services:\n{services}environments: {{staging: {{target: laptop}}}}\n")


def test_build_push_then_reuse_on_the_second_deploy(
    docker_env: DockerBed, write_config: Callable[[str], Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A first deploy builds, pushes and serves the app at its URL; the second builds nothing."""
    busybox_context(tmp_path / "app", HTTPD)
    path = str(write_config(pipeline(docker_env, "  api: {type: application, build: ./app, "
                                     "port: 8080, health: /healthz}\n")))
    assert main(["deploy", "-f", path, "-e", "staging", "--events", "jsonl"]) == 0
    first = events(capsys)
    build = [e for e in first if e["phase"] == "build"]
    assert [e["status"] for e in build] == ["started", "succeeded"]
    ref = str(build[-1]["message"]).removeprefix("built ")
    assert ref.startswith(f"{docker_env.registry}/t/api:sha-")
    assert docker_env.cli("manifest", "inspect", "--insecure", ref)  # it is in the registry
    url = next(e["url"] for e in first if e["phase"] == "deploy" and e["status"] == "succeeded")
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
        assert response.read() == b"ok\n"

    assert main(["deploy", "-f", path, "-e", "staging", "--events", "jsonl"]) == 0
    second = [e for e in events(capsys) if e["phase"] == "build"]
    assert [e["status"] for e in second] == ["started", "reused"]
