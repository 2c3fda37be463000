"""An environment as the receiver's status page draws it, in pure functions: its stages left to
right, each with a card per service (status, waiting reason, URL), made from the pipeline, the
environment and the stored events (DESIGN.md §5) of its latest runs. No I/O.

A run speaks for a service once it starts a step of it or skips it; a service the latest run has
not reached yet is `waiting`, with the reason the terminal view would give. A service the latest
runs never touched keeps the card of the newest run that did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from deploy_pipeline.model import ACTIONS, Action, Environment, Pipeline
from deploy_pipeline.plan import plan_stages
from deploy_pipeline.steps import (
    GERUND,
    WAITING,
    behind_environment,
    behind_target,
    for_slot,
    stage_waiting,
    waiting,
)

# what a service is once its step succeeded, by the run's action
AFTER = {
    "deploy": "deployed",
    "restart": "deployed",
    "stop": "stopped",
    "delete": "not deployed",
}
FINAL = frozenset({"succeeded", "failed", "cancelled", "skipped", "reused"})
GONE = frozenset({"not deployed", "stopped", "skipped"})  # states with nothing to open
# the card of a service on several targets shows the state that most needs a look
URGENCY = (
    "failed",
    "interrupted",
    "cancelled",
    "building",
    "testing",
    "deploying",
    "restarting",
    "stopping",
    "deleting",
    "waiting",
    "not deployed",
    "stopped",
    "deployed",
    "skipped",
)


@dataclass(frozen=True)
class RunEvents:
    """One run of the environment as the store keeps it, with its events in order."""

    id: int
    action: str
    status: str  # running, succeeded, failed, cancelled, abandoned
    events: Sequence[Mapping[str, object]]
    services: tuple[str, ...] = ()  # a service-level run's services; () for the environment
    elapsed: float = 0.0  # seconds since the run started, on its events' clock (`ts`)

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class TargetCard:
    """One service on one target."""

    target: str
    status: str
    url: str | None = None
    waiting: str | None = None
    message: str | None = None
    elapsed: float | None = None  # seconds in the current step, or the last step's duration
    run: int | None = None


@dataclass(frozen=True)
class ServiceCard:
    name: str
    type: str
    skipped: bool
    targets: tuple[TargetCard, ...]

    @property
    def main(self) -> TargetCard:
        """The target whose state the card shows: the one that most needs a look."""
        return min(self.targets, key=lambda t: _urgency(t.status))

    @property
    def url(self) -> str | None:
        return self.main.url or next((t.url for t in self.targets if t.url), None)

    def to_json(self) -> dict[str, object]:
        main = self.main
        return {
            "name": self.name,
            "type": self.type,
            "status": main.status,
            "skipped": self.skipped,
            "url": self.url,
            "waiting": main.waiting,
            "message": main.message,
            "elapsed": None if main.elapsed is None else round(main.elapsed, 3),
            "run": main.run,
            "targets": [
                {"name": t.target, "status": t.status, "url": t.url, "waiting": t.waiting}
                for t in self.targets
            ],
        }


@dataclass(frozen=True)
class StageColumn:
    name: str
    services: tuple[ServiceCard, ...]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "services": [s.to_json() for s in self.services]}


def stage_columns(
    pipeline: Pipeline, environment: Environment, runs: Sequence[RunEvents]
) -> list[StageColumn]:
    """The environment's stages in the file's order, each with its services' cards; `runs` are
    the environment's runs, newest first."""
    tracks = [_tracks(run, environment.name) for run in runs]
    waits = _waiting(pipeline, environment, runs[0], tracks[0]) if runs else {}
    columns = []
    for stage in pipeline.stages:
        cards = []
        for svc in pipeline.services.values():
            if svc.stage != stage:
                continue
            skipped = svc.name in environment.skipped
            targets = tuple(
                _target_card(svc.name, target, skipped, runs, tracks, waits)
                for target in environment.targets
            )
            cards.append(ServiceCard(svc.name, svc.type, skipped, targets))
        if cards:
            columns.append(StageColumn(stage, tuple(cards)))
    return columns


