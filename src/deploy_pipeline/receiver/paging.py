"""`GET /api/environments?limit=N&cursor=…`: the environments a page at a time, so a status page
open on a receiver with a thousand previews reads (and draws) only what it shows. Without either
parameter the answer is the whole list, as DESIGN.md §6 has it.

A page lists the file's environments and clones first (by name), then previews, newest pull
request first; `next` is the path of the page after it, null on the last one. A cursor names
the place after the last environment of a page, so it holds when environments come and go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote

from deploy_pipeline.errors import PageError

PAGE = 50  # environments on a page when only a cursor is given
PAGE_MAX = 200

Key = tuple[int, int, str]


def asked(params: Mapping[str, str]) -> tuple[int, Key | None] | None:
    """The page asked for: (limit, after), or None for the whole list (no paging parameter)."""
    if "limit" not in params and "cursor" not in params:
        return None
    text = params.get("limit", str(PAGE))
    if not text.isdigit() or not 1 <= int(text) <= PAGE_MAX:
        raise PageError(f"limit is a whole number from 1 to {PAGE_MAX}, got {text[:20]!r}")
    cursor = params.get("cursor")
    return int(text), None if cursor is None else _key_of(cursor)


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
    if group not in ("0", "1") or not pr.lstrip("-").isdigit() or not name:
        raise PageError(
            f"cursor {cursor[:40]!r} is not one this receiver gave: use the `next` of an answer"
        )
    return int(group), int(pr), name
