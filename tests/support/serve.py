"""`deploy-pipeline serve` as a real process on loopback, on a free port, with its log kept beside
its state database; stopped by its PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.eventually import eventually
from tests.support.webhooks import SECRET, payload, signed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One `deploy-pipeline serve` process, stopped by its PID."""

    def __init__(self, config: Path, state: Path, env: dict[str, str] | None = None) -> None:
        self.config, self.state, self.port = config, state, free_port()
        self.env = env or {}
        self.log = state.parent / "serve.log"
        state.parent.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = {
            **os.environ,
            "DEPLOY_PIPELINE_WEBHOOK_SECRET": SECRET,
            "DEPLOY_PIPELINE_STATE": str(self.state),
            "DEPLOY_PIPELINE_WORKERS": "1",
            **self.env,
        }
        env.pop("GITHUB_TOKEN", None)
        command = [sys.executable, "-m", "deploy_pipeline", "serve", "-f", str(self.config)]
        with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        eventually(self.healthy, timeout=30, every=0.05, message="the receiver answering /healthz")
        return self

    def healthy(self) -> bool:
        """Whether it answers /healthz (the test fails at once if it exited instead)."""
        assert self.process is not None
        try:
            self.get("/healthz")
        except OSError:
            assert self.process.poll() is None, "the receiver exited while starting"
            return False
        return True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url(path), timeout=5) as answer:
            return json.loads(answer.read())

    def deliver(self, number: int, sha: str) -> str:
        body = json.dumps(payload("pull_request", "opened", number=number, sha=sha)).encode()
        request = urllib.request.Request(
            self.url("/webhooks/github"), data=body, headers=signed(body, "pull_request")
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 202
            return str(json.loads(answer.read())["queued"])

    def state_of(self, delivery: str) -> str:
        return str(self.get(f"/api/deliveries/{delivery}")["state"])

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
