"""The services × targets matrix of DESIGN.md §2 with services S1, S2 and targets I1, I2, and
several environments in one command, sequential and parallel."""

from __future__ import annotations

import itertools
import threading

from deploy_pipeline.backends.base import StepContext
from deploy_pipeline.errors import PermanentError
from tests.support.runner import barrier, harness


def matrix(services: str, targets: str) -> str:
    return f"""
version: 1
targets: {{i1: {{kind: simulated}}, i2: {{kind: simulated}}}}
services:
  s1: {{type: container, image: a}}
  s2: {{type: container, image: b}}
environments:
  test: {{targets: [i1, i2], strategy: {{services: {services}, targets: {targets}}}}}
"""


def test_sequential_services_sequential_targets_run_one_by_one() -> None:
    """sequential/sequential runs S1·I1, S2·I1, S1·I2, S2·I2, each ending before the next."""
    h = harness(matrix("sequential", "sequential"))
    assert h.execute().status == "succeeded"
    order = ["s1.deploy@i1", "s2.deploy@i1", "s1.deploy@i2", "s2.deploy@i2"]
    assert h.journal.started() == order
    for first, then in itertools.pairwise(order):
        assert h.journal.before(first, then)
    assert h.journal.peak["all"] == 1


def test_parallel_services_sequential_targets_run_a_target_at_a_time() -> None:
    """parallel/sequential runs {S1·I1, S2·I1} together, then {S1·I2, S2·I2} together."""
    i1, i2 = barrier(2), barrier(2)
    h = harness(
        matrix("parallel", "sequential"),
        hooks={"s1.deploy@i1": i1, "s2.deploy@i1": i1, "s1.deploy@i2": i2, "s2.deploy@i2": i2},
    )
    assert h.execute().status == "succeeded"
    for first in ("s1.deploy@i1", "s2.deploy@i1"):
        for then in ("s1.deploy@i2", "s2.deploy@i2"):
            assert h.journal.before(first, then)
    assert h.journal.peak["all"] == 2


def test_sequential_services_parallel_targets_run_each_target_in_order_side_by_side() -> None:
    """sequential/parallel runs S1 then S2 on I1 while S1 then S2 run on I2."""
    first, second = barrier(2), barrier(2)
    h = harness(matrix("sequential", "parallel"), hooks={"s1.deploy": first, "s2.deploy": second})
    assert h.execute().status == "succeeded"
    for target in ("i1", "i2"):
        assert h.journal.before(f"s1.deploy@{target}", f"s2.deploy@{target}")
        assert h.journal.peak[f"main@{target}"] == 1
    assert h.journal.peak["all"] == 2


def test_parallel_services_parallel_targets_run_all_four_at_once() -> None:
    """parallel/parallel has all four steps inside the same barrier at once."""
    all_four = barrier(4)
    h = harness(
        matrix("parallel", "parallel"), hooks={"s1.deploy": all_four, "s2.deploy": all_four}
    )
    assert h.execute().status == "succeeded"
    assert h.journal.peak["all"] == 4


def test_a_failure_on_the_first_target_keeps_the_next_sequential_target_from_starting() -> None:
    """With sequential targets, a failure on I1 leaves I2 untouched and reported cancelled."""

    def fail(ctx: StepContext) -> None:
        raise PermanentError("image pull failed")

    h = harness(matrix("parallel", "sequential"), hooks={"s1.deploy@i1": fail})
    result = h.execute()
    assert result.status == "failed"
    assert not [k for k in h.journal.started() if k.endswith("@i2")]
    assert h.statuses()["s1.deploy@i2"] == "cancelled"
    i2 = [e for e in h.events.events if e.target == "i2"]
    assert {e.message for e in i2} == {"not started: target i1 failed"}


def test_parallel_targets_are_independent_of_each_others_failure() -> None:
    """With parallel targets, I2 completes its pipeline even though I1 failed."""

    def fail(ctx: StepContext) -> None:
        raise PermanentError("quota exceeded")

    h = harness(matrix("sequential", "parallel"), hooks={"s1.deploy@i1": fail})
    assert h.execute().status == "failed"
    statuses = h.statuses()
    assert statuses["s1.deploy@i2"] == "succeeded"
    assert statuses["s2.deploy@i2"] == "succeeded"
    assert statuses["s2.deploy@i1"] == "cancelled"


ENVIRONMENTS = """
version: 1
{strategy}
targets: {{i1: {{kind: simulated}}}}
services:
  s1: {{type: container, image: a}}
environments:
  dev: {{target: i1}}
  prod: {{target: i1}}
"""


def test_environments_in_sequence_promote_dev_then_prod() -> None:
    """Two environments run one after the other by default: prod starts after dev is done."""
    h = harness(ENVIRONMENTS.format(strategy=""), ("dev", "prod"))
    result = h.execute()
    assert result.status == "succeeded"
    assert result.environments == {"dev": "succeeded", "prod": "succeeded"}
    envs = [e.environment for e in h.events.events if e.status == "started"]
    assert envs == ["dev", "prod"]


def test_a_failure_in_dev_stops_the_promotion_to_prod() -> None:
    """Sequential environments stop at the first failure: prod is never touched."""
    calls: list[str] = []

    def record(ctx: StepContext) -> None:
        calls.append(ctx.environment)
        if ctx.environment == "dev":
            raise PermanentError("tests failed in dev")

    h = harness(ENVIRONMENTS.format(strategy=""), ("dev", "prod"), hooks={"s1.deploy": record})
    result = h.execute()
    assert result.status == "failed"
    assert calls == ["dev"]
    assert result.environments["prod"] == "cancelled"
    prod = [e for e in h.events.events if e.environment == "prod"]
    assert [e.message for e in prod] == ["not started: an earlier environment failed"]


def test_environments_in_parallel_run_side_by_side() -> None:
    """`strategy: {environments: parallel}` deploys dev and prod at the same time."""
    both = barrier(2)
    inside: set[str] = set()
    lock = threading.Lock()

    def meet(ctx: StepContext) -> None:
        with lock:
            inside.add(ctx.environment)
        both(ctx)

    text = ENVIRONMENTS.format(strategy="strategy: {environments: parallel}")
    h = harness(text, ("dev", "prod"), hooks={"s1.deploy": meet})
    assert h.execute().status == "succeeded"
    assert inside == {"dev", "prod"}
