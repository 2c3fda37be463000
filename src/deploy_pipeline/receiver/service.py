"""The receiver's work behind the 202: the durable queue, its worker threads and the runs, on
the same stage runner as the CLI and the Action, reported to GitHub the same way.

The HTTP side only checks and stores: a delivery is verified, written to the durable queue and
acknowledged in milliseconds. Worker threads take deliveries from the queue and run them; runs
of one preview never overlap, and a newer push stops the run in flight at its next safe point.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from deploy_pipeline.config import load_config
from deploy_pipeline.errors import DeployPipelineError, StoreError, UsageError
from deploy_pipeline.execution import Execution, Request, Workspace
from deploy_pipeline.github import GitHubReporter, GitHubSettings
from deploy_pipeline.model import Action
from deploy_pipeline.queue import Job, Queue
from deploy_pipeline.runner import Cancel
from deploy_pipeline.store import Store, state_path
from deploy_pipeline.webhooks import (
    Decision,
    Delivery,
    PreviewPolicy,
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
