"""Where the runner's events go: a bus that masks secrets and fans out to sinks (JSON lines,
plain lines, the store, later GitHub and the receiver). A sink is any callable taking an Event.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TextIO

from deploy_pipeline.durations import hundredths
from deploy_pipeline.errors import truncate
from deploy_pipeline.model import Event

EventSink = Callable[[Event], None]
MASK = "***"
# Shorter values would mask ordinary words, so they are not masked: a run refuses them.
MIN_SECRET = 4
RunSecrets = Mapping[str, Mapping[str, str]]  # per service, the secrets handed to it by name


def secret_values(secrets: RunSecrets) -> list[str]:
    """Every value a run's services are handed, service by service, in order."""
    return [value for values in secrets.values() for value in values.values()]


class Redactor:
    """Replaces every known secret value in text with ***, longest first."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.values = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)

    @classmethod
    def of(cls, secrets: RunSecrets) -> Redactor:
        """The redactor of a run: every value its services are handed (the one way to make it)."""
        return cls(secret_values(secrets))

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, MASK)
        return text


class EventBus:
    """Masks each event's message and URL once (and truncates the message), then hands it to
    every sink in turn."""

    def __init__(self, sinks: Iterable[EventSink] = (), redact: Redactor | None = None) -> None:
        self.sinks = list(sinks)
        self.redact = redact or Redactor()
        self.lock = threading.Lock()  # targets run in parallel: sinks see one event at a time

    def subscribe(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def __call__(self, event: Event) -> None:
        if event.message:
            event = dataclasses.replace(event, message=truncate(self.redact(event.message)))
        if event.url:
            event = dataclasses.replace(event, url=self.redact(event.url))
        with self.lock:
            for sink in self.sinks:
                sink(event)


class JsonLines:
    """One JSON object per line: the `--events jsonl` contract of DESIGN.md §5."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
        self.stream.flush()


class PlainLines:
    """One readable line per event, for logs and terminals that are not interactive."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        self.stream.write(format_event(event) + "\n")
        self.stream.flush()


def format_event(event: Event) -> str:
    if event.phase == "run":
        where = event.environment or "run"
        return f"{event.ts:8.2f}s  {where}: run {event.status}" + (
            f" — {event.message}" if event.message else ""
        )
    where = "/".join(p for p in (event.environment, event.target) if p)
    took = f" in {hundredths(event.duration)}" if event.duration is not None else ""
    what = f"{event.service} {event.phase} {event.status}{took}"
    text = f"{event.ts:8.2f}s  {where}  [{event.stage}]  {what}"
    if event.message:
        text += f" — {event.message}"
    if event.url:
        text += f"  {event.url}"
    return text


class Collect:
    """Keeps every event in a list: for tests and for the summary at the end of a run."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
