"""What a view shows of a run: each step's state (`StepView`), the run's result, the words for
what a step is doing (`GERUND`) and the "waiting: …" sentences that say why a step has not
started. The runner fills these in; the terminal view, the Markdown summary, GitHub's report and
the status page's cards read them, so they say a run the same way without importing the runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from deploy_pipeline.durations import brief
from deploy_pipeline.model import Phase, Status

GERUND = {
    "build": "building",
    "test": "testing",
    "deploy": "deploying",
    "restart": "restarting",
    "stop": "stopping",
    "delete": "deleting",
}


@dataclass(frozen=True, kw_only=True)
class StepView:
    """One step as a progress view shows it (built with keywords: eleven fields)."""

    environment: str
    target: str
    stage: str
    service: str
    phase: Phase
    state: str  # pending, running, or the final status
    elapsed: float | None
    message: str
    waiting: str | None
    url: str | None
    artifact: str | None = None  # the image a build made or reused, for the deploy after it
    image: str | None = None  # what a deploy runs, by digest, as its backend says


@dataclass(kw_only=True)
class RunResult:
    status: Status  # succeeded, failed or cancelled
    environments: dict[str, Status]
    steps: list[StepView]
    failures: list[str]
    duration: float


class Snapshots(Protocol):
    """A running run as a live view reads it."""

    def snapshot(self) -> list[StepView]: ...


def environment_url(urls: Iterable[tuple[str | None, bool]]) -> str | None:
    """The URL to open an environment at: the first public service's, else the first there is.
    `urls`: (a service's URL or None, whether the service is public), in the order views list
    them. The Action's output, GitHub's Deployment and the status page all link this one."""
    known = [(url, public) for url, public in urls if url]
    return next((u for u, public in known if public), None) or next((u for u, _ in known), None)


# --- why a step waits ------------------------------------------------------------------------

WAITING = "waiting"  # for nothing it can name (its pipeline is between stages)


def waiting(reason: str) -> str:
    """`waiting: target eu`: the sentence for a reason."""
    return f"{WAITING}: {reason}"


def behind_target(name: str) -> str:
    """The reason of a target's steps while an earlier target runs first."""
    return f"target {name}"


def behind_environment(name: str) -> str:
    """The reason of an environment's steps while an earlier environment runs first."""
    return f"environment {name}"


def for_slot(action: str, busy: int | None = None, size: int | None = None) -> str:
    """`waiting: a deploy slot (4/4 busy)`, or without the count when it is not known."""
    count = f" ({busy}/{size} busy)" if busy is not None else ""
    return waiting(f"a {action} slot{count}")


def for_its_build(running_for: float | None, busy: int, size: int) -> str:
    """A deploy waiting for its own build: running for so long, or itself waiting for a slot."""
    if running_for is not None:
        return waiting(f"its build ({brief(running_for)})")
    return waiting(f"its build (a build slot, {busy}/{size} busy)")


def for_its_test(running_for: float | None, busy: int, size: int) -> str:
    """A deploy waiting for its image's test: running for so long, or waiting for a test slot."""
    if running_for is not None:
        return waiting(f"its test ({brief(running_for)})")
    return waiting(f"its test (a test slot, {busy}/{size} busy)")


def for_stage_builds(left: int) -> str:
    return waiting(f"the stage's builds ({left} left)")


def stage_waiting(stage: str, busy: Sequence[tuple[str, str, float]]) -> str:
    """Why a step waits for its stage, naming the step busy longest: `waiting: stage backend
    (api deploying, 41s; +1 more)`. `busy`: (service, what it is doing, for how long), longest
    first. The live view and the status page say it the same way."""
    if not busy:
        return waiting(f"stage {stage}")
    service, doing, elapsed = busy[0]
    more = f"; +{len(busy) - 1} more" if len(busy) > 1 else ""
    return waiting(f"stage {stage} ({service} {doing}, {brief(elapsed)}{more})")
