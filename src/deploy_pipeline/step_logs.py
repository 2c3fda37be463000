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
        name = log_name(environment, target, service, phase)
        with self.lock:
            if name not in self.files:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.files[name] = (self.folder / name).open("a", encoding="utf-8")
            self.files[name].write(self.redact(line) + "\n")

    def lines(self, environment: str, target: str, service: str, phase: str) -> list[str] | None:
        """One step's lines as they were written (masked then), or None if it logged nothing."""
        path = self.folder / log_name(environment, target, service, phase)
        return path.read_text(encoding="utf-8").splitlines() if path.is_file() else None

    def steps(self) -> list[tuple[str, str, str, str]]:
        """(environment, target, service, phase) of every step that logged, by file name (the
        names are [a-z0-9-]: no dot inside one)."""
        found = sorted(p.name for p in self.folder.glob("*.log")) if self.folder.is_dir() else []
        parts = [n.removesuffix(".log").split(".") for n in found]
        return [(p[0], p[1], p[2], p[3]) for p in parts if len(p) == 4]

    def close(self) -> None:
        with self.lock:
            for f in self.files.values():
                f.close()
            self.files.clear()


def log_name(environment: str, target: str, service: str, phase: str) -> str:
    """The file of one step's log in its run's folder."""
    return f"{environment}.{target}.{service}.{phase}.log"
