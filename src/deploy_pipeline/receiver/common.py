"""What every route of the receiver needs: JSON answers, the Receiver behind the app, and the API's
bearer token check (DEPLOY_PIPELINE_API_TOKEN)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response

from deploy_pipeline.receiver.service import Receiver


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)


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
