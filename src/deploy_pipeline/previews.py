"""A `pull_request` event's pull request, as far as its preview needs it. The Action
(`action: preview`) and the receiver both read it through here and decide with webhooks.decide,
so they agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deploy_pipeline.errors import UsageError, truncate

# GitHub numbers pull requests from 1; the database keeps them as 32-bit integers and more
MAX_NUMBER = 2**31 - 1


@dataclass(frozen=True)
class PullRequest:
    number: int
    action: str  # the event's own: opened, synchronize, closed, labeled…
    head_sha: str
    head_ref: str
    repository: str  # owner/name
    merged: bool = False
    draft: bool = False
    head_repository: str | None = None  # owner/name of the head branch's repo; None: fork deleted
    base_repository: str | None = None  # owner/name the PR merges into
    labels: frozenset[str] = frozenset()  # the names of the labels the PR carries
    label: str | None = None  # labeled / unlabeled: the label added or removed
    state: str = "open"  # the pull request's own: open or closed
    updated_at: datetime | None = None  # when the pull request last changed, as GitHub says
    repository_id: int | None = None  # GitHub's id of the repository: it survives a rename

    @property
    def fork(self) -> bool:
        """The head branch lives in another repository (or in a fork since deleted)."""
        return self.head_repository != self.base_repository


def pull_request(payload: Mapping[str, Any]) -> PullRequest:
    """The fields of a `pull_request` webhook payload a preview needs, checked."""
    try:
        pr = payload["pull_request"]
        head = pr["head"]
        repository = str(payload["repository"]["full_name"])
        base = pr.get("base") or {}
        label = payload.get("label")
        number = _number(payload.get("number", pr["number"]), pr.get("number"))
        return PullRequest(
            number=number,
            action=str(payload["action"]),
            head_sha=str(head["sha"]),
            head_ref=str(head["ref"]),
            repository=repository,
            merged=bool(pr.get("merged")),
            draft=bool(pr.get("draft")),
            head_repository=_full_name(head.get("repo")),
            # the base repository is the event's own; older or trimmed payloads may omit it
            base_repository=_full_name(base.get("repo")) or repository,
            labels=frozenset(str(lb["name"]) for lb in pr.get("labels") or ()),
            label=str(label["name"]) if label is not None else None,
            state=str(pr.get("state") or "open"),
            updated_at=_time(pr.get("updated_at")),
            repository_id=_id(payload["repository"].get("id")),
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise UsageError(
            f"not a pull_request event: {type(exc).__name__} {exc} is missing or wrong; "
            "previews are made from the pull_request event (`on: pull_request` with types "
            "opened, reopened, synchronize and closed)"
        ) from exc


def _full_name(repo: Any) -> str | None:
    """owner/name of a payload's repository object; None for a null one (a deleted fork)."""
    return None if repo is None else str(repo["full_name"])


def _number(number: Any, also: Any) -> int:
    """The pull request's number: a JSON integer from 1, not a float, string or boolean that
    would name another pull request's preview (2.7 is not #2)."""
    if type(number) is not int or not 1 <= number <= MAX_NUMBER:
        raise UsageError(
            f"the pull request number is {truncate(repr(number), 60)}: GitHub sends a whole "
            f"number from 1 to {MAX_NUMBER}"
        )
    if also is not None and also != number:
        raise UsageError(
            f"the pull request number is {number} but pull_request.number is "
            f"{truncate(repr(also), 60)}: GitHub sends the same number in both"
        )
    return number


def _time(value: Any) -> datetime | None:
    """An ISO 8601 time of the payload (`2019-05-15T15:20:33Z`); None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _id(value: Any) -> int | None:
    return value if type(value) is int else None
