"""The receiver's HTTP side (DESIGN.md §6): webhook deliveries are verified, stored and
acknowledged in milliseconds; the JSON API, health and metrics read the store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

from deploy_pipeline.errors import (
    ApiInputError,
    Conflict,
    DeployPipelineError,
    NotFound,
    PageError,
    PayloadError,
    SignatureError,
    StoreError,
    truncate,
)
from deploy_pipeline.model import ACTIONS
from deploy_pipeline.previews import decide
from deploy_pipeline.receiver import environments, openapi, paging, views
from deploy_pipeline.receiver.common import (
    json_response,
    receiver_of,
    unauthorized,
    whole_number,
)
from deploy_pipeline.receiver.service import Receiver
from deploy_pipeline.webhooks import (
    MAX_BODY,
    Delivery,
    signature_of,
)

# the event label of the deliveries' metric: the events handled, or `other` for any else of a
# signed delivery; one that is not verified (or not read) is `unverified`, whatever it claims
EVENTS = frozenset({"pull_request", "ping"})
UNVERIFIED = frozenset({401, 408, 413, 503})


@dataclass
class Uploads:
    """Webhook bodies being read: each within `seconds`, at most `limit` at once (each may hold
    25 MiB), beyond which a delivery is answered 503 at once. Counted in the event loop."""

    limit: int = 8
    seconds: float = 10.0
    reading: int = 0


async def _webhook(request: HttpRequest) -> Response:
    started = time.perf_counter()
    receiver = receiver_of(request)
    response = await _answer_delivery(request, receiver, request.app.state.uploads)
    status = response.status_code
    outcome = {202: "queued", 200: "ignored", 503: "busy"}.get(status, "rejected")
    if status == 202 and b'"duplicate":true' in bytes(response.body):
        outcome = "duplicate"
    event = request.headers.get("x-github-event", "")
    label = "unverified" if status in UNVERIFIED else event if event in EVENTS else "other"
    receiver.metrics.deliveries.labels(label, outcome).inc()
    receiver.metrics.ack.observe(time.perf_counter() - started)
    return response


async def _answer_delivery(request: HttpRequest, receiver: Receiver, uploads: Uploads) -> Response:
    """DESIGN.md §6: size, then signature, then JSON; stored before the 202. A missing or
    malformed signature is refused before the body is read."""
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > MAX_BODY:
        return json_response({"error": "the payload is over 25 MiB"}, 413)
    try:
        signature_of(request.headers.get("x-hub-signature-256"))
    except SignatureError as exc:
        return json_response({"error": str(exc)}, 401)
    if uploads.reading >= uploads.limit:
        return json_response(
            {"error": f"{uploads.limit} deliveries are being read already: send it again soon"},
            503,
            headers={"Retry-After": "5"},
        )
    uploads.reading += 1
    receiver.metrics.uploads.inc()
    try:
        body = await _read_body(request, uploads.seconds)
    finally:
        uploads.reading -= 1
        receiver.metrics.uploads.dec()
    if isinstance(body, Response):
        return body
    try:
        delivery = Delivery.from_http(dict(request.headers), body, receiver.secret)
        decision = decide(delivery, receiver.policy)
    except SignatureError as exc:
        return json_response({"error": str(exc)}, 401)
    except PayloadError as exc:
        return json_response({"error": str(exc)}, 400)
    if decision.action == "ignore":
        return json_response({"ignored": decision.reason})
    loop = asyncio.get_running_loop()
    taken = await loop.run_in_executor(receiver.writer, receiver.accept, delivery, decision)
    if taken is not None and taken.action == "ignore":
        return json_response({"ignored": taken.reason})
    return json_response(
        {
            "queued": delivery.id,
            "action": decision.action,
            "environment": decision.environment,
            "duplicate": taken is None,
        },
        202,
    )


async def _read_body(request: HttpRequest, seconds: float) -> bytes | Response:
    """The body, or the answer when it is over 25 MiB, did not arrive within `seconds`, or its
    sender went away."""
    body = bytearray()
    with anyio.move_on_after(seconds):
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    return json_response({"error": "the payload is over 25 MiB"}, 413)
        except ClientDisconnect:
            return json_response({"error": "the sender went away before its body arrived"}, 408)
        return bytes(body)
    return json_response(
        {"error": f"the body did not arrive within {seconds:g} s: GitHub sends it at once"}, 408
    )


async def _environments(request: HttpRequest) -> Response:
    if refused := unauthorized(request):
        return refused
    try:
        wanted = paging.asked(request.query_params)
    except PageError as exc:
        return json_response({"error": str(exc)}, 400)
    listing = await run_in_threadpool(environments.listing, receiver_of(request))
    if wanted is None:
        return json_response({"environments": listing})
    shown, after = paging.page(listing, *wanted)
    return json_response({"environments": shown, "next": after, "total": len(listing)})


async def _releases(request: HttpRequest) -> Response:
    if refused := unauthorized(request):
        return refused
    try:
        limit = paging.limit_of(request.query_params, environments.RELEASES)
    except PageError as exc:
        return json_response({"error": str(exc)}, 400)
    name = request.path_params["name"]
    try:
        found = await run_in_threadpool(environments.releases, receiver_of(request), name, limit)
    except NotFound as exc:
        return json_response({"error": str(exc)}, 404)
    return json_response(found)


async def _run(request: HttpRequest) -> Response:
    if refused := unauthorized(request):
        return refused
    store = receiver_of(request).store
    given = request.path_params["id"]
    run_id = whole_number(given)
    if run_id is None:
        return json_response({"error": f"no run {truncate(given, 40)}: a run id is a number"}, 404)
    found = await run_in_threadpool(store.run, run_id)
    if found is None:
        return json_response({"error": f"no run {run_id}"}, 404)
    return json_response({**found, "events": await run_in_threadpool(store.events, run_id)})


async def _delivery(request: HttpRequest) -> Response:
    if refused := unauthorized(request):
        return refused
    found = await run_in_threadpool(receiver_of(request).queue.delivery, request.path_params["id"])
    return (
        json_response(found)
        if found is not None
        else json_response({"error": "no such delivery"}, 404)
    )


def _write_refused(request: HttpRequest) -> Response | None:
    """The write API needs a token: without one, anyone who reaches the port could delete."""
    if receiver_of(request).api_token is None:
        return json_response(
            {
                "error": "the write API is off: set DEPLOY_PIPELINE_API_TOKEN on the receiver "
                "and send it as 'Authorization: Bearer <token>'"
            },
            403,
        )
    return unauthorized(request)


async def _body(request: HttpRequest) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiInputError(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiInputError('the body is a JSON object, e.g. {"services": ["api"]}')
    return data


def _api_error(exc: DeployPipelineError) -> Response:
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
    return json_response({"error": str(exc)}, status)


async def _clone(request: HttpRequest) -> Response:
    if refused := _write_refused(request):
        return refused
    try:
        body = await _body(request)
    except ApiInputError as exc:
        return json_response({"error": str(exc)}, 400)
    new = body.get("name")
    if not isinstance(new, str) or not new:
        return json_response({"error": 'name the new environment: {"name": "staging-2"}'}, 400)
    try:
        made = await run_in_threadpool(
            environments.clone, receiver_of(request), request.path_params["name"], new
        )
    except DeployPipelineError as exc:
        return _api_error(exc)
    return json_response({"environment": made}, 201)


async def _order(request: HttpRequest) -> Response:
    if refused := _write_refused(request):
        return refused
    asked = request.path_params["action"]
    action = next((a for a in ACTIONS if a == asked), None)
    if action is None:
        return json_response(
            {"error": f"no action '{asked}': use one of {', '.join(ACTIONS)}"}, 404
        )
    try:
        body = await _body(request)
    except ApiInputError as exc:
        return json_response({"error": str(exc)}, 400)
    services = body.get("services", [])
    if not isinstance(services, list) or not all(isinstance(n, str) for n in services):
        return json_response({"error": 'services is a list of names: {"services": ["api"]}'}, 400)
    name = request.path_params["name"]
    receiver = receiver_of(request)
    try:
        queued = await run_in_threadpool(environments.order, receiver, name, action, services)
    except DeployPipelineError as exc:
        return _api_error(exc)
    return json_response(
        {
            "queued": queued,
            "environment": name,
            "action": action,
            "services": services,
            "delivery": f"/api/deliveries/{queued}",
        },
        202,
    )


async def _openapi(request: HttpRequest) -> Response:
    return json_response(openapi.DESCRIPTION)


async def _healthz(request: HttpRequest) -> Response:
    return json_response({"status": "ok"})


async def _readyz(request: HttpRequest) -> Response:
    if dead := receiver_of(request).dead_workers():
        error = f"{', '.join(dead)} stopped: restart the receiver"
        return json_response({"status": "workers stopped", "error": error}, 503)
    try:
        depth = await run_in_threadpool(receiver_of(request).queue.depth)
    except StoreError as exc:
        return json_response({"status": "store unreachable", "error": str(exc)}, 503)
    return json_response({"status": "ready", "queued": depth})


async def _metrics(request: HttpRequest) -> Response:
    registry = receiver_of(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def create_app(receiver: Receiver, uploads: Uploads | None = None) -> Starlette:
    """The ASGI app of DESIGN.md §6, over a Receiver whose workers it starts and stops."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        receiver.start()
        try:
            yield
        finally:
            await run_in_threadpool(receiver.close)

    routes = [
        Route("/webhooks/github", _webhook, methods=["POST"]),
        Route("/healthz", _healthz),
        Route("/readyz", _readyz),
        Route("/metrics", _metrics),
        Route("/api/environments", _environments),
        Route("/api/environments/{name}/releases", _releases),
        Route("/api/environments/{name}/clone", _clone, methods=["POST"]),
        Route("/api/environments/{name}/{action}", _order, methods=["POST"]),
        Route("/api/openapi.json", _openapi),
        Route("/api/runs/{id}", _run),
        Route("/api/deliveries/{id}", _delivery),
        *views.ROUTES,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.receiver = receiver
    app.state.uploads = uploads or Uploads()
    return app
