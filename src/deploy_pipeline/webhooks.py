"""GitHub webhook deliveries without I/O: check a delivery's signature, read it, and decide what
it asks of a pull request's preview. The receiver does the HTTP and the work around these.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from deploy_pipeline.errors import PayloadError, SignatureError, UsageError, truncate
from deploy_pipeline.model import Previews
from deploy_pipeline.previews import PullRequest, pull_request

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
# actions that ask for the preview at the PR's head; `closed` deletes it, the rest leave it alone
DEPLOYS = frozenset({"opened", "reopened", "synchronize", "ready_for_review"})


def verify(body: bytes, signature_header: str | None, secret: str) -> None:
    """Raise SignatureError unless the header is `sha256=` and the hex HMAC-SHA256 of the raw
    body keyed with the secret, compared in constant time."""
    if not secret:
        # an empty key would let anyone sign: refuse every delivery rather than trust them all
        raise SignatureError(
            "no webhook secret is configured: set DEPLOY_PIPELINE_WEBHOOK_SECRET to the secret "
            "of the GitHub webhook"
        )
    digest = signature_of(signature_header)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(digest.lower().encode(), expected.encode()):
        raise SignatureError("payload's signature does not align with the secret")


def signature_of(signature_header: str | None) -> str:
    """The hex digest an X-Hub-Signature-256 header carries; SignatureError when there is none
    or it is malformed. Needs no body: the receiver asks before it reads one."""
    if signature_header is None:
        raise SignatureError(
            "no X-Hub-Signature-256 header: give the GitHub webhook a secret so it signs "
            "its deliveries"
        )
    match = SIGNATURE.fullmatch(signature_header.strip())
    if match is None:
        raise SignatureError(
            f"X-Hub-Signature-256 is {truncate(signature_header, 80)!r}, "
            "not sha256= and 64 hex digits"
        )
    return match[1]


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery, signature checked: GitHub's GUID for it, the event, the payload."""

    id: str  # X-GitHub-Delivery: a redelivery keeps it, so it tells repeats apart
    event: str  # X-GitHub-Event: pull_request, ping, push…
    payload: Mapping[str, Any]
    # the body as received: the queue can store it rather than serialise the payload again
    # (0.08 ms for a 25 KB pull_request event, more than parsing it took)
    body: bytes = field(default=b"", repr=False, compare=False)

    @property
    def text(self) -> str | None:
        """The body as JSON text that parses to `payload`; None without a body, or one that is
        not UTF-8 (GitHub sends UTF-8; json.loads also reads UTF-16 and UTF-32)."""
        try:
            return self.body.decode("utf-8-sig") if self.body else None
        except UnicodeDecodeError:
            return None

    @classmethod
    def from_http(cls, headers: Mapping[str, str], body: bytes, secret: str) -> Delivery:
        """The delivery in a request's headers (any case) and raw body; SignatureError before
        anything is parsed, then PayloadError for a body or headers GitHub would not send."""
        lowered = {name.lower(): value for name, value in headers.items()}
        if len(body) > MAX_BODY:
            raise PayloadError(f"the body is {len(body)} bytes, over the {MAX_BODY} GitHub sends")
        verify(body, lowered.get("x-hub-signature-256"), secret)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise PayloadError(
                f"the body is not JSON ({truncate(str(exc), 200)}): set the GitHub webhook's "
                "content type to application/json"
            ) from exc
        if not isinstance(payload, dict):
            raise PayloadError(
                f"the body is a JSON {type(payload).__name__}, not the object of a GitHub event"
            )
        found = {}
        for header in ("X-GitHub-Event", "X-GitHub-Delivery"):
            value = lowered.get(header.lower(), "").strip()
            if not value:
                raise PayloadError(f"no {header} header: GitHub sends one with every delivery")
            found[header] = value
        return cls(found["X-GitHub-Delivery"], found["X-GitHub-Event"], payload, body)


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