def card_urls(pipeline: Pipeline, columns: Iterable[StageColumn]) -> list[tuple[str | None, bool]]:
    """Each card's URL and whether its service is public, for `steps.environment_url`."""
    return [
        (card.url, pipeline.services[card.name].public)
        for column in columns
        for card in column.services
    ]


# --- one run's events, per target and service ----------------------------------------------


@dataclass
class _Step:
    status: str  # started, or a final status
    ts: float
    message: str = ""
    duration: float | None = None


@dataclass
class _Track:
    """What one run did to one service on one target."""

    build: _Step | None = None
    test: _Step | None = None  # its image's test (DESIGN §9), between its build and its step
    main: _Step | None = None
    phase: str = "deploy"
    url: str | None = None
    started: bool = False  # its own step (not only its build) started in this run

    @property
    def touched(self) -> bool:
        """The run speaks for the service: it started its step, skipped it, or failed its build
        or its test."""
        if self.main is not None and (self.started or self.main.status == "skipped"):
            return True
        return self.failed_image is not None

    @property
    def failed_image(self) -> _Step | None:
        """Its build or its test, if that failed (then its own step never started)."""
        return next((s for s in (self.build, self.test) if s and s.status == "failed"), None)

    @property
    def making(self) -> tuple[str, _Step] | None:
        """("building"|"testing", the step) while its image is being built or tested."""
        for doing, step in (("building", self.build), ("testing", self.test)):
            if step is not None and step.status == "started":
                return doing, step
        return None


def _tracks(run: RunEvents, environment: str) -> dict[tuple[str, str], _Track]:
    tracks: dict[tuple[str, str], _Track] = {}
    for event in run.events:
        service, target, phase = event.get("service"), event.get("target"), event.get("phase")
        if event.get("environment") != environment or not service or phase == "run":
            continue
        track = tracks.setdefault((str(target), str(service)), _Track())
        duration = event.get("duration")
        step = _Step(
            str(event.get("status")),
            _number(event.get("ts")),
            str(event.get("message") or ""),
            _number(duration) if duration is not None else None,
        )
        if phase == "build":
            track.build = step
        elif phase == "test":
            track.test = step
        else:
            track.phase, track.main = str(phase), step
            track.started = track.started or step.status == "started"
        if event.get("url"):
            track.url = str(event["url"])
    return tracks


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _target_card(
    service: str,
    target: str,
    skipped: bool,
    runs: Sequence[RunEvents],
    tracks: Sequence[Mapping[tuple[str, str], _Track]],
    waits: Mapping[tuple[str, str], str],
) -> TargetCard:
    for i, (run, by_service) in enumerate(zip(runs, tracks, strict=True)):
        track = by_service.get((target, service))
        url = _last_url(target, service, runs[i:], tracks[i:])
        if i == 0 and (target, service) in waits:  # the running run has not started it yet
            if track is not None and track.making is not None:
                doing, step = track.making
                return _card(target, run, doing, step, url)
            return TargetCard(
                target, "waiting", url=url, waiting=waits[(target, service)], run=run.id
            )
        if track is not None and track.touched:
            return _from_track(target, run, track, url)
    if skipped:
        return TargetCard(target, "skipped", message="skipped in this environment")
    newest = tracks[0].get((target, service)) if tracks else None
    why = newest.main.message if newest and newest.main else None
    return TargetCard(target, "not deployed", message=why or None)  # e.g. "not started: …"


def _from_track(target: str, run: RunEvents, track: _Track, url: str | None) -> TargetCard:
    main = track.main
    if main is None or (not track.started and main.status != "skipped"):
        failed = track.failed_image  # touched with no step of its own: its build or test failed
        assert failed is not None
        return _card(target, run, "failed", failed)
    if main.status == "started":
        if run.running:
            return _card(target, run, GERUND.get(track.phase, "deploying"), main, url)
        message = f"run {run.id} ended before this step did"
        return TargetCard(target, "interrupted", url=url, message=message, run=run.id)
    if main.status == "succeeded":
        return _card(target, run, AFTER.get(run.action, "deployed"), main, url)
    return _card(target, run, main.status, main, url)


