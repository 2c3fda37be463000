"""The scheduler: one environment's staged pipeline on one target, the only place that decides
what runs when (DESIGN.md §2).

One coordinator thread per environment × target owns all scheduling state and hands steps to
bounded pools (builds, tests, and the active stage's deploys); workers only call the backend and
report back through a queue, so no pool thread ever waits on another job of its pool. A service
with `test:` gets a test step between its build and its deploy (DESIGN §9): the image a build
makes is pushed by its test step once the test passes, and a reused image's test ends `reused`.
"""

from __future__ import annotations

import heapq
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from deploy_pipeline.backends.base import Backend, StepContext, StepResult, UrlReader
from deploy_pipeline.durations import brief
from deploy_pipeline.errors import Cancelled, StepError, StepTimeout, TransientError
from deploy_pipeline.events import EventSink, Redactor
from deploy_pipeline.model import (
    IMAGE_PHASES,
    Event,
    Phase,
    Plan,
    Service,
    StagePlan,
    Status,
    TargetPlan,
    step_phase,
)
from deploy_pipeline.plan import resolve_env

PENDING, RUNNING = "pending", "running"
GRACE = 1.0  # seconds a step past its deadline has to stop and report its own reason
DONE_OK = frozenset({"succeeded", "reused", "skipped"})
TESTED_BEFORE = "the image passed its test when it was built"


LogSink = Callable[[str, str, str, str, str], None]  # environment, target, service, phase, line


@dataclass(frozen=True)
class RunOptions:
    backoff: float = 1.0  # first retry delay for a transient error; doubles each time
    max_backoff: float = 30.0


