"""A run's events kept in the store as they happen, written in batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Protocol

from deploy_pipeline.model import Event


class EventLog(Protocol):
    """Where a run's events are kept (the store)."""

    def add_events(self, run_id: int, events: Sequence[Event], first_seq: int) -> None: ...


class EventRecorder:
    """An event sink that keeps a run's events in the store, written in batches: an event is
    there at most `every` seconds after it happened, so those who watch the run (the status
    page, its event stream) see a step start while it runs, not when the next event comes."""

    def __init__(self, store: EventLog, run_id: int, batch: int = 200, every: float = 0.5) -> None:
        self.store, self.run_id, self.batch, self.every = store, run_id, batch, every
        self.pending: list[Event] = []
        self.seq = 0
        self.last = time.monotonic()
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.pending.append(event)
            if len(self.pending) >= self.batch or time.monotonic() - self.last >= self.every:
                self._flush()
            elif self.timer is None:  # a quiet spell: write what waits once `every` is up
                self.timer = threading.Timer(self.every, self.flush)
                self.timer.daemon = True
                self.timer.start()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending:
            self.store.add_events(self.run_id, self.pending, self.seq)
            self.seq += len(self.pending)
            self.pending = []
        self.last = time.monotonic()
