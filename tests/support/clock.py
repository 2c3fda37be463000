"""A clock the test moves by hand, for code that takes its clock as an argument."""

from __future__ import annotations


class Clock:
    """A clock the test moves by hand (`clock.now += 25`); with `step`, each reading is that much
    later than the one before (deliveries received one after the other)."""

    def __init__(self, now: float = 1000.0, step: float = 0.0) -> None:
        self.now, self.step = now, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now
