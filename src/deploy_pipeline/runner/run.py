"""A run: a RunPlan's environments and targets in their strategy's order (one after another or
side by side), each a staged pipeline the scheduler runs; at the end, the run's result.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial

from deploy_pipeline.backends.base import Backend
from deploy_pipeline.events import EventBus, EventSink, Redactor
from deploy_pipeline.model import IMAGE_PHASES, Event, Plan, RunPlan, Status
from deploy_pipeline.runner.scheduler import Cancel, LogSink, RunOptions, StagedPipeline
from deploy_pipeline.runner.snapshot import views
from deploy_pipeline.steps import RunResult, StepView, behind_environment, behind_target

DEFAULTS = RunOptions()


class Run:
    """Executes a RunPlan: environments and targets in their strategy's order, each staged."""

    def __init__(
        self,
        run_plan: RunPlan,
        backends: Mapping[str, Backend],
        emit: EventSink,
        *,
        cancel: Cancel | None = None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        options: RunOptions = DEFAULTS,
        clock: Callable[[], float] = time.monotonic,
        logs: LogSink | None = None,
        label: str = "",
        releases: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        self.run_plan, self.backends, self.emit = run_plan, backends, emit
        self.cancel = cancel or Cancel()
        self.secrets = secrets or {}
        # Views and failures reach the summary and GitHub besides the events: they are masked
        # with the bus's own redactor, so one set of secrets is masked by one masker.
        self.redact = emit.redact if isinstance(emit, EventBus) else Redactor()
        self.options, self.clock, self.logs = options, clock, logs
        self.releases = releases or {}  # environment → the release a deploy makes there
        self.label = label or time.strftime("%Y%m%d%H%M%S", time.gmtime())
        self.t0 = clock()
        self.groups = [
            [StagedPipeline(self, plan, tp) for tp in plan.targets] for plan in run_plan.plans
        ]
        for i, group in enumerate(self.groups):
            for j, pipe in enumerate(group):
                if j and plan_order(run_plan.plans[i]) == "sequential":
                    pipe.blocked = behind_target(group[j - 1].target)
                if i and run_plan.environment_order == "sequential":
                    pipe.blocked = behind_environment(run_plan.plans[i - 1].environment.name)

    def execute(self) -> RunResult:
        self.t0 = self.clock()
        statuses = _in_order(
            [
                partial(self.run_environment, p, g)
                for p, g in zip(self.run_plan.plans, self.groups, strict=True)
            ],
            self.run_plan.environment_order,
            self.abandon_group,
        )
        if self.cancel.is_set():
            status: Status = "cancelled"
        else:
            status = "succeeded" if all(s == "succeeded" for s in statuses) else "failed"
        failures = [p.failure for g in self.groups for p in g if p.failure]
        names = [p.environment.name for p in self.run_plan.plans]
        steps = self.snapshot()
        counts = Counter(v.state for v in steps if v.phase not in IMAGE_PHASES)
        message = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        message += f"; {failures[0]}" if failures else ""
        if self.cancel.is_set():
            message = f"{self.cancel.reason}; {message}"
        duration = self.clock() - self.t0
        self.emit(
            Event(
                ts=duration,
                environment=names[0] if len(names) == 1 else None,
                target=None,
                stage=None,
                service=None,
                phase="run",
                status=status,
                message=message,
                url=None,
                duration=duration,
            )
        )
        return RunResult(
            status=status,
            environments=dict(zip(names, statuses, strict=True)),
            steps=steps,
            failures=failures,
            duration=duration,
        )

    def run_environment(self, plan: Plan, group: list[StagedPipeline]) -> Status:
        for j, pipe in enumerate(group):
            pipe.blocked = behind_target(group[j - 1].target) if j else None
        statuses = _in_order(
            [pipe.execute for pipe in group],
            plan_order(plan),
            lambda i: group[i].abandon(self.stop_reason(group)),
        )
        if self.cancel.is_set():
            return "cancelled"
        return "succeeded" if all(s == "succeeded" for s in statuses) else "failed"

    def stop_reason(self, pipes: list[StagedPipeline]) -> str:
        if self.cancel.is_set():
            return self.cancel.reason
        failed = next((p for p in pipes if p.failure), None)
        return f"target {failed.target} failed" if failed else "an earlier target failed"

    def abandon_group(self, i: int) -> None:
        reason = self.cancel.reason if self.cancel.is_set() else "an earlier environment failed"
        for pipe in self.groups[i]:
            pipe.blocked = None
            pipe.abandon(reason)

    def snapshot(self) -> list[StepView]:
        now = self.clock()
        return [v for g in self.groups for p in g for v in views(p, now)]


def plan_order(plan: Plan) -> str:
    return plan.environment.strategy.targets


def _in_order(
    tasks: list[Callable[[], Status]], order: str, abandon: Callable[[int], None]
) -> list[Status]:
    """Run tasks one after another (stopping at the first that does not succeed) or all at once."""
    results: list[Status] = ["cancelled"] * len(tasks)
    if order == "parallel":
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, tasks[i]()))
            for i in range(len(tasks))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results
    for i, task in enumerate(tasks):
        if i and results[i - 1] != "succeeded":
            abandon(i)
            continue
        results[i] = task()
    return results
