"""Housekeeping of previews, on start and every few minutes: a preview expires `previews.ttl`
after its last push, `previews.max` caps how many exist (the longest untouched goes first), and
previews whose pull request is closed are deleted (GitHub does not redeliver a missed webhook).

Each removal is queued as a delete like a webhook's, so it is serialized with the preview's other
runs, and the PR's preview comment says why it went. Housekeeping knows only what it needs: the
store and the queue it reads, a `submit` callable that queues a delete, the outbox that tells
GitHub, and the event that says the receiver is stopping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from deploy_pipeline.errors import DeployPipelineError
from deploy_pipeline.model import Action, Previews
from deploy_pipeline.receiver.outbox import Outbox
from deploy_pipeline.reporting.markdown import removal_comment
from deploy_pipeline.store.queue import Queue, repository_of
from deploy_pipeline.store.state import Store

log = logging.getLogger("deploy_pipeline.receiver")

SWEEP_EVERY = 300.0
RETENTION_DAYS = (
    30  # finished deliveries and runs are kept this long (DEPLOY_PIPELINE_RETENTION_DAYS)
)


class PullRequests(Protocol):
    """What housekeeping asks of GitHub (github.GitHubClient)."""

    def open_pulls(self, repository: str) -> set[int]: ...
    def comment(self, repository: str, number: int, environment: str, body: str) -> None: ...
    def deactivate(self, repository: str, environment: str, why: str) -> None: ...


class Submit(Protocol):
    """Queues work that did not come from a webhook; its delivery id (Receiver.submit)."""

    def __call__(
        self, environment: str, action: Action, *, reason: str, pull_request: int | None, event: str
    ) -> str: ...


@dataclass(frozen=True)
class Preview:
    name: str
    pull_request: int
    last_push: float | None  # when its newest deploying delivery arrived


def _days(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)
            return f"{n} {unit}" + ("" if n == 1 else "s")
    return f"{round(seconds)} seconds"


class Housekeeper:
    def __init__(
        self,
        store: Store,
        queue: Queue,
        *,
        submit: Submit,
        outbox: Outbox,
        stopping: threading.Event,
        previews: Previews | None,
        retention: float = RETENTION_DAYS * 86400.0,
        github: PullRequests | None = None,
        every: float = SWEEP_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.queue, self.submit, self.outbox = store, queue, submit, outbox
        self.stopping, self.policy, self.retention = stopping, previews, retention
        self.github, self.every, self.clock = github, every, clock
        self.said_no_github = False

    def previews(self) -> list[Preview]:
        """The previews the store knows, with their last push."""
        records = self.store.environments()
        pushes = self.queue.last_pushes()
        found = []
        for rec in records.values():
            if rec.origin != "preview" or rec.pull_request is None:
                continue
            found.append(Preview(rec.name, rec.pull_request, pushes.get(rec.name)))
        return found

    def repository(self, preview: Preview) -> str | None:
        """The owner/name of the preview's repository, from its newest pull_request delivery."""
        return repository_of(self.queue.latest_pull_request(preview.name)[1])

    def sweep(self, *, closed: bool = True) -> list[tuple[str, str]]:
        """Queue the deletes housekeeping calls for; returns (preview, why) for each. Without
        `closed`, GitHub is not asked which pull requests are open (after each deploy, only
        `previews.max` and `ttl` need a look)."""
        policy = self.policy
        if policy is None:
            return []
        now, gone = self.clock(), self.queue.leaving()
        previews = [p for p in self.previews() if p.name not in gone]
        removals: list[tuple[Preview, str]] = []
        if policy.ttl is not None:
            for p in previews:
                if p.last_push is not None and now - p.last_push > policy.ttl:
                    removals.append(
                        (
                            p,
                            f"No push for {_days(now - p.last_push)}: previews expire "
                            f"{_days(policy.ttl)} after their last push (`previews.ttl`).",
                        )
                    )
        if closed:
            removals += self.closed([p for p in previews if p not in {r for r, _ in removals}])
        left = [p for p in previews if p not in {r for r, _ in removals}]
        if policy.max is not None and len(left) > policy.max:
            left.sort(key=lambda p: p.last_push or 0.0)
            for p in left[: len(left) - policy.max]:
                removals.append(
                    (
                        p,
                        f"At most {policy.max} previews may exist (`previews.max`), and this "
                        "one had gone longest without a push.",
                    )
                )
        for p, why in removals:
            self.remove(p, why)
        return [(p.name, why) for p, why in removals]

    def closed(self, previews: list[Preview]) -> list[tuple[Preview, str]]:
        if not previews:
            return []
        if self.github is None:
            if not self.said_no_github:
                log.info("previews of closed pull requests are not swept: GitHub access is off")
                self.said_no_github = True
            return []
        by_repository: dict[str, list[Preview]] = {}
        for p in previews:
            if repository := self.repository(p):
                by_repository.setdefault(repository, []).append(p)
        found: list[tuple[Preview, str]] = []
        for repository, theirs in sorted(by_repository.items()):
            try:
                open_ = self.github.open_pulls(repository)
            except DeployPipelineError as exc:
                log.warning("cannot list the open pull requests of %s: %s", repository, exc)
                continue
            for p in theirs:
                if p.pull_request not in open_:
                    why = f"Pull request #{p.pull_request} is closed (found by the sweeper)."
                    found.append((p, why))
        return found

    def remove(self, preview: Preview, why: str) -> None:
        log.info("removing %s: %s", preview.name, why, extra={"environment": preview.name})
        self.submit(
            preview.name,
            "delete",
            reason=why,
            pull_request=preview.pull_request,
            event="housekeeping",
        )
        github = self.github
        repository = self.repository(preview) if github is not None else None
        if github is None or not repository:
            return
        # from the outbox's thread: a GitHub out of reach holds no worker up, and is retried
        body = removal_comment(preview.name, why)
        self.outbox.send(
            f"comment on #{preview.pull_request}",
            lambda: github.comment(repository, preview.pull_request, preview.name, body),
        )
        self.outbox.send(
            f"mark the deployments of {preview.name} inactive",
            lambda: github.deactivate(repository, preview.name, f"removed: {why}"),
        )

    def prune(self) -> tuple[int, int]:
        """Forget deliveries and runs (events and logs with them) that ended more than the
        receiver's retention ago; (deliveries, runs) forgotten."""
        before = self.clock() - self.retention
        deliveries = self.queue.prune(before)
        runs = self.store.prune_runs(before)
        if deliveries or runs:
            days = _days(self.retention)
            log.info("forgot %d deliveries and %d runs over %s old", deliveries, runs, days)
        return deliveries, runs

    def loop(self) -> None:
        """Sweep (and prune) on start, then every `every` seconds until the receiver stops."""
        while True:
            try:
                self.sweep()
                self.prune()
            except DeployPipelineError as exc:
                log.error("housekeeping failed: %s", exc)  # noqa: TRY400 (said, no traceback)
            except Exception:  # a defect: said with its traceback, and the next sweep happens
                log.exception("housekeeping failed")
            if self.stopping.wait(self.every):
                return

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.loop, name="housekeeping", daemon=True)
        thread.start()
        return thread
