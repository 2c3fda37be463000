"""`tests.support.eventually`: the one wait of the suite returns what it waited for, and when
that never comes it fails saying what was awaited and what it last saw."""

from __future__ import annotations

import pytest

from tests.support.eventually import eventually


def test_the_value_that_satisfies_the_condition_is_returned() -> None:
    """Readings are taken until one satisfies `until`, and that reading is the answer."""
    readings = iter([{"state": "queued"}, {"state": "running"}, {"state": "done", "n": 3}])
    found = eventually(
        lambda: next(readings),
        lambda found: found["state"] == "done",
        message="the delivery settling",
        every=0,
    )
    assert found == {"state": "done", "n": 3}


def test_a_wait_that_times_out_says_what_it_waited_for_and_last_saw() -> None:
    """After the timeout the test fails naming what was awaited (a message computed only then)
    and the last value read."""
    seen = []

    def read() -> str:
        seen.append("x")
        return "running"

    with pytest.raises(pytest.fail.Exception) as failed:
        eventually(read, lambda s: s == "done", timeout=0.05, every=0.01, message=lambda: "run 7")
    assert str(failed.value) == "timed out after 0.05 s waiting for run 7; last seen: 'running'"
    assert len(seen) >= 2  # it polled, rather than giving up at the first look
