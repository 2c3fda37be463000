"""GitHub webhook deliveries without I/O: check a delivery's signature and read it (what it asks
of a pull request's preview is decided in previews.py). The receiver does the HTTP around these.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deploy_pipeline.errors import PayloadError, SignatureError, truncate

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


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
