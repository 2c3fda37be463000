"""The Docker test bed as pytest sees it: a reachable engine and a loopback registry, found from
the environment (DOCKER_HOST, DP_TEST_REGISTRY) or from `scripts/docker-testenv start`'s env file.
Without an engine a test skips when run by hand and fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

BUSYBOX = Path("/bin/busybox")


@dataclass(frozen=True)
class DockerBed:
    host: str
    registry: str  # 127.0.0.1:PORT

    def cli(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            check=check,
            env={**os.environ, "DOCKER_HOST": self.host},
        )
        return out.stdout.strip()


def find_bed() -> DockerBed | str:
    """The running test bed, or the reason there is none."""
    host, registry = os.environ.get("DOCKER_HOST"), os.environ.get("DP_TEST_REGISTRY")
    env_file = (
        Path(os.environ.get("DP_DOCKER_DIR", Path(os.environ.get("TMPDIR", "/tmp")) / "dp-docker"))
        / "env"
    )
    if (not host or not registry) and env_file.is_file():
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            if key == "DOCKER_HOST":
                host = host or value
            elif key == "DP_TEST_REGISTRY":
                registry = registry or value
    if not host or not registry:
        return (
            "no Docker test bed: run `scripts/docker-testenv start` "
            "(it sets DOCKER_HOST and DP_TEST_REGISTRY)"
        )
    if not BUSYBOX.is_file():
        return "no /bin/busybox to build test images from (apt-get install busybox-static)"
    probe = subprocess.run(
        ["docker", "version"],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": host},
        check=False,
    )
    if probe.returncode != 0:
        return f"the Docker engine at {host} does not answer: {probe.stderr.strip()[:200]}"
    return DockerBed(host, registry)


def unavailable(reason: str) -> NoReturn:
    """A test bed is missing: skip when run by hand, fail under CI=true (CI must never pass by
    skipping the real thing)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true needs the real test bed: {reason}")
    pytest.skip(reason)


def require_bed() -> DockerBed:
    bed = find_bed()
    if isinstance(bed, str):
        unavailable(bed)
    return bed


def busybox_context(
    folder: Path, cmd: str, files: dict[str, str] | None = None, extra: str = ""
) -> Path:
    """A build context FROM scratch with busybox: `cmd` is the shell command the image runs."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, folder / "busybox")
    for name, text in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    copies = "".join(f"COPY {name} /{name}\n" for name in (files or {}))
    (folder / "Dockerfile").write_text(
        textwrap.dedent(f"""\
        FROM scratch
        COPY busybox /bin/busybox
        {copies}{extra}
        CMD ["/bin/busybox", "sh", "-c", {cmd!r}]
        """).replace("'", '"')
    )
    return folder


HTTPD = (  # serves /healthz on port 8080
    "/bin/busybox mkdir -p /www && /bin/busybox echo ok > /www/healthz"
    " && exec /bin/busybox httpd -f -p 8080 -h /www"
)
