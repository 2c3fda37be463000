"""What every route of the receiver needs: JSON answers, the Receiver behind the app, and the API's
bearer token check (DEPLOY_PIPELINE_API_TOKEN)."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response

from deploy_pipeline.receiver.service import Receiver


class Json(JSONResponse):
    """Starlette's JSON answer, also for text no UTF-8 can carry: a payload's string with a lone
    surrogate (JSON's "\\ud800", which Python reads) is sent with U+FFFD in its place."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE.sub("\ufffd", text).encode("utf-8")


SURROGATE = re.compile("[\ud800-\udfff]")


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return Json(data, status_code=status, headers=headers)


def receiver_of(request: HttpRequest) -> Receiver:
    receiver: Receiver = request.app.state.receiver
    return receiver


def unauthorized(request: HttpRequest) -> Response | None:
    """A 401 answer when the API needs a token and the request does not carry it; else None."""
    token = receiver_of(request).api_token
    given = request.headers.get("authorization", "")
    if token and not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return json_response({"error": "a bearer token is needed (DEPLOY_PIPELINE_API_TOKEN)"}, 401)
    return None


def whole_number(text: str) -> int | None:
    """Decimal ASCII digits of a number the database can hold (a run id, an event's sequence
    number), else None: `²` is a digit to str.isdigit, and 10**40 overflows a 64-bit column."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None
