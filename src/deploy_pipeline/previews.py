"""Pull requests into previews: what a `pull_request` event asks of its preview environment.
The Action (`action: preview`) and the receiver both decide through here, so they agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploy_pipeline.errors import UsageError
from deploy_pipeline.model import Action

# opened, reopened and a push to the branch (synchronize) deploy the head; closed deletes
ACTIONS: Mapping[str, Action] = {
    "opened": "deploy",
    "reopened": "deploy",
    "synchronize": "deploy",
    "closed": "delete",
}


@dataclass(frozen=True)
class PullRequest:
    number: int
    action: str  # the event's own: opened, synchronize, closed, labeled…
    head_sha: str
    head_ref: str
    repository: str  # owner/name
    merged: bool = False

    @property
    def preview_action(self) -> Action | None:
        """deploy or delete, or None for an event that leaves the preview alone (edited…)."""
        return ACTIONS.get(self.action)


def pull_request(payload: Mapping[str, Any]) -> PullRequest:
    """The fields of a `pull_request` webhook payload a preview needs, checked."""
    try:
        pr = payload["pull_request"]
        head = pr["head"]
        return PullRequest(
            number=int(payload.get("number", pr["number"])),
            action=str(payload["action"]),
            head_sha=str(head["sha"]),
            head_ref=str(head["ref"]),
            repository=str(payload["repository"]["full_name"]),
            merged=bool(pr.get("merged")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(
            f"not a pull_request event: {type(exc).__name__} {exc} is missing or wrong; "
            "previews are made from the pull_request event (`on: pull_request` with types "
            "opened, reopened, synchronize and closed)"
        ) from exc
