"""Waiting for what another thread or process reaches: one poll with a deadline, in place of the
hand-written loops, failing with what was awaited and the last thing seen. Not for proving
parallelism: that is done with barriers and counters (`tests.support.runner`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def eventually(
    read: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    message: str | Callable[[], str],
    timeout: float = 30.0,
    every: float = 0.02,
) -> T:
    """Call `read` every `every` seconds until `until` holds for what it returned (by default,
    until that is truthy), and return it; after `timeout` seconds fail the test, saying what was
    awaited (`message`, or what it returns, for words only known then) and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value):
            return value
        if time.monotonic() > deadline:
            waited = message() if callable(message) else message
            seen = repr(value)
            seen = seen if len(seen) <= 500 else f"{seen[:500]}…"
            pytest.fail(f"timed out after {timeout:g} s waiting for {waited}; last seen: {seen}")
        time.sleep(every)
