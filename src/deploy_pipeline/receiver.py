"""The webhook receiver (`deploy-pipeline serve`): a preview environment for every pull request,
on the same stage runner as the CLI and the Action, reported to GitHub the same way.

The HTTP side only checks and stores: a delivery is verified, written to the durable queue and
acknowledged in milliseconds. Worker threads take deliveries from the queue and run them; runs
of one preview never overlap, and a newer push stops the run in flight at its next safe point.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy_pipeline.config import load_config
from deploy_pipeline.errors import DeployPipelineError, StoreError, UsageError
from deploy_pipeline.execution import Execution, Request, Workspace
from deploy_pipeline.github import GitHubReporter, GitHubSettings
from deploy_pipeline.model import Action
from deploy_pipeline.queue import Job, Queue
from deploy_pipeline.runner import Cancel
from deploy_pipeline.store import Store, state_path
from deploy_pipeline.webhooks import (
    MAX_BODY,
    Decision,
    Delivery,
    PayloadError,
    PreviewPolicy,
    SignatureError,
    decide,
)

log = logging.getLogger("deploy_pipeline.receiver")


@dataclass(frozen=True)
class GitHubAccess:
    """How the receiver reports to GitHub: a token, and the API to use."""

    token: str
    api_url: str = "https://api.github.com"
    write_pause: float = 0.5


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "deploy_pipeline_deliveries", "Webhook deliveries", ["event", "outcome"], registry=r
        )
        self.ack = Histogram(
            "deploy_pipeline_ack_seconds",
            "Time from a delivery's arrival to its answer",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.queue_depth = Gauge(
            "deploy_pipeline_queue_depth", "Deliveries waiting to run", registry=r
        )
        self.runs = Counter(
            "deploy_pipeline_runs", "Runs finished", ["action", "result"], registry=r
        )
        self.run_seconds = Histogram(
            "deploy_pipeline_run_seconds", "Run durations", ["action"], registry=r
        )


class Receiver:
    """The queue, its workers and the runs: everything behind the HTTP routes."""

    def __init__(
        self,
        config: Path,
        *,
        secret: str,
        github: GitHubAccess | None = None,
        workers: int = 2,
        api_token: str | None = None,
        public_url: str | None = None,
    ) -> None:
        if not secret:
            raise UsageError(
                "the receiver needs the webhook secret GitHub signs deliveries with: set "
                "DEPLOY_PIPELINE_WEBHOOK_SECRET (the same value as the webhook's secret on GitHub)"
            )
        self.config, self.secret, self.github = config, secret, github
        self.api_token, self.public_url = api_token, public_url
        pipeline = load_config(config)  # a bad file stops the start, with its errors
        self.policy = PreviewPolicy.of(pipeline.previews)
        self.store = Store(state_path(config))
        self.queue = Queue(self.store)
        self.metrics = Metrics()
        self.workers = workers
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.wake = threading.Condition()
        self.running: dict[str, Cancel] = {}
        self.lock = threading.Lock()

    # --- the HTTP side -----------------------------------------------------------------------

    def accept(self, delivery: Delivery, decision: Decision) -> bool:
        """Store a delivery that asks for work; False when its id was seen before."""
        new = self.queue.add(
            delivery.id,
            delivery.event,
            delivery.payload,
            action=decision.action,
            environment=decision.environment,
            pull_request=decision.pull_request.number if decision.pull_request else None,
            sha=decision.sha,
            reason=decision.reason,
        )
        if new and decision.environment:
            with self.lock:
                running = self.running.get(decision.environment)
            if running is not None:  # a newer push: the run in flight stops at a safe point
                running.set(f"superseded by {(decision.sha or delivery.id)[:7]}")
        with self.wake:
            self.wake.notify_all()
        return new

    # --- the workers -------------------------------------------------------------------------

    def start(self) -> None:
        self.store.abandon_dead_runs()
        again = self.queue.requeue_abandoned()
        if again:
            log.info("queued again %d deliveries a stopped receiver left running", again)
        for i in range(self.workers):
            thread = threading.Thread(target=self.work, name=f"worker-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def close(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        with self.lock:
            for cancel in self.running.values():
                cancel.set("the receiver is stopping")
        with self.wake:
            self.wake.notify_all()
        for thread in self.threads:
            thread.join(timeout)
        self.store.close()

    def work(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.queue.claim()
            except StoreError as exc:
                log.error("cannot read the queue: %s", exc)  # noqa: TRY400 (said, no traceback)
                job = None
            self.metrics.queue_depth.set(self.queue.depth())
            if job is None:
                with self.wake:
                    self.wake.wait(1.0)
                continue
            self.execute(job)

    def execute(self, job: Job) -> None:
        cancel = Cancel()
        with self.lock:
            self.running[job.environment] = cancel
        started = time.monotonic()
        action: Action = "delete" if job.action == "delete" else "deploy"
        extra: dict[str, object] = {
            "delivery": job.delivery,
            "pr": job.pull_request,
            "environment": job.environment,
        }
        execution: Execution | None = None
        observers: list[GitHubReporter] = []
        try:
            if job.pull_request is not None:
                workspace = Workspace(self.config)
                try:
                    workspace.preview(job.pull_request)
                finally:
                    workspace.close()
            request = Request(self.config, [job.environment], action, supersede=True)
            execution = Execution(request)
            reporter = self.reporter(job, execution, action)
            observers = [reporter] if reporter else []
            result = execution.perform([], cancel, observers=observers)
            for reporter in observers:  # GitHub shows the end before the delivery says done
                reporter.close()
            observers = []
            self.queue.attach_run(job.delivery, execution.run_id)
            extra["run"] = execution.run_id
            outcome = result.status if result else "cancelled"
            self.queue.finish(job.delivery, "done", outcome)
            self.metrics.runs.labels(action, outcome).inc()
            log.info("%s of %s: %s", action, job.environment, outcome, extra=extra)
        except DeployPipelineError as exc:
            self.queue.finish(job.delivery, "failed", str(exc))
            self.metrics.runs.labels(action, "error").inc()
            log.error(  # noqa: TRY400 (a user's error: said, no traceback)
                "%s of %s could not run: %s", action, job.environment, exc, extra=extra
            )
        finally:
            if execution is not None:
                execution.close()
            for reporter in observers:
                reporter.close()
            self.metrics.run_seconds.labels(action).observe(time.monotonic() - started)
            with self.lock:
                if self.running.get(job.environment) is cancel:
                    del self.running[job.environment]

    def reporter(self, job: Job, execution: Execution, action: Action) -> GitHubReporter | None:
        repository = str((job.payload.get("repository") or {}).get("full_name") or "")
        if self.github is None or not repository or not job.sha:
            return None
        run_url = None
        if self.public_url:
            run_url = f"{self.public_url.rstrip('/')}/api/deliveries/{job.delivery}"
        settings = GitHubSettings(
            repository=repository,
            token=self.github.token,
            sha=job.sha,
            api_url=self.github.api_url,
            run_url=run_url,
            write_pause=self.github.write_pause,
            backoff=self.github.write_pause or 0.5,
        )
        return GitHubReporter(
            settings, execution.run_plan, action, log=log.warning, redact=execution.redactor
        )

    # --- what the API shows ------------------------------------------------------------------

    def environments(self) -> list[dict[str, object]]:
        workspace = Workspace(self.config, write=False)
        try:
            return workspace.listing()
        finally:
            workspace.close()


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


def from_environ(config: Path, environ: Mapping[str, str]) -> Receiver:
    """A receiver configured as `deploy-pipeline serve` documents it."""
    token = environ.get("GITHUB_TOKEN", "")
    github = None
    if token:
        github = GitHubAccess(
            token=token, api_url=environ.get("GITHUB_API_URL", "https://api.github.com")
        )
    return Receiver(
        config,
        secret=environ.get("DEPLOY_PIPELINE_WEBHOOK_SECRET", ""),
        github=github,
        workers=int(environ.get("DEPLOY_PIPELINE_WORKERS", "2")),
        api_token=environ.get("DEPLOY_PIPELINE_API_TOKEN") or None,
        public_url=environ.get("DEPLOY_PIPELINE_PUBLIC_URL") or None,
    )


class JsonLogs(logging.Formatter):
    """One JSON object per log line, carrying the delivery, PR, environment and run it is about."""

    FIELDS = ("delivery", "pr", "environment", "run")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def serve(config: Path, environ: Mapping[str, str], *, host: str, port: int) -> None:
    """Run the receiver under uvicorn until it is stopped (Ctrl-C, SIGTERM); logs are JSON
    lines on stderr, uvicorn's included."""
    import uvicorn

    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogs())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    receiver = from_environ(config, environ)
    if receiver.github is None:
        log.warning("reporting to GitHub is off: set GITHUB_TOKEN to turn it on")
    uvicorn.run(create_app(receiver), host=host, port=port, log_config=None, log_level="info")
