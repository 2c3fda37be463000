"""The one exception tree of deploy-pipeline: every exception the project raises on purpose.

    DeployPipelineError
    ├── UsageError            bad command line or bad config: exit code 2; the API's 400
    │   ├── ConfigError       names the file, the line and the key path
    │   ├── ConfigErrors      every ConfigError of one file, reported together
    │   ├── NotFound          the API was asked about something that does not exist (404)
    │   ├── Conflict          the API was asked to make something that exists already (409)
    │   ├── PageError         a paging parameter that is not one (400)
    │   └── ApiInputError     a request body the API does not take (400)
    ├── StoreError            the state database cannot be read or written
    ├── StepError             a build or deploy step failed
    │   ├── TransientError    worth retrying with backoff (network, 5xx, 409)
    │   ├── PermanentError    retrying will not help (a failing container, a 4xx)
    │   │   ├── BuildStopped  backends/engine.py: a build cut short on purpose (internal signal)
    │   │   └── ApplyConflict backends/kube.py: server-side apply met other field managers
    │   └── StepTimeout       the step ran past its timeout
    ├── NoLogs                a service's output cannot be read from its target: said, not failed
    ├── Cancelled             the run was asked to stop (Ctrl-C, superseded, a failure elsewhere)
    ├── SignatureError        a webhook delivery not signed with our secret
    ├── PayloadError          a signed delivery that is not a GitHub event
    ├── CheckoutError         git could not fetch or check out a commit
    └── GitHubError           a call to GitHub failed; the message says what to do about it

The two internal signals live next to the code that raises and catches them; every other class is
defined here.

Lower libraries' exceptions are converted at the backend boundary, keeping the original as
``__cause__``; a message shown to a user is truncated and has its secrets masked first.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

MAX_MESSAGE = 2000


class DeployPipelineError(Exception):
    """Base of every error this project raises on purpose."""


class UsageError(DeployPipelineError):
    """The command line or the config asks for something that cannot be done."""


class ConfigError(UsageError):
    """A `.deploy-pipeline.yml` problem, located as `file:line: key.path: what is wrong`."""

    def __init__(
        self, file: str, line: int | None, path: str, problem: str, column: int | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.problem = problem
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}" + (f":{self.column}" if self.column else "")
        return f"{where}: {self.path}: {self.problem}" if self.path else f"{where}: {self.problem}"


class ConfigErrors(UsageError):
    """Every problem found in one file, reported together so one edit fixes them all."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class NotFound(UsageError):
    """The API was asked about something that does not exist (404)."""


class Conflict(UsageError):
    """The API was asked to make something that exists already (409)."""


class PageError(UsageError):
    """A paging parameter that is not one (400)."""


class ApiInputError(UsageError):
    """A request body the API does not take: not JSON, or not an object (400)."""


class StoreError(DeployPipelineError):
    """The state database is unreadable, from a newer version, or locked too long."""


class StepError(DeployPipelineError):
    """A step (build, deploy, restart, stop, delete) did not succeed."""


class TransientError(StepError):
    """A failure that may pass: the runner retries it with backoff within the step timeout."""


class PermanentError(StepError):
    """A failure that retrying will not fix: the run fails at once."""


class StepTimeout(StepError):
    """The step did not finish within its timeout."""


class NoLogs(DeployPipelineError):
    """A service's output cannot be read from its target (a simulated target runs nothing; a
    node that does not serve logs): `logs` says so for that service and goes on."""


class Cancelled(DeployPipelineError):
    """The run was asked to stop at its next safe point; the message says why."""


class SignatureError(DeployPipelineError):
    """The delivery's X-Hub-Signature-256 is missing, malformed, or not made with our secret."""


class PayloadError(DeployPipelineError):
    """A signed delivery that is not a GitHub event: not a JSON object, or headers missing."""


class CheckoutError(DeployPipelineError):
    """git could not fetch or check out the commit: the message says why, without the token;
    `transient` when trying again later may help (network, timeout)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class GitHubError(DeployPipelineError):
    """A call to GitHub failed; the message says what to do about it (`describe`'s words)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def truncate(text: str, limit: int = MAX_MESSAGE) -> str:
    """Keep a remote body or a log short enough to read, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def choices(word: str, options: Iterable[str], what: str) -> str:
    """`did you mean 'api'? The services are: db, api` — the hint when a name is unknown."""
    names = list(options)
    near = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    listed = ", ".join(names) if names else "none"
    return (
        f"did you mean '{near[0]}'? The {what} are: {listed}"
        if near
        else f"the {what} are: {listed}"
    )
