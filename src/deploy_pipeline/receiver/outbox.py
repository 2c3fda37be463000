"""What the receiver still has to tell GitHub, off its workers: calls outside a run's reporter
(the commit status of a run that could not start, a removed preview's comment and Deployments),
sent from a thread of their own, and the runs' reporters left sending while GitHub is out of
reach. A GitHub out of reach never holds a worker up, and is tried again with backoff, a bounded
number of times."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from deploy_pipeline.errors import DeployPipelineError
from deploy_pipeline.github import GitHubClient, GitHubReporter, unreachable
from deploy_pipeline.store.queue import Job

log = logging.getLogger("deploy_pipeline.receiver")

MAX_BACKOFF = 30.0  # seconds between two tries, at most
REPORT_WAIT = 5.0  # seconds to wait for an update GitHub answers (a stopping receiver: per sender)


class Outbox:
    def __init__(
        self, github: GitHubClient | None = None, *, tries: int = 6, backoff: float = 0.5
    ) -> None:
        self.github, self.tries, self.backoff = github, max(1, tries), backoff
        self.reporting: list[GitHubReporter] = []  # still sending, GitHub being out of reach
        self.lock = threading.Lock()
        self.tasks: queue.Queue[tuple[str, Callable[[], None], threading.Event] | None] = (
            queue.Queue()
        )
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._work, name="github-outbox", daemon=True)
        self.thread.start()

    def send(self, what: str, call: Callable[[], None]) -> threading.Event:
        """Make `call` soon; `what` names it in the log if GitHub refuses it or stays away. The
        event is set once it is made (or refused), or GitHub is found out of reach: whoever
        waits for it then waits no longer."""
        settled = threading.Event()
        self.tasks.put((what, call, settled))
        return settled

    def tell(self, job: Job, text: str) -> None:
        """A commit status `error` saying why a pull request's run could not start."""
        repository = job.repository
        github, sha = self.github, job.sha
        if github is None or not repository or not sha:
            return
        sent = self.send(
            f"set the status of {sha[:7]}",
            lambda: github.status(repository, sha, job.environment, "error", text),
        )
        sent.wait(REPORT_WAIT)  # the commit says it before the delivery does, if GitHub answers

    def detach(self, reporter: GitHubReporter) -> None:
        """Wait for a run's updates to GitHub while it answers; when it is out of reach, leave
        them to the reporter's thread (retried with backoff) and go on."""
        with self.lock:
            self.reporting = [r for r in self.reporting if r.worker.is_alive()]
        if not reporter.detach():
            with self.lock:
                self.reporting.append(reporter)

    def close(self, timeout: float = REPORT_WAIT) -> None:
        """Send what is queued, waiting at most `timeout` s (then as long again for each
        reporter still sending); retries stop waiting at once."""
        self.tasks.put(None)
        self.stopping.set()
        self.thread.join(timeout)
        for reporter in self.reporting:
            reporter.close(timeout)

    def _work(self) -> None:
        while (task := self.tasks.get()) is not None:
            what, call, settled = task
            try:
                self._send(what, call, settled)
            except Exception:  # a defect: said, and the next call is sent all the same
                log.exception("cannot %s", what)
            finally:
                settled.set()

    def _send(self, what: str, call: Callable[[], None], settled: threading.Event) -> None:
        for attempt in range(1, self.tries + 1):
            try:
                call()
            except DeployPipelineError as exc:
                if not unreachable(exc) or attempt == self.tries or self.stopping.is_set():
                    log.warning("cannot %s: %s", what, exc)
                    return
                settled.set()  # out of reach: nobody waits for it any more
                if self.stopping.wait(min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)):
                    log.warning("cannot %s: %s", what, exc)
                    return
            else:
                return
