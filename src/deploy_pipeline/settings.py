"""Numbers read from environment variables (DEPLOY_PIPELINE_WORKERS, _LEASE, _LOCK_TTL…), each
checked against its range: a bad one stops the start with a sentence naming it, not a traceback
or a receiver that runs on a nonsense value."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from deploy_pipeline.errors import UsageError, truncate

DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")  # ASCII only: float() also reads ٣, 1_0, inf and nan


def whole(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The variable's whole number from `low` to `high`, `default` when it is unset or empty."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    if text.isascii() and text.isdigit() and low <= int(text) <= high:
        return int(text)
    raise UsageError(f"{name} is a whole number from {low} to {high}, got {truncate(text, 40)!r}")


def seconds(
    environ: Mapping[str, str], name: str, default: float, low: float, high: float
) -> float:
    """The variable's number of seconds from `low` to `high` (a fraction allowed), `default`
    when it is unset or empty."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    if DECIMAL.fullmatch(text) and math.isfinite(value := float(text)) and low <= value <= high:
        return value
    raise UsageError(
        f"{name} is a number of seconds from {low:g} to {high:g}, got {truncate(text, 40)!r}"
    )
