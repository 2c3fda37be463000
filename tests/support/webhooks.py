"""Webhook deliveries as GitHub sends them: the recorded payloads under `fixtures/github-webhooks/`
made this repository's (another action, pull request or head commit), and signed with SECRET the
way GitHub signs them."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

from tests.support.github_standin import REPO
from tests.support.paths import WEBHOOKS

SECRET = "It's a Secret to Everybody"  # GitHub's documented test vector's


def payload(event: str, action: str | None = None, **changes: Any) -> dict[str, Any]:
    """A recorded delivery's payload, edited: another action, PR number or head commit."""
    name = {"pull_request": f"pull_request/{action or 'opened'}.payload.json"}.get(
        event, f"{event}/payload.json"
    )
    path = WEBHOOKS / name
    if not path.exists():  # e.g. reopened: the opened payload with another action
        path = WEBHOOKS / "pull_request" / "opened.payload.json"
    data: dict[str, Any] = copy.deepcopy(json.loads(path.read_text()))
    if event == "pull_request":
        data["action"] = action
        data["repository"]["full_name"] = REPO
        if "number" in changes:
            data["number"] = data["pull_request"]["number"] = changes["number"]
        if "sha" in changes:
            data["pull_request"]["head"]["sha"] = changes["sha"]
    return data


def signed(
    body: bytes, event: str, delivery: str | None = None, secret: str = SECRET
) -> dict[str, str]:
    """The headers of a delivery of `body`, signed with `secret` (X-Hub-Signature-256)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
    }


def pr_event(tmp_path: Path, action: str, number: int, sha: str) -> str:
    """A recorded pull_request payload, made ours (this repository, this PR, this head commit),
    written where an Action reads its event (GITHUB_EVENT_PATH): the file's path."""
    recorded = WEBHOOKS / "pull_request" / "opened.payload.json"
    data: dict[str, Any] = copy.deepcopy(json.loads(recorded.read_text()))
    data["action"], data["number"] = action, number
    data["pull_request"]["number"] = number
    data["pull_request"]["head"]["sha"] = sha
    data["repository"]["full_name"] = REPO
    path = tmp_path / f"event-{action}.json"
    path.write_text(json.dumps(data))
    return str(path)
