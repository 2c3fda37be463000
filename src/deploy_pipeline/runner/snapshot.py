"""A staged pipeline as a view sees it at one moment: each step's `StepView`, with the sentence
that says why a pending step waits. It reads the scheduler's state under its lock and changes
nothing; the words are steps.py's.
"""

from __future__ import annotations

from deploy_pipeline.model import IMAGE_PHASES, step_phase
from deploy_pipeline.runner.scheduler import DONE_OK, PENDING, RUNNING, StagedPipeline, Step
from deploy_pipeline.steps import (
    GERUND,
    WAITING,
    StepView,
    for_its_build,
    for_its_test,
    for_slot,
    for_stage_builds,
    stage_waiting,
    waiting,
)


def views(pipe: StagedPipeline, now: float) -> list[StepView]:
    """Every step of the pipeline as a view shows it now, skipped services last."""
    with pipe.lock:
        out = []
        for mains in pipe.stages:
            for m in mains:
                for step in (m.build, m.test, m):
                    if step is None:
                        continue
                    end = step.finished if step.finished is not None else now
                    elapsed = end - step.started if step.started is not None else None
                    why = _waiting(pipe, step, now) if step.state == PENDING else None
                    message = pipe.run.redact(step.note if step.state == RUNNING else step.message)
                    out.append(
                        StepView(
                            environment=pipe.env,
                            target=pipe.target,
                            stage=step.stage.name,
                            service=step.service,
                            phase=step.phase,
                            state=step.state,
                            elapsed=elapsed,
                            message=message,
                            waiting=why,
                            url=step.url,
                            artifact=step.artifact,
                            image=step.image,
                        )
                    )
        out.extend(
            StepView(
                environment=pipe.env,
                target=pipe.target,
                stage=svc.stage,
                service=svc.name,
                phase=step_phase(pipe.plan.action),
                state="skipped",
                elapsed=None,
                message=pipe.plan.skip_reason(svc.name),
                waiting=None,
                url=None,
            )
            for svc in pipe.plan.skipped
        )
        return out


def _waiting(pipe: StagedPipeline, step: Step, now: float) -> str:
    """Why a pending step has not started yet."""
    p = pipe.plan.parallelism
    if pipe.blocked:
        return waiting(pipe.blocked)
    if pipe.status is None and pipe.active >= len(pipe.stages):
        return WAITING
    if step.phase in IMAGE_PHASES:
        if not pipe.plan.build_ahead and step.pos > pipe.active:
            return _stage_wait(pipe, now)
        build = step.main.build if step.phase == "test" and step.main else None
        if build is not None and build.state not in DONE_OK:
            return for_its_build(_running_for(build, now), pipe.build_busy, p)
        if step.phase == "test":
            return for_slot("test", pipe.test_busy, p)
        return for_slot("build", pipe.build_busy, p)
    if step.pos > pipe.active:
        return _stage_wait(pipe, now)
    if step.build is not None and step.build.state not in DONE_OK:
        return for_its_build(_running_for(step.build, now), pipe.build_busy, p)
    if step.test is not None and step.test.state not in DONE_OK:
        return for_its_test(_running_for(step.test, now), pipe.test_busy, p)
    if not pipe.plan.build_ahead and pipe.builds_left[step.pos]:
        return for_stage_builds(pipe.builds_left[step.pos])
    return for_slot(step_phase(pipe.plan.action), pipe.main_busy, p)


def _running_for(step: Step, now: float) -> float | None:
    """How long a step has run, or None when it has not started."""
    running = step.state == RUNNING and step.started is not None
    return now - (step.started or now) if running else None


def _stage_wait(pipe: StagedPipeline, now: float) -> str:
    """Name the active stage and the longest-running step keeping it busy."""
    stage = pipe.tp.stages[pipe.active].name if pipe.active < len(pipe.stages) else "?"
    busy = [s for s in pipe.flying if s.pos == pipe.active and s.started is not None]
    mains = [s for s in busy if s.phase not in IMAGE_PHASES]
    running = sorted(mains or busy, key=lambda s: s.started or 0)
    busy_for = [(s.service, GERUND[s.phase], now - (s.started or now)) for s in running]
    return stage_waiting(stage, busy_for)