class Cancel:
    """The run's stop flag and its reason (interrupted, superseded by run N, …)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self.listeners: list[Callable[[], None]] = []

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()
            for listener in list(self.listeners):
                listener()

    def is_set(self) -> bool:
        return self.event.is_set()


class RunContext(Protocol):
    """What a staged pipeline needs of the run it is part of (`run.Run` is one)."""

    @property
    def backends(self) -> Mapping[str, Backend]: ...
    @property
    def emit(self) -> EventSink: ...
    @property
    def cancel(self) -> Cancel: ...
    @property
    def secrets(self) -> Mapping[str, Mapping[str, str]]: ...
    @property
    def redact(self) -> Redactor: ...
    @property
    def options(self) -> RunOptions: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def logs(self) -> LogSink | None: ...
    @property
    def label(self) -> str: ...
    @property
    def releases(self) -> Mapping[str, Mapping[str, object]]: ...
    @property
    def t0(self) -> float: ...


class Step:
    __slots__ = (
        "artifact",
        "build",
        "cancel",
        "deadline",
        "expired",
        "finished",
        "image",
        "main",
        "message",
        "note",
        "order",
        "phase",
        "pos",
        "service",
        "stage",
        "started",
        "state",
        "test",
        "url",
    )

    def __init__(self, stage: StagePlan, pos: int, order: int, phase: Phase, service: str) -> None:
        self.stage, self.pos, self.order, self.phase, self.service = (
            stage,
            pos,
            order,
            phase,
            service,
        )
        self.state, self.message, self.note = PENDING, "", ""
        self.started: float | None = None
        self.finished: float | None = None
        self.deadline = 0.0
        self.expired: float | None = None  # when it passed its deadline and was told to stop
        self.url: str | None = None
        self.artifact: str | None = None
        self.image: str | None = None  # what its deploy runs, by digest
        self.cancel: threading.Event | None = None
        self.build: Step | None = None  # a main step's build, if it has one
        self.test: Step | None = None  # a main step's test, if it has one (after its build)
        self.main: Step | None = None  # a build's or a test's main step


class StagedPipeline:
    """One environment's staged pipeline on one target, as the runner schedules it (the model's
    `Pipeline` is the file's pipeline, which this runs one plan of)."""

    def __init__(self, run: RunContext, plan: Plan, tp: TargetPlan) -> None:
        self.run, self.plan, self.tp = run, plan, tp
        self.env, self.target = plan.environment.name, tp.target.name
        self.backend = run.backends[tp.target.name]
        self.lock = threading.Lock()
        self.inbox: queue.SimpleQueue[tuple[Step, StepResult | None, BaseException | None] | None]
        self.inbox = queue.SimpleQueue()
        self.blocked: str | None = None
        self.status: Status | None = None
        self.failure = ""
        self.active = 0
        self.stages: list[list[Step]] = []
        self.builds: list[Step] = []
        self.tested = False
        order = 0
        for pos, sp in enumerate(tp.stages):
            mains = []
            for planned in sp.services:
                main = Step(sp, pos, order, step_phase(plan.action), planned.service.name)
                if planned.build:
                    main.build = Step(sp, pos, order, "build", planned.service.name)
                    main.build.main = main
                    self.builds.append(main.build)
                    if planned.service.test is not None:
                        main.test = Step(sp, pos, order, "test", planned.service.name)
                        main.test.main = main
                        self.tested = True
                mains.append(main)
                order += 1
            self.stages.append(mains)
        self.services = {p.service.name: p.service for sp in tp.stages for p in sp.services}
        env = plan.environment
        self.record = {
            "source": env.source,
            "skipped": sorted(env.skipped),
            "pull_request": env.pull_request,
        }
        self.builds_left = [sum(1 for m in mains if m.build) for mains in self.stages]
        self.mains_left = [len(mains) for mains in self.stages]
        self.heap: list[tuple[int, int, Step]] = []  # builds, by stage then file order
        self.tests: list[tuple[int, int, Step]] = []  # tests whose build is done, the same way
        self.ready: list[tuple[int, Step]] = []
        self.flying: set[Step] = set()
        self.build_busy = self.test_busy = self.main_busy = 0

    # --- events ------------------------------------------------------------------------------

    def emit(
        self, step: Step, status: Status, message: str = "", duration: float | None = None
    ) -> None:
        self.run.emit(
            Event(
                ts=self.run.clock() - self.run.t0,
                environment=self.env,
                target=self.target,
                stage=step.stage.name,
                service=step.service,
                phase=step.phase,
                status=status,
                message=message,
                url=step.url,
                duration=duration,
            )
        )

    # --- the coordinator ---------------------------------------------------------------------

    def execute(self) -> Status:
        self.blocked = None
        for svc in self.plan.skipped:
            self.run.emit(
                Event(
                    ts=self.run.clock() - self.run.t0,
                    environment=self.env,
                    target=self.target,
                    stage=svc.stage,
                    service=svc.name,
                    phase=step_phase(self.plan.action),
                    status="skipped",
                    message=self.plan.skip_reason(svc.name),
                )
            )
        p = self.plan.parallelism
        builds = ThreadPoolExecutor(p, f"build-{self.env}-{self.target}") if self.builds else None
        tests = ThreadPoolExecutor(p, f"test-{self.env}-{self.target}") if self.tested else None
        mains = ThreadPoolExecutor(p, f"{self.plan.action}-{self.env}-{self.target}")
        if self.plan.build_ahead:
            for b in self.builds:
                heapq.heappush(self.heap, (b.pos, b.order, b))
        self.run.cancel.listeners.append(self.wake)
        try:
            self.enter(0)
            while True:
                if not self.failure and not self.run.cancel.is_set():
                    self.dispatch(builds, tests, mains)
                if not self.flying:
                    break
                self.receive()
        finally:
            self.run.cancel.listeners.remove(self.wake)
            for pool in (builds, tests, mains):
                if pool:
                    pool.shutdown(wait=True)
        reason = self.run.cancel.reason if self.run.cancel.is_set() else self.failure
        self.abandon(reason)
        if self.run.cancel.is_set():
            self.status = "cancelled"
        else:
            self.status = "failed" if self.failure else "succeeded"
        return self.status

    def wake(self) -> None:
        self.inbox.put(None)

    def enter(self, pos: int) -> None:
        """Make stage `pos` the active one, skipping empty stages, until a stage has work left."""
        self.active = pos
        while self.active < len(self.stages) and not self.mains_left[self.active]:
            self.active += 1
        if self.active >= len(self.stages):
            return
        mains = self.stages[self.active]
        if not self.plan.build_ahead:
            for m in mains:
                if m.build:
                    heapq.heappush(self.heap, (m.pos, m.order, m.build))
        if self.plan.build_ahead or not self.builds_left[self.active]:
            for m in mains:
                if image_ready(m):
                    heapq.heappush(self.ready, (m.order, m))

    def dispatch(
        self,
        builds: ThreadPoolExecutor | None,
        tests: ThreadPoolExecutor | None,
        mains: ThreadPoolExecutor,
    ) -> None:
        p = self.plan.parallelism
        while builds and self.heap and self.build_busy < p:
            step = heapq.heappop(self.heap)[2]
            self.build_busy += 1
            self.start(step, builds)
        while tests and self.tests and self.test_busy < p:
            step = heapq.heappop(self.tests)[2]
            self.test_busy += 1
            self.start(step, tests)
        while self.ready and self.main_busy < p:
            step = heapq.heappop(self.ready)[1]
            self.main_busy += 1
            self.start(step, mains)

    def start(self, step: Step, pool: ThreadPoolExecutor) -> None:
        svc = self.services[step.service]
        now = self.run.clock()
        with self.lock:
            step.state, step.started = RUNNING, now
            step.deadline = now + (svc.timeout or self.plan.timeout)
            step.cancel = threading.Event()
            self.flying.add(step)
        made = step.main.build if step.phase == "test" and step.main else step.test or step.build
        if made is not None:  # the image its build made, or its test passed
            step.artifact = made.artifact
        self.emit(step, "started")
        pool.submit(self.work, step)

    def work(self, step: Step) -> None:
        """In a pool thread: call the backend, retrying transient errors with backoff."""
        assert step.cancel is not None
        built = step.main.build if step.phase == "test" and step.main else None
        if built is not None and built.state == "reused":  # tested before it was pushed
            self.inbox.put(
                (step, StepResult("reused", TESTED_BEFORE, artifact=step.artifact), None)
            )
            return
        ctx = StepContext(
            environment=self.env,
            target=self.tp.target,
            service=self.resolved(step.service),
            phase=step.phase,
            deadline=step.deadline,
            cancel=step.cancel,
            reason=self.cancel_reason,
            artifact=step.artifact,
            secrets=self.run.secrets.get(step.service, {}),
            log=self.note(step),
            started=step.started or 0.0,
            run=self.run.label,
            record=self.record,
            release=self.run.releases.get(self.env, {}),
        )
        action = getattr(self.backend, step.phase)
        attempt, opts = 0, self.run.options
        while True:
            try:
                self.inbox.put((step, action(ctx), None))
            except TransientError as exc:
                if attempt >= self.plan.retries or step.cancel.is_set():
                    self.inbox.put((step, None, exc))
                    return
                delay = min(opts.backoff * 2**attempt, opts.max_backoff)
                attempt += 1
                step.note = f"retry {attempt}/{self.plan.retries} in {delay:g}s after: {exc}"
                try:
                    ctx.sleep(delay)
                except (Cancelled, StepTimeout) as stop:
                    self.inbox.put((step, None, stop if isinstance(stop, Cancelled) else exc))
                    return
                continue
            except BaseException as exc:  # reported as the step's failure, never lost
                self.inbox.put((step, None, exc))
            return

    def resolved(self, name: str) -> Service:
        """The service with its env's substitutions made (DESIGN.md §8): `${url:SERVICE}` is
        the URL that SERVICE's step of this run reported (an earlier stage's, so it is done),
        else the one the target says it has, else empty."""
        return resolve_env(self.plan, self.services[name], self.url_of)

    def url_of(self, name: str) -> str:
        for mains in self.stages:
            for m in mains:
                if m.service == name and m.phase != "build":
                    return m.url or ""
        other = next((s for s in self.plan.services if s.name == name), None)
        if other is None or not isinstance(self.backend, UrlReader):
            return ""
        return self.backend.service_url(self.env, other) or ""

    def note(self, step: Step) -> Callable[[str], None]:
        """A step's log: its last line shows in the live view, every line goes to the run's logs."""
        logs = self.run.logs

        def log(line: str) -> None:
            step.note = line
            if logs is not None:
                logs(self.env, self.target, step.service, step.phase, line)

        return log

    def cancel_reason(self) -> str:
        return self.run.cancel.reason or "timed out"

    def receive(self) -> None:
        now = self.run.clock()
        nearest = min((self.wake_at(s) for s in self.flying if s.state == RUNNING), default=None)
        try:
            item = self.inbox.get(
                timeout=None if nearest is None else max(nearest - now, 0) + 0.001
            )
        except queue.Empty:
            item = None
        if item is None:
            self.expire()
            if self.run.cancel.is_set():
                for s in self.flying:
                    if s.cancel:
                        s.cancel.set()
            return
        step, result, error = item
        with self.lock:
            step.cancel = None  # the worker is done with it; 20,000 idle Events add up
            self.flying.discard(step)
            if step.phase == "build":
                self.build_busy -= 1
            elif step.phase == "test":
                self.test_busy -= 1
            else:
                self.main_busy -= 1
            if step.state != RUNNING:  # it already timed out; its slot is free now
                return
            step.finished = self.run.clock()
        took = step.finished - (step.started or step.finished)
        if result is not None and step.expired is not None:  # done, but past its deadline
            result, error = None, StepTimeout("timed out")
        if result is not None:
            step.state, step.message = result.status, result.message
            step.url = self.run.redact(result.url) if result.url else None  # the summary shows it
            step.artifact = result.artifact or step.artifact
            step.image = result.image
            self.emit(step, result.status, result.message, took)
            self.succeeded(step)
            return
        timed_out = step.expired is not None and not self.run.cancel.is_set()
        if isinstance(error, Cancelled) and not timed_out:
            step.state, step.message = "cancelled", str(error) or self.run.cancel.reason
            self.emit(step, "cancelled", step.message, took)
            return
        if isinstance(error, StepTimeout | Cancelled):
            limit = (step.expired or step.finished) - (step.started or step.finished)
            message = f"timed out after {brief(limit)}"
        elif isinstance(error, StepError):
            message = str(error)
        else:
            message = f"unexpected error: {type(error).__name__}: {error}"
        step.state, step.message = "failed", message
        self.emit(step, "failed", message, took)
        self.fail(step, message)

    def expire(self) -> None:
        """At its deadline a step is told to stop and given GRACE seconds to say why (a backend's
        reason beats a bare "timed out"); after that it is failed as timed out."""
        now = self.run.clock()
        for step in list(self.flying):
            if step.state != RUNNING or step.cancel is None:
                continue
            if step.expired is None and now >= step.deadline:
                step.expired = now
                step.cancel.set()
            elif step.expired is not None and now >= step.expired + GRACE:
                step.state, step.finished = "failed", now
                step.message = f"timed out after {brief(step.expired - (step.started or now))}"
                self.emit(step, "failed", step.message, now - (step.started or now))
                self.fail(step, step.message)

    def wake_at(self, step: Step) -> float:
        return step.deadline if step.expired is None else step.expired + GRACE

    def fail(self, step: Step, message: str) -> None:
        if not self.failure:
            self.failure = self.run.redact(
                f"{self.env}/{self.target} {step.service} {step.phase} failed: {message}"
            )

    def succeeded(self, step: Step) -> None:
        if step.phase in IMAGE_PHASES:
            main = step.main
            assert main is not None
            if step.phase == "build" and main.test is not None:  # its test next, then its deploy
                heapq.heappush(self.tests, (main.pos, main.order, main.test))
                return
            self.builds_left[step.pos] -= 1
            if step.pos == self.active:
                if self.plan.build_ahead:
                    heapq.heappush(self.ready, (main.order, main))
                elif not self.builds_left[step.pos]:
                    for m in self.stages[step.pos]:
                        heapq.heappush(self.ready, (m.order, m))
            return
        self.mains_left[step.pos] -= 1
        if step.pos == self.active and not self.mains_left[step.pos]:
            self.enter(self.active + 1)

    def abandon(self, reason: str) -> None:
        """Report every step that never started as cancelled, saying why."""
        message = f"not started: {reason}" if reason else "not started"
        for mains in self.stages:
            for m in mains:
                for step in (m.build, m.test, m):
                    if step is not None and step.state == PENDING:
                        step.state, step.message = "cancelled", message
                        self.emit(step, "cancelled", message)


def image_ready(main: Step) -> bool:
    """Whether a main step's image is ready: built (or reused) and, with `test:`, tested."""
    return all(s is None or s.state in DONE_OK for s in (main.build, main.test))
