"""What people see and call: the status page (`GET /` and its `/static/` files), one environment
drawn as stages and service cards with its current and latest releases
(`GET /api/environments/{name}`), and a run's events as a live Server-Sent Events stream
(`GET /api/runs/{id}/events`)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from deploy_pipeline.errors import truncate
from deploy_pipeline.model import Environment, Release
from deploy_pipeline.receiver.cards import RunEvents, StageColumn, card_urls, stage_columns
from deploy_pipeline.receiver.common import (
    json_response,
    receiver_of,
    unauthorized,
    whole_number,
)
from deploy_pipeline.receiver.service import Receiver
from deploy_pipeline.releases import iso
from deploy_pipeline.steps import environment_url
from deploy_pipeline.store.queue import Queue, repository_of
from deploy_pipeline.store.state import Store
from deploy_pipeline.workspace import Workspace

STATIC = Path(__file__).parent / "static"
POLL = 0.25  # seconds between looks at the store for a run's new events (written every ≤0.5 s)
HEARTBEAT = 15.0  # seconds of quiet before a comment line keeps proxies from closing a stream
RUNS_BACK = 10  # earlier runs read for services the latest runs did not touch
RECENT = 5  # releases the page lists under an environment's current one
# The page runs only its own script and talks only to this receiver.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


# --- the page ------------------------------------------------------------------------------


async def _page(request: HttpRequest) -> Response:
    """The page holds no data: it asks the API, with the token it was given, for everything."""
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


# --- one environment -------------------------------------------------------------------------


async def _environment(request: HttpRequest) -> Response:
    if refused := unauthorized(request):
        return refused
    name = request.path_params["name"]
    found = await run_in_threadpool(environment_view, receiver_of(request), name)
    if found is None:
        return json_response(
            {"error": f"no environment named '{name}' (GET /api/environments lists them)"}, 404
        )
    return json_response(found)


def environment_view(receiver: Receiver, name: str) -> dict[str, object] | None:
    """An environment as `GET /api/environments/{name}` shows it; None when there is none."""
    config = receiver.sources.config_of(name)
    trusted = receiver.sources.trusted_for(config)
    with Workspace(config, write=False, state=receiver.state, trusted=trusted) as workspace:
        found = workspace.listed(name)  # not the whole listing: there may be a thousand
        if found is None:
            return None
        listed, environment = found
        pipeline = workspace.pipeline
    store = receiver.store
    last_run = listed["last_run"]
    runs: list[RunEvents] = []
    latest: dict[str, object] | None = None
    older = store.run_ids(name, last_run, RUNS_BACK) if isinstance(last_run, int) else []
    columns = stage_columns(pipeline, environment, runs)
    for run_id in older:  # most often the newest run speaks for every service
        if runs and not _unknown(columns):
            break
        row = store.run(run_id)
        if row is not None:
            latest = latest or row
            runs.append(_run_events(store, row))
            columns = stage_columns(pipeline, environment, runs)
    return {
        **listed,
        **_delivery(receiver.queue, name, environment.pull_request),
        "url": environment_url(card_urls(pipeline, columns)),
        "run": None
        if latest is None
        else {k: latest[k] for k in ("id", "action", "status", "started_at", "finished_at")},
        "stages": [column.to_json() for column in columns],
        "releases": release_view(store, environment),
    }


def release_view(store: Store, environment: Environment) -> dict[str, object]:
    """What the page shows of an environment's releases: the current one on each of its targets
    (the newest first) and the last RECENT, each without its settings."""
    recent = store.releases(environment.name, limit=RECENT)
    current: list[Release] = []
    for target in environment.targets:
        found = next((r for r in recent if r.target == target), None)
        found = found or store.latest_release(environment.name, target)
        if found is not None:
            current.append(found)
    current.sort(key=lambda r: r.id, reverse=True)
    return {"current": [_brief(r) for r in current], "recent": [_brief(r) for r in recent]}


def _brief(release: Release) -> dict[str, object]:
    return {
        "id": release.id,
        "action": release.action,
        "source": release.source,
        "rolled_back_to": release.rolled_back_to,
        "finished": iso(release.finished),
        "commit": release.commit,
        "target": release.target,
        "images": {name: str(s.get("image") or "") for name, s in release.services.items()},
    }


def _unknown(columns: Sequence[StageColumn]) -> bool:
    """Some service of the environment has no card yet: an older run may have one."""
    return any(
        card.main.status == "not deployed" and card.main.run is None
        for column in columns
        for card in column.services
    )


def _run_events(store: Store, run: dict[str, object]) -> RunEvents:
    started, services = run["started_at"], run["services"]
    return RunEvents(
        id=int(str(run["id"])),
        action=str(run["action"]),
        status=str(run["status"]),
        events=store.events(int(str(run["id"]))),
        services=tuple(str(s) for s in services) if isinstance(services, list) else (),
        elapsed=time.time() - started if isinstance(started, int | float) else 0.0,
    )


def _delivery(queue: Queue, environment: str, pull_request: int | None) -> dict[str, object]:
    """The commit, and for a preview its pull request, from the newest pull_request delivery
    that ran (or else will run) for the environment."""
    sha, payload = queue.latest_pull_request(environment)
    repo = _field(payload, "repository")
    pr = _field(payload, "pull_request")
    repository, home = repository_of(payload), repo.get("html_url")
    url = None
    if pull_request is not None and repository:
        parts = urlsplit(home) if isinstance(home, str) else None
        host = (
            f"{parts.scheme}://{parts.netloc}" if parts and parts.netloc else "https://github.com"
        )
        url = f"{host}/{repository}/pull/{pull_request}"
    preview = pull_request is not None
    title, branch = pr.get("title"), _field(pr, "head").get("ref")
    return {
        "sha": sha,
        "repository": repository,
        "pull_request_url": url,
        "pull_request_title": title if preview and isinstance(title, str) else None,
        "branch": branch if preview and isinstance(branch, str) else None,
    }


def _field(data: object, key: str) -> dict[str, object]:
    """A payload's object under `key`, or an empty one (payloads are GitHub's, not ours)."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


