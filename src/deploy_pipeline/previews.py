"""The preview policy: which pull requests get a preview, and what a `pull_request` event asks
of one (deploy, delete or leave it alone), from the pipeline file's `previews:` and the event's
pull request. The Action (`action: preview`) and the receiver both decide here, so they agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from deploy_pipeline.errors import PayloadError, UsageError, truncate
from deploy_pipeline.model import Previews
from deploy_pipeline.webhooks import Delivery

# GitHub numbers pull requests from 1; the database keeps them as 32-bit integers and more
MAX_NUMBER = 2**31 - 1
# actions that ask for the preview at the PR's head; `closed` deletes it, the rest leave it alone
DEPLOYS = frozenset({"opened", "reopened", "synchronize", "ready_for_review"})


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


@dataclass(frozen=True)
class PreviewPolicy:
    """The pipeline file's `previews:` as far as deciding goes."""

    enabled: bool  # the file has `previews:` at all
    name: str = "pr-{number}"
    label: str | None = None  # set: only pull requests carrying this label get a preview
    drafts: bool = False  # draft pull requests get previews
    forks: bool = False  # pull requests from forks get previews (they run a stranger's code)
    repository: str | None = None  # owner/name: the deliveries of any other one are ignored

    @classmethod
    def of(cls, previews: Previews | None, repository: str | None = None) -> PreviewPolicy:
        if previews is None:
            return cls(enabled=False, repository=repository)
        return cls(True, previews.name, previews.label, previews.drafts, previews.forks, repository)


@dataclass(frozen=True)
class Decision:
    """What a delivery asks of a preview, and why in words a log reader understands."""

    action: Literal["deploy", "delete", "ignore"]
    reason: str
    pull_request: PullRequest | None = None
    environment: str | None = None  # the preview's name
    sha: str | None = None  # the PR's head commit


def decide(delivery: Delivery, policy: PreviewPolicy) -> Decision:
    """Deploy, delete or leave alone the preview of the delivery's pull request. A delete is
    never held back by the policy: cleaning up is always safe. PayloadError when a
    pull_request event lacks what a preview needs."""
    if delivery.event == "ping":
        return Decision("ignore", "ping")
    if delivery.event != "pull_request":
        return Decision("ignore", f"{delivery.event} event: previews follow pull_request events")
    if not policy.enabled:
        return Decision("ignore", "no previews: in the pipeline file")
    try:
        pr = pull_request(delivery.payload)
    except UsageError as exc:
        said = repr(exc.__cause__) if exc.__cause__ is not None else str(exc)
        raise PayloadError(
            f"pull_request delivery {truncate(delivery.id, 80)!r} lacks what a preview needs: "
            f"{truncate(said, 200)}"
        ) from exc
    if policy.repository is not None and pr.repository.lower() != policy.repository.lower():
        return Decision(
            "ignore",
            f"repository {truncate(pr.repository, 100)} is not served here (this receiver "
            f"serves {policy.repository}: DEPLOY_PIPELINE_REPOSITORY)",
        )
    environment = policy.name.replace("{number}", str(pr.number))

    def decision(action: Literal["deploy", "delete", "ignore"], why: str) -> Decision:
        return Decision(action, f"pull request #{pr.number} {why}", pr, environment, pr.head_sha)

    if pr.action == "closed":
        merged = "merged" if pr.merged else "closed"
        return decision("delete", f"{merged}: its preview {environment} is deleted")
    if pr.action in ("labeled", "unlabeled"):
        if policy.label is None:
            return decision("ignore", f"{pr.action}: previews.label is not set, labels do nothing")
        if pr.label != policy.label:
            return decision(
                "ignore", f"{pr.action} {pr.label!r}: previews follow the label {policy.label!r}"
            )
        if pr.action == "unlabeled":
            return decision("delete", f"unlabeled {policy.label!r}: its preview is deleted")
    elif pr.action not in DEPLOYS:
        return decision("ignore", f"{pr.action}: leaves the preview alone")
    elif policy.label is not None and policy.label not in pr.labels:
        return decision(
            "ignore", f"{pr.action} without the label {policy.label!r}: no preview until labeled"
        )
    if pr.state == "closed":  # e.g. labeled after the close: its preview stays deleted
        return decision("ignore", f"is closed: {pr.action} does not bring its preview back")
    if pr.fork and not policy.forks:
        origin = pr.head_repository or "a deleted fork"
        return decision(
            "ignore", f"is from a fork ({origin}): no preview (previews.forks is false)"
        )
    if pr.draft and not policy.drafts:
        return decision(
            "ignore", "is a draft: waits for ready_for_review (previews.drafts is false)"
        )
    return decision("deploy", f"{pr.action}: deploys {environment} at {pr.head_sha[:12]}")


def in_sequence(decision: Decision, last: Mapping[str, Any] | None) -> Decision:
    """The decision, unless the last pull_request delivery taken for the same preview (`last`,
    its payload; None: none) says to leave the preview alone: the preview is another
    repository's, this delivery is older than that one (a replay, or one that came late), or
    that one closed the pull request and this is neither a reopen nor newer than the close.
    A delivery GitHub signed once
    can be sent again by anyone who saw it: only the pull request's own times tell."""
    pr, environment = decision.pull_request, decision.environment
    if decision.action == "ignore" or pr is None or last is None:
        return decision
    try:
        before = pull_request(last)
    except UsageError:  # what was stored was read by this function's caller before: unreachable
        return decision

    def ignore(why: str) -> Decision:
        return Decision("ignore", f"pull request #{pr.number} {why}", pr, environment, pr.head_sha)

    if not _same_repository(pr, before):
        return ignore(
            f"of {truncate(pr.repository, 100)}: {environment} is the preview of "
            f"{before.repository}'s pull request #{before.number}, and a delivery of another "
            "repository never touches it"
        )
    if pr.updated_at and before.updated_at and pr.updated_at < before.updated_at:
        return ignore(
            f"{pr.action}: this delivery is of {pr.updated_at:%Y-%m-%d %H:%M:%S}, older than "
            f"the {before.action} of {before.updated_at:%Y-%m-%d %H:%M:%S} already taken "
            "(a replayed or late delivery changes nothing)"
        )
    # after a close: a reopen, or what GitHub sent after one (a draft reopened, then ready)
    reopened = pr.updated_at and before.updated_at and pr.updated_at > before.updated_at
    if before.action == "closed" and pr.action not in ("closed", "reopened") and not reopened:
        return ignore(
            f"was closed: {pr.action} does not bring its preview back (only reopening it does)"
        )
    return decision


def _same_repository(one: PullRequest, other: PullRequest) -> bool:
    """By GitHub's id when both payloads carry it (a renamed repository keeps it), else by name."""
    if one.repository_id is not None and other.repository_id is not None:
        return one.repository_id == other.repository_id
    return one.repository.lower() == other.repository.lower()
