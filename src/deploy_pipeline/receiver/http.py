"""The receiver's HTTP side (DESIGN.md §6): webhook deliveries are verified, stored and
acknowledged in milliseconds; the JSON API, health and metrics read the store."""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy_pipeline.errors import StoreError
from deploy_pipeline.receiver.service import Receiver
from deploy_pipeline.webhooks import (
    MAX_BODY,
    Delivery,
    PayloadError,
    SignatureError,
    decide,
)


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _receiver(request: HttpRequest) -> Receiver:
    receiver: Receiver = request.app.state.receiver
    return receiver


async def _webhook(request: HttpRequest) -> Response:
    started = time.perf_counter()
    receiver = _receiver(request)
    response = await _answer_delivery(request, receiver)
    outcome = {202: "queued", 200: "ignored"}.get(response.status_code, "rejected")
    if response.status_code == 202 and b'"duplicate":true' in bytes(response.body):
        outcome = "duplicate"
    event = request.headers.get("x-github-event", "") or "-"
    receiver.metrics.deliveries.labels(event, outcome).inc()
    receiver.metrics.ack.observe(time.perf_counter() - started)
    return response


async def _answer_delivery(request: HttpRequest, receiver: Receiver) -> Response:
    """DESIGN.md §6: size, then signature, then JSON; stored before the 202."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return _json({"error": "the payload is over 25 MiB"}, 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return _json({"error": "the payload is over 25 MiB"}, 413)
    try:
        delivery = Delivery.from_http(dict(request.headers), bytes(body), receiver.secret)
        decision = decide(delivery, receiver.policy)
    except SignatureError as exc:
        return _json({"error": str(exc)}, 401)
    except PayloadError as exc:
        return _json({"error": str(exc)}, 400)
    if decision.action == "ignore":
        return _json({"ignored": decision.reason})
    new = await run_in_threadpool(receiver.accept, delivery, decision)
    return _json(
        {
            "queued": delivery.id,
            "action": decision.action,
            "environment": decision.environment,
            "duplicate": not new,
        },
        202,
    )


def _unauthorized(request: HttpRequest) -> Response | None:
    token = _receiver(request).api_token
    given = request.headers.get("authorization", "")
    if token and not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return _json({"error": "a bearer token is needed (DEPLOY_PIPELINE_API_TOKEN)"}, 401)
    return None


async def _environments(request: HttpRequest) -> Response:
    if refused := _unauthorized(request):
        return refused
    listing = await run_in_threadpool(_receiver(request).environments)
    return _json({"environments": listing})


async def _run(request: HttpRequest) -> Response:
    if refused := _unauthorized(request):
        return refused
    store = _receiver(request).store
    try:
        run_id = int(request.path_params["id"])
    except ValueError:
        return _json({"error": "a run id is a number"}, 404)
    found = await run_in_threadpool(store.run, run_id)
    if found is None:
        return _json({"error": f"no run {run_id}"}, 404)
    return _json({**found, "events": await run_in_threadpool(store.events, run_id)})


async def _delivery(request: HttpRequest) -> Response:
    if refused := _unauthorized(request):
        return refused
    found = await run_in_threadpool(_receiver(request).queue.delivery, request.path_params["id"])
    return _json(found) if found is not None else _json({"error": "no such delivery"}, 404)


async def _healthz(request: HttpRequest) -> Response:
    return _json({"status": "ok"})


async def _readyz(request: HttpRequest) -> Response:
    try:
        depth = await run_in_threadpool(_receiver(request).queue.depth)
    except StoreError as exc:
        return _json({"status": "store unreachable", "error": str(exc)}, 503)
    return _json({"status": "ready", "queued": depth})


async def _metrics(request: HttpRequest) -> Response:
    registry = _receiver(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def create_app(receiver: Receiver) -> Starlette:
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
        Route("/api/runs/{id}", _run),
        Route("/api/deliveries/{id}", _delivery),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.receiver = receiver
    return app
