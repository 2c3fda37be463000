"""Test doubles for the runner: a backend whose steps are held, released and counted by the test.

Parallelism is proven with barriers and counters: a step that must run alongside others waits
on a barrier, which breaks (and fails the test with a clear message) if they never meet.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from deploy_pipeline.backends.base import StepContext, StepResult
from deploy_pipeline.config import parse_config
from deploy_pipeline.events import Collect, EventBus
from deploy_pipeline.model import Event, Pipeline, Service, Target
from deploy_pipeline.plan import environments, plan_runs
from deploy_pipeline.runner import Cancel, Run, RunOptions
from deploy_pipeline.steps import RunResult

WAIT = 10.0  # seconds a barrier or gate waits before the test is failed as a deadlock

FAST_RETRIES = RunOptions(backoff=0.001)  # retries in tests back off for a millisecond

Hook = Callable[[StepContext], StepResult | None]


@dataclass
class Journal:
    """What every GateBackend of a test did, in order, with concurrency counters."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    log: list[tuple[str, str]] = field(default_factory=list)  # ("start"|"end", "svc.phase@target")
    running: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    peak: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def enter(self, key: str, pools: Sequence[str]) -> None:
        with self.lock:
            self.log.append(("start", key))
            self.calls[key] += 1
            for pool in pools:
                self.running[pool] += 1
                self.peak[pool] = max(self.peak[pool], self.running[pool])

    def leave(self, key: str, pools: Sequence[str]) -> None:
        with self.lock:
            self.log.append(("end", key))
            for pool in pools:
                self.running[pool] -= 1

    def index(self, kind: str, key: str) -> int:
        return self.log.index((kind, key))

    def before(self, first: str, then: str) -> bool:
        """`first` ended before `then` started."""
        return self.index("end", first) < self.index("start", then)

    def started(self) -> list[str]:
        return [key for kind, key in self.log if kind == "start"]


class GateBackend:
    """A backend whose steps run the test's hooks: wait on barriers, raise, return results."""

    def __init__(
        self, target: Target, journal: Journal, hooks: dict[str, Hook] | None = None
    ) -> None:
        self.target, self.journal, self.hooks = target, journal, hooks or {}

    def _step(self, ctx: StepContext) -> StepResult:
        key = f"{ctx.service.name}.{ctx.phase}@{self.target.name}"
        build = ctx.phase == "build"
        pool = ctx.phase if ctx.phase in {"build", "test"} else "main"
        pools = [f"{pool}@{self.target.name}", "all"]
        self.journal.enter(key, pools)
        try:
            hook = self.hooks.get(key) or self.hooks.get(f"{ctx.service.name}.{ctx.phase}")
            result = hook(ctx) if hook else None
            return result or StepResult(artifact=f"{ctx.service.name}:test" if build else None)
        finally:
            self.journal.leave(key, pools)

    build = test = deploy = restart = stop = delete = _step

    def status(self, environment: str, service: Service) -> str:
        return "unknown"


def barrier(parties: int) -> Hook:
    """A hook that returns only once `parties` steps are inside it at the same time."""
    b = threading.Barrier(parties, timeout=WAIT)

    def hook(ctx: StepContext) -> None:
        b.wait()

    return hook


def gate(event: threading.Event) -> Hook:
    """A hook that holds its step until the test (or another step) sets `event`."""

    def hook(ctx: StepContext) -> None:
        if not event.wait(WAIT):
            raise AssertionError("gate never opened")

    return hook


def until_cancelled(ctx: StepContext) -> None:
    """A hook that runs until its step is cancelled (timeout, Ctrl-C), like a hung rollout."""
    ctx.sleep(WAIT * 3)


@dataclass
class Harness:
    pipeline: Pipeline
    journal: Journal
    events: Collect
    run: Run

    def execute(self) -> RunResult:
        return self.run.execute()

    def statuses(self, phase: str | None = None) -> dict[str, str]:
        """service (or service.phase@target when several) → last status, from the events."""
        out: dict[str, str] = {}
        for e in self.events.events:
            if e.phase != "run" and (phase is None or e.phase == phase):
                out[f"{e.service}.{e.phase}@{e.target}"] = e.status
        return out

    def final(self) -> Event:
        return self.events.events[-1]


def harness(
    yaml_text: str,
    environments_: Sequence[str] = ("test",),
    action: str = "deploy",
    *,
    hooks: dict[str, Hook] | None = None,
    services: Sequence[str] = (),
    secrets: dict[str, dict[str, str]] | None = None,
    cancel: Cancel | None = None,
    options: RunOptions = FAST_RETRIES,
) -> Harness:
    """A Run over the YAML pipeline with every target on a GateBackend sharing one journal."""
    pipeline = parse_config(yaml_text)
    run_plan = plan_runs(pipeline, environments(pipeline, {}), environments_, action, services)  # type: ignore[arg-type]
    journal, events = Journal(), Collect()
    backends = {name: GateBackend(t, journal, hooks) for name, t in pipeline.targets.items()}
    bus = EventBus([events], None)
    if secrets:
        from deploy_pipeline.events import Redactor

        bus = EventBus([events], Redactor(v for s in secrets.values() for v in s.values()))
    run = Run(run_plan, backends, bus, cancel=cancel, secrets=secrets, options=options)
    return Harness(pipeline, journal, events, run)
