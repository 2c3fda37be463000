"""What the reporter and the client share: GitHub's errors in a user's words, the retry policy,
the settings of a run's reports, and the preview's one comment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import requests
from github import (
    GithubException,
    GithubRetry,
)
from github.Repository import Repository

from deploy_pipeline.errors import GitHubError, truncate
from deploy_pipeline.reporting.markdown import (
    comment_marker,
)

API_VERSION = "2022-11-28"
DEFAULT_API = "https://api.github.com"
PERMISSION_HINT = {
    "statuses": "statuses: write",
    "deployments": "deployments: write",
    "pull_requests": "pull-requests: write",
    "issues": "pull-requests: write",
}
# A GitHub App's permissions as its settings page names them.
APP_PERMISSION = {
    "contents": "Contents",
    "metadata": "Metadata",
    "pull_requests": "Pull requests",
    "issues": "Issues",
    "statuses": "Commit statuses",
    "deployments": "Deployments",
    "checks": "Checks",
}
REFRESH_BEFORE = 300.0  # an installation token is replaced this many seconds before it expires
T = TypeVar("T")


@dataclass(frozen=True)
class GitHubSettings:
    repository: str  # owner/name
    token: str = field(repr=False)
    sha: str  # the commit deployed: statuses and deployments are about it
    api_url: str = "https://api.github.com"
    run_url: str | None = None  # the Actions run, or the receiver's run page
    retries: int = 6
    backoff: float = 0.5  # seconds, doubled per retry
    write_pause: float = 0.5  # between writes, as GitHub asks of integrations
    secondary_rate_wait: float = 60.0
    app: bool = False  # the token is a GitHub App's: a missing permission is the app's to grant
    # where the token comes from when `token` is empty: asked on the reporter's own thread, so
    # a GitHub out of reach never holds a run up (an App's installation token)
    token_source: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_actions(
        cls, environ: Mapping[str, str], token: str, sha: str | None = None
    ) -> GitHubSettings | None:
        """The settings a workflow step has (GITHUB_REPOSITORY, GITHUB_SHA, the run's URL)."""
        repository = environ.get("GITHUB_REPOSITORY", "")
        sha = sha or environ.get("GITHUB_SHA", "")
        if not (repository and sha and token):
            return None
        server = environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        run_id = environ.get("GITHUB_RUN_ID")
        pause = environ.get("DEPLOY_PIPELINE_GITHUB_WRITE_PAUSE", "")
        return cls(
            repository=repository,
            token=token,
            sha=sha,
            api_url=environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
            run_url=f"{server}/{repository}/actions/runs/{run_id}" if run_id else None,
            write_pause=float(pause) if pause else cls.write_pause,
            backoff=float(pause) if pause else cls.backoff,
        )


def describe(error: BaseException, what: str, *, app: bool = False) -> str:
    """What went wrong with GitHub, in the words a user can act on (`app`: the token is a GitHub
    App's, so a missing permission is named as the app's settings name it)."""
    if isinstance(error, GithubException):
        data = error.data if isinstance(error.data, dict) else {}
        message = truncate(str(data.get("message") or error.data or ""), 300)
        headers = {k.lower(): v for k, v in (error.headers or {}).items()}
        if error.status == 403 and "x-accepted-github-permissions" in headers:
            wanted = headers["x-accepted-github-permissions"]
            if app:
                return (
                    f"GitHub refused to {what}: the GitHub App lacks the {wanted} permission; "
                    f"grant the app {_app_permissions(wanted)} (its settings → Permissions), "
                    "then accept the new permissions on its installation"
                )
            names = [p.split("=", 1)[0] for p in wanted.split(",") if p]
            hint = " or ".join(PERMISSION_HINT.get(n, f"{n}: write") for n in names)
            return (
                f"GitHub refused to {what}: the token lacks the {wanted} permission; "
                f"give the workflow `permissions: {hint}` (or the app that permission)"
            )
        if error.status == 401:
            return f"GitHub refused to {what}: the token is not accepted ({message})"
        if error.status == 404:
            return (
                f"GitHub could not {what}: not found ({message}); check the repository name "
                "and that the token can see it"
            )
        return f"GitHub could not {what}: {error.status} {message}".rstrip()
    if isinstance(error, requests.RequestException):
        return f"GitHub could not {what}: cannot reach {truncate(str(error), 200)}"
    return f"GitHub could not {what}: {type(error).__name__}: {truncate(str(error), 200)}"


def _app_permissions(accepted: str) -> str:
    """`issues=write; pull_requests=write` → `"Issues: write" or "Pull requests: write"`."""
    alternatives = []
    for alternative in accepted.split(";"):
        needed = [p.strip().partition("=") for p in alternative.split(",") if p.strip()]
        named = [
            f"{APP_PERMISSION.get(n, n.replace('_', ' ').capitalize())}: {lvl}"
            for n, _, lvl in needed
        ]
        if named:
            alternatives.append(" and ".join(f'"{n}"' for n in named))
    return " or ".join(alternatives)


def retry_policy(
    retries: int, backoff: float, secondary_wait: float, *, unreachable: bool = True
) -> GithubRetry:
    """Transient failures (5xx, 429, rate limits) retried with backoff; never a 4xx. Without
    `unreachable`, a GitHub that cannot be reached fails at once: the caller retries (the
    reporter, on its own thread) rather than holding a run up for half a minute."""
    more: dict[str, int] = {} if unreachable else {"connect": 0, "read": 0}
    return GithubRetry(
        total=retries,
        backoff_factor=backoff,
        status_forcelist=[*range(500, 600), 429],
        secondary_rate_wait=secondary_wait,
        max_rate_limit_wait=secondary_wait,
        **more,
    )


def unreachable(error: BaseException) -> bool:
    """GitHub could not be reached (refused, reset, timed out): worth another try later."""
    if isinstance(error, requests.RequestException):
        return True
    return isinstance(error, GitHubError) and isinstance(error.__cause__, requests.RequestException)


def post_or_edit_comment(repo: Repository, number: int, environment: str, body: str) -> None:
    """The preview's one comment on a pull request: edited in place when it is there already."""
    issue = repo.get_issue(number)  # lazy: no request for the issue itself
    marker = comment_marker(environment)
    for comment in issue.get_comments():
        if marker in (comment.body or ""):
            comment.edit(body)
            return
    issue.create_comment(body)
