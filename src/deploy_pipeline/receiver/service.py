"""The receiver's work behind the 202: the durable queue, its worker threads and the runs, on
the same stage runner as the CLI and the Action, reported to GitHub the same way.

The HTTP side only checks and stores: a delivery is verified, written to the durable queue and
acknowledged in milliseconds. Worker threads take deliveries from the queue and run them; runs
of one preview never overlap, and a newer push stops the run in flight at its next safe point.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deploy_pipeline.config import load_config
from deploy_pipeline.errors import (
    ConfigErrors,
    DeployPipelineError,
    StoreError,
    UsageError,
    truncate,
)
from deploy_pipeline.github import GitHubClient, GitHubReporter
from deploy_pipeline.model import ACTIONS, Action, Event
from deploy_pipeline.operation import Operation, Request, RunObserver
from deploy_pipeline.previews import Decision, PreviewPolicy, in_sequence
from deploy_pipeline.receiver.housekeeping import RETENTION_DAYS, SWEEP_EVERY, Housekeeper
from deploy_pipeline.receiver.metrics import Metrics
from deploy_pipeline.receiver.outbox import REPORT_WAIT, Outbox
from deploy_pipeline.receiver.sources import PIPELINE_FILE, Sources
from deploy_pipeline.runner import Cancel
from deploy_pipeline.steps import RunResult
from deploy_pipeline.store.queue import Job, Queue
from deploy_pipeline.store.state import open_store, state_path
from deploy_pipeline.webhooks import Delivery
from deploy_pipeline.workspace import Workspace

log = logging.getLogger("deploy_pipeline.receiver")

STOPPING = "the receiver is stopping; the run starts again when it is back"
REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")  # GitHub's owner/name


class AttachRun:
    """Tells the queue which run a delivery started as soon as it starts (for the API's SSE)."""

    def __init__(self, queue: Queue, delivery: str, operation: Operation) -> None:
        self.queue, self.delivery, self.operation = queue, delivery, operation

    def start(self) -> None:
        self.queue.attach_run(self.delivery, self.operation.run_id)

    def __call__(self, event: Event) -> None:
        pass

    def finish(self, result: RunResult) -> None:
        pass


class Receiver:
    """The queue, its workers and the runs: everything behind the HTTP routes."""

    def __init__(
        self,
        config: Path,
        *,
        secret: str,
        github: GitHubClient | None = None,
        source: str = "file",
        workers: int = 2,
        api_token: str | None = None,
        public_url: str | None = None,
        sweep_every: float = SWEEP_EVERY,
        repository: str | None = None,
        lease: float | None = None,
        retention_days: int = RETENTION_DAYS,
    ) -> None:
        if not secret:
            raise UsageError(
                "the receiver needs the webhook secret GitHub signs deliveries with: set "
                "DEPLOY_PIPELINE_WEBHOOK_SECRET (the same value as the webhook's secret on GitHub)"
            )
        self.config, self.secret, self.github = config, secret, github
        self.api_token, self.public_url = api_token, public_url
        self.retention = retention_days * 86400.0  # seconds finished work stays in the store
        pipeline = load_config(config)  # a bad file stops the start, with its errors
        self.state = state_path(config)  # one state database, whichever file a run reads
        self.sources = Sources(config, state=self.state, source=source, github=github)
        if repository is not None and not REPOSITORY.fullmatch(repository):
            raise UsageError(
                f"DEPLOY_PIPELINE_REPOSITORY is the owner/name of the repository served here "
                f"(e.g. octo-org/app), got {truncate(repository, 100)!r}"
            )
        self.source, self.repository = source, repository
        self.previews = pipeline.previews  # housekeeping's ttl and max
        self.policy = PreviewPolicy.of(self.previews, repository)  # what a delivery asks for
        self.store = open_store(config, state=self.state)
        # deliveries are stored one at a time anyway (one connection, one lock): one thread
        # keeps the others from queueing on the lock and costs less than the async pool's
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="writer")
        self.queue = Queue(self.store, lease=lease)
        self.metrics = Metrics()
        self.workers = workers
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.wake = threading.Condition()
        self.running: dict[str, Cancel] = {}
        self.lock = threading.Lock()
        self.outbox = Outbox(
            github, tries=github.retries if github else 1, backoff=github.backoff if github else 0.5
        )
        self.housekeeper = Housekeeper(
            self.store,
            self.queue,
            submit=self.submit,
            outbox=self.outbox,
            stopping=self.stopping,
            previews=self.previews,
            retention=self.retention,
            github=github,
            every=sweep_every,
        )

    # --- the HTTP side -----------------------------------------------------------------------

    def accept(self, delivery: Delivery, decision: Decision) -> Decision | None:
        """Store a delivery that asks for work, unless what its preview was last asked says to
        leave it alone (previews.in_sequence): the decision it stands by, stored when it is not
        `ignore`; None when its id was seen before (a repeat, not run again)."""
        if decision.environment and decision.pull_request:
            decision = in_sequence(decision, self.queue.last_taken(decision.environment))
            if decision.action == "ignore":
                return None if self.queue.delivery(delivery.id) is not None else decision
        new = self.queue.add(
            delivery.id,
            delivery.event,
            delivery.payload,
            action=decision.action,
            environment=decision.environment,
            pull_request=decision.pull_request.number if decision.pull_request else None,
            sha=decision.sha,
            reason=decision.reason,
            body=delivery.text,
        )
        # a newer push: the run in flight stops at its next safe point
        stop = f"superseded by {(decision.sha or delivery.id)[:7]}" if new else None
        self.queued(decision.environment, stop)
        return decision if new else None

    def submit(
        self,
        environment: str,
        action: Action,
        *,
        services: Sequence[str] = (),
        reason: str,
        pull_request: int | None = None,
        sha: str | None = None,
        event: str = "api",
    ) -> str:
        """Queue work that did not come from a webhook (the API, housekeeping); its id."""
        delivery = f"{event}-{uuid.uuid4()}"
        self.queue.add(
            delivery,
            event,
            {"reason": reason},
            action=action,
            environment=environment,
            pull_request=pull_request,
            sha=sha,
            reason=reason,
            services=services,
        )
        # no point finishing what is deleted
        self.queued(
            environment, f"superseded by a delete ({reason})" if action == "delete" else None
        )
        return delivery

    def queued(self, environment: str | None, stop: str | None) -> None:
        """After a delivery is queued: stop the environment's run in flight here, if `stop`
        says why (the workers of every receiver also look for newer deliveries, within a
        second), and wake the workers."""
        if stop is not None and environment:
            with self.lock:
                running = self.running.get(environment)
            if running is not None:
                running.set(stop)
        with self.wake:
            self.wake.notify_all()

    # --- the workers -------------------------------------------------------------------------

    def start(self) -> None:
        self.store.database.checkpoint_apart(every=1.0)
        self.store.abandon_dead_runs()
        again = self.queue.requeue_abandoned()
        if again:
            log.info("queued again %d deliveries a stopped receiver left running", again)
        for i in range(self.workers):
            thread = threading.Thread(target=self.work, name=f"worker-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)
        self.threads.append(self.housekeeper.start())

    def close(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        with self.lock:
            for cancel in self.running.values():
                cancel.set(STOPPING)
        with self.wake:
            self.wake.notify_all()
        for thread in self.threads:
            thread.join(timeout)
        self.outbox.close(REPORT_WAIT)  # and the runs' reporters still sending
        if self.github is not None:
            self.github.close()
        self.writer.shutdown()
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
            try:
                self.execute(job)
            except Exception:  # a worker outlives any job: say it, and take the next one
                log.exception("worker failed on delivery %s", job.delivery)

    def dead_workers(self) -> list[str]:
        """The names of the receiver's threads that have ended while it runs (for /readyz)."""
        if self.stopping.is_set():
            return []
        return [t.name for t in self.threads if not t.is_alive()]

    def execute(self, job: Job) -> None:
        cancel = Cancel()
        with self.lock:
            self.running[job.environment] = cancel
        done = threading.Event()  # until then, the lease is renewed and newer deliveries looked for
        threading.Thread(target=self.watch, args=(job, cancel, done), daemon=True).start()
        started = time.monotonic()
        action: Action = next((a for a in ACTIONS if a == job.action), "deploy")
        extra: dict[str, object] = {
            "delivery": job.delivery,
            "pr": job.pull_request,
            "environment": job.environment,
        }
        operation: Operation | None = None
        observers: list[GitHubReporter] = []
        try:
            operation = self.prepare(job, action)
            reporter = self.reporter(job, operation, action)
            observers = [reporter] if reporter else []
            attach = AttachRun(self.queue, job.delivery, operation)
            watching: list[RunObserver] = [attach, *observers]
            result = operation.perform([], cancel, observers=watching)
            for reporter in observers:  # GitHub shows the end before the delivery says done
                self.detach(reporter)  # unless GitHub is out of reach: the run's result is kept
            observers = []
            self.queue.attach_run(job.delivery, operation.run_id)
            extra["run"] = operation.run_id
            outcome = result.status if result else "cancelled"
            if outcome == "cancelled" and cancel.reason == STOPPING:
                self.queue.release(job.delivery)  # a graceful stop loses no work either
                log.info(
                    "%s of %s: queued again, %s", action, job.environment, STOPPING, extra=extra
                )
                return
            self.queue.finish(job.delivery, "done", outcome)
            self.metrics.runs.labels(action, outcome).inc()
            log.info("%s of %s: %s", action, job.environment, outcome, extra=extra)
            self.after(job, action, outcome)
        except DeployPipelineError as exc:
            said = str(exc).replace(f"{self.sources.checkout_of(job.environment)}{os.sep}", "")
            # once a run started its reporter told GitHub; before, nothing did
            tell = None if operation is not None else f"{action} could not start: {said}"
            self.failed(job, action, said, tell=tell, extra=extra)
        except Exception as exc:  # a defect, or a value no check caught: the delivery fails
            said = (
                f"{action} of {job.environment} stopped on an unexpected error: "
                f"{type(exc).__name__}: {truncate(str(exc), 300)}"
            )
            if operation is not None:
                said = operation.redactor(said)
            log.exception("%s", said, extra=extra)  # the traceback for whoever fixes it
            self.failed(job, action, said, tell=said, extra=extra, logged=True)
        finally:
            done.set()
            if operation is not None:
                operation.close()
            for reporter in observers:
                self.detach(reporter)
            self.metrics.run_seconds.labels(action).observe(time.monotonic() - started)
            with self.lock:
                if self.running.get(job.environment) is cancel:
                    del self.running[job.environment]

    def failed(
        self,
        job: Job,
        action: Action,
        said: str,
        *,
        tell: str | None,
        extra: dict[str, object],
        logged: bool = False,
    ) -> None:
        """A job that could not run: its delivery `failed` with `said`, GitHub told `tell`."""
        if tell is not None:
            self.outbox.tell(job, tell)
        self.queue.finish(job.delivery, "failed", said)
        self.metrics.runs.labels(action, "error").inc()
        if not logged:
            log.error(  # a user's error: said, no traceback
                "%s of %s could not run: %s", action, job.environment, said, extra=extra
            )

    def detach(self, reporter: GitHubReporter) -> None:
        """A run's reporter done with: its updates sent, or left sending (outbox.py)."""
        self.outbox.detach(reporter)

    def prepare(self, job: Job, action: Action) -> Operation:
        """The job's run, ready: its pipeline file, the preview made on its first push."""
        config = self.sources.pipeline_for(job, action)
        trusted = self.sources.trusted_for(config)
        request = Request(
            config,
            [job.environment],
            action,
            list(job.services),
            supersede=True,
            state=self.state,
            trusted=trusted,
            commit=job.sha or None,
        )
        try:
            if job.pull_request is not None:
                with Workspace(config, state=self.state, trusted=trusted) as workspace:
                    workspace.preview(job.pull_request)
            operation = Operation(request)
        except ConfigErrors:
            if trusted is not None:  # a refused file is not kept: the preview's later runs (its
                config.unlink(missing_ok=True)  # delete on close) and its page read -f FILE
            raise
        if operation.workspace.ignored:
            log.warning(
                "the pull request's %s sets %s: ignored, the receiver's own file decides them",
                PIPELINE_FILE,
                ", ".join(operation.workspace.ignored),
                extra={
                    "delivery": job.delivery,
                    "pr": job.pull_request,
                    "environment": job.environment,
                },
            )
        return operation

    def after(self, job: Job, action: Action, outcome: str) -> None:
        """What a finished run leaves to do: keep previews within previews.max, and drop a
        deleted preview's checkout."""
        if outcome != "succeeded":
            return
        if job.pull_request is not None and action == "deploy":
            self.housekeeper.sweep(closed=False)  # a new one may be one over previews.max
        if action == "delete" and not job.services:
            self.sources.remove(job.environment)

    def watch(self, job: Job, cancel: Cancel, done: threading.Event, every: float = 1.0) -> None:
        """While a job runs: renew its lease, and stop a preview's run when any receiver has
        queued a newer delivery for it (DESIGN.md §2: a preview's newer run supersedes)."""
        renew_every = max(1, int(self.queue.lease / every / 6))
        beats = 0
        while not done.wait(every):
            try:
                if beats % renew_every == 0 and not self.queue.renew(job.delivery):
                    cancel.set("its lease ran out and another receiver took it")
                    return
                beats += 1
                newer = self.queue.newer_than(job) if job.pull_request is not None else None
            except StoreError as exc:  # the database is away: the run goes on, the lease may end
                log.warning("cannot renew the lease of delivery %s: %s", job.delivery, exc)
                continue
            if newer is not None:
                cancel.set(f"superseded by {newer[:7]}")
                return

    def reporter(self, job: Job, operation: Operation, action: Action) -> GitHubReporter | None:
        repository = job.repository
        if self.github is None or not repository or not job.sha:
            return None
        run_url = None
        if self.public_url:
            run_url = f"{self.public_url.rstrip('/')}/api/deliveries/{job.delivery}"
        # the token is taken on the reporter's thread: an unreachable GitHub holds no run up
        settings = self.github.settings(repository, job.sha, run_url=run_url, lazy=True)
        return GitHubReporter(
            settings,
            operation.run_plan,
            action,
            log=log.warning,
            redact=operation.redactor,
            cancelled="inactive",  # superseded by a newer push (or queued again): not a failure
        )
