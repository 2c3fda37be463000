"""One run of the Action's step in-process, as GitHub's runner makes it (INPUT_* and GITHUB_*),
reporting to the GitHub stand-in; what it logged, its outputs and its job summary."""

from __future__ import annotations

import io
from pathlib import Path

from deploy_pipeline.action import run_action
from tests.support.github_standin import REPO, TOKEN, GitHubStandin

CANARY = "canary-secret-4f1c9d"  # a service's secret: must appear in no log line but its mask


class Step:
    """One run of the Action's step, as GitHub's runner would make it: INPUT_* and GITHUB_*."""

    def __init__(self, standin: GitHubStandin, workspace: Path) -> None:
        self.standin, self.workspace = standin, workspace
        self.sha = standin.repo().refs["main"]
        self.log = ""
        self.outputs: dict[str, str] = {}
        self.summary = ""

    def __call__(self, *, event_name: str = "push", **inputs: str) -> int:
        output, summary = self.workspace / "output.txt", self.workspace / "summary.md"
        output.write_text("")
        summary.write_text("")
        environ = {
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_SHA": self.sha,
            "GITHUB_API_URL": self.standin.base_url,
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_RUN_ID": "4242",
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary),
            "RUNNER_TEMP": str(self.workspace / "tmp"),
            "DEPLOY_PIPELINE_GITHUB_WRITE_PAUSE": "0.01",
            "API_TOKEN": CANARY,
            "INPUT_GITHUB-TOKEN": TOKEN,
            **{f"INPUT_{k.upper().replace('_', '-')}": v for k, v in inputs.items()},
        }
        if "event" in inputs:
            environ["GITHUB_EVENT_PATH"] = inputs["event"]
        out = io.StringIO()
        code = run_action(environ, out)
        self.log = out.getvalue()
        self.outputs = parse_outputs(output.read_text())
        self.summary = summary.read_text()
        return code


def parse_outputs(text: str) -> dict[str, str]:
    found, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line:
            key, marker = line.split("<<", 1)
            value = []
            for inner in lines:
                if inner == marker:
                    break
                value.append(inner)
            found[key] = "\n".join(value)
        elif "=" in line:
            key, value = line.split("=", 1)
            found[key] = value
    return found
