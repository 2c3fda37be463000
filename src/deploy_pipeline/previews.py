"""A `pull_request` event's pull request, as far as its preview needs it. The Action
(`action: preview`) and the receiver both read it through here and decide with webhooks.decide,
so they agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploy_pipeline.errors import UsageError


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
        return PullRequest(
            number=int(payload.get("number", pr["number"])),
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
