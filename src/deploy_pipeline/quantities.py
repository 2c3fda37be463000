"""Kubernetes quantities (`250m`, `2`, `512Mi`, `20Gi`): their syntax as the file may write them,
and their value, to compare a limit with its request and to give Docker bytes and nano-CPUs."""

from __future__ import annotations

import re
from decimal import Decimal

# The API server's grammar: a non-negative number, then a binary suffix (powers of 1024), a
# decimal one (powers of 1000) or an exponent. `K` is no suffix there (`k` is, and `Ki`).
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_SUFFIX = r"(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][-+]?\d+)?"
QUANTITY = re.compile(_NUMBER + _SUFFIX + r"\Z")
CPU = re.compile(r"\d+(\.\d+)?m?\Z")  # cores or millicores: 2, 0.5, 250m
# bytes: no fractions of a byte (`512m` is half a byte, a typo for 512Mi)
BYTES_PATTERN = r"^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|[eE]\+?\d+)?"
_FACTORS = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])},
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(["k", "M", "G", "T", "P", "E"])},
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
}


def value(text: str) -> Decimal | None:
    """The number a quantity stands for (`250m` → 0.25, `1Ki` → 1024); None when it is none."""
    match = QUANTITY.match(text)
    if match is None:
        return None
    number, suffix = Decimal(match.group(1)), match.group(2) or ""
    if suffix[:1] in {"e", "E"} and suffix not in _FACTORS:
        return number * Decimal(10) ** int(suffix[1:])
    return number * _FACTORS[suffix]


def bytes_problem(text: str) -> str | None:
    """What is wrong with a memory or storage quantity, in words; None when it is right."""
    match = QUANTITY.match(text)
    suffix = (match.group(2) or "") if match else ""
    if match is not None and suffix not in {"n", "u", "m"} and not suffix[1:].startswith("-"):
        return None
    hint, got = "", repr(text) if len(text) <= 60 else repr(text)[:57] + "...'"
    if match is not None and suffix == "m" and len(text) <= 30:
        hint = f" ({text} is a fraction of a byte: did you mean {match.group(1)}Mi?)"
    elif text[-1:] == "K" and len(text) <= 30 and QUANTITY.match(text[:-1] + "k"):
        hint = f" (K is no Kubernetes suffix: write {text[:-1]}Ki for 1024 bytes or {text[:-1]}k)"
    return (
        "expected a Kubernetes quantity of bytes like 512Mi, 1Gi or 500M (Ki, Mi, Gi, Ti: powers "
        f"of 1024; k, M, G, T: of 1000), got {got}{hint}"
    )
