"""The Action test bed as pytest sees it: nektos/act and the local stand-in images that
`scripts/action-testenv build` and `base-image` put in place (nothing can be pulled here).
Missing: skip by hand, fail under CI=true."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.docker_testbed import DockerBed, unavailable
from tests.support.paths import ROOT

SCRIPT = ROOT / "scripts" / "action-testenv"
# what GitHub's build of the Action reads (act sends the whole folder as the build context)
ACTION_FILES = (
    "action.yml",
    "Dockerfile",
    "entrypoint.sh",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "src",
    "docker/slim.py",
)


def require_act(bed: DockerBed) -> None:
    env = {**os.environ, "DOCKER_HOST": bed.host}
    exports = subprocess.run(
        [str(SCRIPT), "env"], capture_output=True, text=True, env=env, check=False
    )
    act = next(
        (
            line.split("=", 1)[1]
            for line in exports.stdout.splitlines()
            if line.startswith("export DP_ACT=")
        ),
        "",
    )
    if not act or not Path(act).is_file():
        unavailable(
            "no act: run `scripts/action-testenv build && scripts/action-testenv base-image`"
        )
    images = bed.cli("images", "-q", "python:3.11-slim-bookworm")
    if not images:
        unavailable(
            "no python:3.11-slim-bookworm in the engine: `scripts/action-testenv base-image`"
        )


def copy_action(into: Path) -> None:
    """The Action's files, as a repository that vendors it would have them."""
    for name in ACTION_FILES:
        source, target = ROOT / name, into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(
                source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(source, target)


@dataclass
class ActRun:
    code: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    @property
    def log(self) -> str:
        """What the steps printed, as the run's log shows it."""
        return "".join(str(line.get("msg", "")) for line in self.lines if line.get("raw_output"))

    def outputs(self, step: str) -> dict[str, str]:
        return {
            str(line["name"]): str(line["arg"])
            for line in self.lines
            if line.get("command") == "set-output" and line.get("stepID") == [step]
        }

    @property
    def summary(self) -> str:
        return "".join(
            str(line["content"]) for line in self.lines if line.get("command") == "summary"
        )

    @property
    def succeeded(self) -> bool:
        return any(line.get("jobResult") == "success" for line in self.lines)


def act(bed: DockerBed, repo: Path, *args: str, timeout: float = 600) -> ActRun:
    """Run act in `repo` offline (scripts/action-testenv act), reading its JSON log back."""
    out = subprocess.run(
        [str(SCRIPT), "act", *args, "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DOCKER_HOST": bed.host},
        check=False,
    )
    lines = []
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return ActRun(out.returncode, lines, out.stderr)
