"""A run's step logs: every step's lines, masked, one file per step beside the state database."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TextIO

from deploy_pipeline.events import Redactor


class LogFiles:
    """Every step's log lines, masked, kept in `logs/run-N/ENV.TARGET.SERVICE.PHASE.log` beside
    the state database: build output, job output, what a failed container printed."""

    def __init__(self, folder: Path, redact: Redactor) -> None:
        self.folder, self.redact = folder, redact
        self.files: dict[str, TextIO] = {}
        self.lock = threading.Lock()

    @classmethod
    def of_run(cls, state: Path, run_id: int, redact: Redactor) -> LogFiles:
        """The logs of run `run_id` of the state database `state`."""
        return cls(state.parent / "logs" / f"run-{run_id}", redact)

    def __call__(self, environment: str, target: str, service: str, phase: str, line: str) -> None:
        name = f"{environment}.{target}.{service}.{phase}.log"
        with self.lock:
            if name not in self.files:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.files[name] = (self.folder / name).open("a", encoding="utf-8")
            self.files[name].write(self.redact(line) + "\n")

    def close(self) -> None:
        with self.lock:
            for f in self.files.values():
                f.close()
            self.files.clear()
