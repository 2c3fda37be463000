"""`GET /api/environments?limit=N&cursor=…`: the environments a page at a time, so a status page
open on a receiver with a thousand previews reads (and draws) only what it shows. Without either
parameter the answer is the whole list, as DESIGN.md §6 has it.

A page lists the file's environments and clones first (by name), then previews, newest pull
request first; `next` is the path of the page after it, null on the last one. A cursor names
the place after the last environment of a page, so it holds when environments come and go.
`GET /api/environments/{name}/releases?limit=N` reads its `limit` here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote

from deploy_pipeline.errors import PageError

PAGE = 50  # environments on a page when only a cursor is given
PAGE_MAX = 200
MOST = 2**63 - 1  # the largest number a database column holds: a limit past it means all

Key = tuple[int, int, str]


def asked(params: Mapping[str, str]) -> tuple[int, Key | None] | None:
    """The page asked for: (limit, after), or None for the whole list (no paging parameter)."""
    if "limit" not in params and "cursor" not in params:
        return None
    text = params.get("limit", str(PAGE))
    number = _whole(text)
    if number is None or not 1 <= number <= PAGE_MAX:
        raise PageError(f"limit is a whole number from 1 to {PAGE_MAX}, got {text[:20]!r}")
    cursor = params.get("cursor")
    return number, None if cursor is None else _key_of(cursor)


def limit_of(params: Mapping[str, str], default: int) -> int:
    """A list's `limit`: a whole number from 1 up (one past what a database holds reads as
    that most), or `default` when there is none."""
    text = params.get("limit")
    if text is None:
        return default
    number = _whole(text)
    if number is None or number < 1:
        raise PageError(f"limit is a whole number from 1 up, got {text[:20]!r}")
    return number


def _whole(text: str) -> int | None:
    """Decimal ASCII digits as a number up to MOST, else None: `²` is a digit to str.isdigit
    but not to int(), and int() refuses a string of over 4,300 digits."""
    if not (text.isascii() and text.isdigit()):
        return None
    return MOST if len(text) > 19 else min(int(text), MOST)


def page(
    listing: Sequence[Mapping[str, object]], limit: int, after: Key | None
) -> tuple[list[Mapping[str, object]], str | None]:
    """The environments of the page after `after`, and the path of the next page (or None)."""
    ordered = sorted(listing, key=_key)
    if after is not None:
        ordered = [e for e in ordered if _key(e) > after]
    shown = ordered[:limit]
    if len(ordered) <= limit:
        return shown, None
    group, pr, name = _key(shown[-1])
    return shown, f"/api/environments?limit={limit}&cursor={quote(f'{group}.{pr}.{name}')}"


def _key(environment: Mapping[str, object]) -> Key:
    pr = environment.get("pull_request")
    number = pr if isinstance(pr, int) else None
    preview = 0 if number is None else 1
    return preview, -(number or 0), str(environment.get("name"))


def _key_of(cursor: str) -> Key:
    group, _, rest = cursor.partition(".")
    pr, _, name = rest.partition(".")
    digits = pr.removeprefix("-")
    number = _whole(digits) if len(digits) <= 19 else None  # no pull request number is longer
    if group not in ("0", "1") or number is None or not name:
        raise PageError(
            f"cursor {cursor[:40]!r} is not one this receiver gave: use the `next` of an answer"
        )
    return int(group), -number if pr.startswith("-") else number, name