# --- a run's events, live -------------------------------------------------------------------


async def _run_event_stream(request: HttpRequest) -> Response:
    if refused := unauthorized(request):
        return refused
    receiver = receiver_of(request)
    given = request.path_params["id"]
    run_id = whole_number(given)
    if run_id is None:
        return json_response({"error": f"no run {truncate(given, 40)}: a run id is a number"}, 404)
    if await run_in_threadpool(receiver.store.run, run_id) is None:
        return json_response({"error": f"no run {run_id}"}, 404)
    # a Last-Event-ID that is not one of ours is ignored: the stream starts from the beginning
    after = whole_number(request.headers.get("last-event-id", "").strip())
    return StreamingResponse(
        follow(receiver, run_id, -1 if after is None else after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def follow(receiver: Receiver, run_id: int, after: int = -1) -> AsyncIterator[str]:
    """The run's stored events after `after` (a Last-Event-ID), then its new ones as they are
    written, then `end` with its status. Each look at the store is one short call in a thread:
    a client that goes away cancels the stream between two of them, and nothing is left behind.
    A stopping receiver ends its streams without `end` (clients come back with Last-Event-ID)."""
    streams = receiver.metrics.event_streams
    streams.inc()
    try:
        yield "retry: 2000\n\n"
        quiet = 0.0
        while not receiver.stopping.is_set():
            status, rows = await run_in_threadpool(_poll, receiver.store, run_id, after)
            for seq, body in rows:
                yield f"id: {seq}\nevent: run-event\ndata: {body}\n\n"
                after = seq
            if status != "running":
                yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
                return
            quiet = 0.0 if rows else quiet + POLL
            if quiet >= HEARTBEAT:
                yield ": running\n\n"
                quiet = 0.0
            await anyio.sleep(POLL)
    finally:
        streams.dec()


def _poll(store: Store, run_id: int, after: int) -> tuple[str, list[tuple[int, str]]]:
    """The run's status, then its events after `after`: read in that order, a finished run's
    events are all there (the recorder writes the last ones before the run is marked)."""
    run = store.run(run_id)
    status = str(run["status"]) if run is not None else "gone"
    return status, store.events_after(run_id, after)


ROUTES: list[BaseRoute] = [
    Route("/", _page),
    Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    Route("/api/environments/{name}", _environment),
    Route("/api/runs/{id}/events", _run_event_stream),
]
