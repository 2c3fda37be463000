"""The settings every fuzzed (Hypothesis) test runs with."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings


def fuzzing(max_examples: int) -> settings:
    """Hypothesis settings for the fuzzed tests: the same cases on every run, no example
    database, and no `explain` phase (it imports libcst, which warns, and warnings are errors;
    it also traced every shrink step of a failure, which took a minute)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    )