def _card(
    target: str, run: RunEvents, status: str, step: _Step, url: str | None = None
) -> TargetCard:
    if step.status == "started":
        elapsed: float | None = max(run.elapsed - step.ts, 0.0)
    else:
        elapsed = step.duration
    return TargetCard(
        target,
        status,
        url=None if status in GONE else url,
        message=step.message or None,
        elapsed=elapsed,
        run=run.id,
    )


def _last_url(
    target: str,
    service: str,
    runs: Sequence[RunEvents],
    tracks: Sequence[Mapping[tuple[str, str], _Track]],
) -> str | None:
    """The newest URL a run gave the service, unless a later run deleted it."""
    for run, by_service in zip(runs, tracks, strict=True):
        track = by_service.get((target, service))
        if track is None or not track.touched:
            continue
        if run.action == "delete" and track.main and track.main.status == "succeeded":
            return None
        if track.url:
            return track.url
    return None


# --- why a service of the running run has not started yet ----------------------------------


@dataclass
class _Stage:
    name: str
    services: list[str] = field(default_factory=list)


def _waiting(
    pipeline: Pipeline,
    environment: Environment,
    run: RunEvents,
    tracks: Mapping[tuple[str, str], _Track],
) -> dict[tuple[str, str], str]:
    """(target, service) → waiting reason, for the running run's services not started yet."""
    if not run.running:
        return {}
    action: Action = next((a for a in ACTIONS if a == run.action), "deploy")
    stages = [
        _Stage(sp.name, [p.service.name for p in sp.services])
        for sp in plan_stages(pipeline, environment, action, run.services)
    ]
    planned = [s for st in stages for s in st.services]
    here = {t for t, _ in tracks}
    others = sorted(
        {str(e.get("environment")) for e in run.events if e.get("environment")} - {environment.name}
    )
    result: dict[tuple[str, str], str] = {}
    earlier_open: str | None = None
    for target in environment.targets:
        done = {
            s
            for s in planned
            if (tr := tracks.get((target, s))) and tr.main and tr.main.status in FINAL
        }
        blocked = None
        if earlier_open is not None:
            blocked = waiting(behind_target(earlier_open))
        elif target not in here and others:
            blocked = waiting(behind_environment(others[-1]))
        active = next((st for st in stages if set(st.services) - done), None)
        for pos, st in enumerate(stages):
            for svc in st.services:
                track = tracks.get((target, svc))
                if svc in done or (track and track.main and track.main.status == "started"):
                    continue
                if blocked:
                    result[(target, svc)] = blocked
                elif active is None or pos > stages.index(active):
                    result[(target, svc)] = _stage_wait(active, run, target, tracks)
                else:  # its stage is on: a slot, or its build (then the card says building)
                    result[(target, svc)] = for_slot(run.action)
        if done != set(planned) and environment.strategy.targets == "sequential":
            earlier_open = earlier_open or target
    return result


def _stage_wait(
    stage: _Stage | None,
    run: RunEvents,
    target: str,
    tracks: Mapping[tuple[str, str], _Track],
) -> str:
    """Name the active stage and the longest-running step keeping it busy."""
    if stage is None:
        return WAITING
    busy: list[tuple[float, str, str]] = []
    for svc in stage.services:
        track = tracks.get((target, svc))
        if track is None:
            continue
        if track.main and track.main.status == "started":
            busy.append((track.main.ts, svc, GERUND.get(track.phase, "deploying")))
        elif track.making is not None:
            doing, step = track.making
            busy.append((step.ts, svc, doing))
    busy.sort()
    return stage_waiting(stage.name, [(svc, doing, run.elapsed - ts) for ts, svc, doing in busy])


def _urgency(status: str) -> int:
    return URGENCY.index(status) if status in URGENCY else len(URGENCY)
