"""What the GitHub stand-in keeps: repositories, tokens and their permissions, pull requests,
forced faults, and the requests it answered and the violations it saw; plus an answer's shapes.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support.github_standin.description import Operation

# What a GitHub App installation token needs per operation, as X-Accepted-GitHub-Permissions
# spells it: alternatives are separated by ";". The description does not carry these; they follow
# GitHub's "permissions required for GitHub Apps" pages.
PERMISSIONS = {
    "repos/get": "metadata=read",
    "repos/get-commit": "contents=read",
    "repos/get-content": "contents=read",
    "repos/download-tarball-archive": "contents=read",
    "repos/list-commit-statuses-for-ref": "statuses=read",
    "repos/get-combined-status-for-ref": "statuses=read",
    "repos/create-commit-status": "statuses=write",
    "repos/list-deployments": "deployments=read",
    "repos/get-deployment": "deployments=read",
    "repos/create-deployment": "deployments=write",
    "repos/delete-deployment": "deployments=write",
    "repos/list-deployment-statuses": "deployments=read",
    "repos/create-deployment-status": "deployments=write",
    "issues/list-comments": "issues=read; pull_requests=read",
    "issues/create-comment": "issues=write; pull_requests=write",
    "issues/update-comment": "issues=write; pull_requests=write",
    "pulls/list": "pull_requests=read",
    "pulls/get": "pull_requests=read",
    "checks/create": "checks=write",
    "checks/update": "checks=write",
}

_LEVELS = {"read": 1, "write": 2, "admin": 3}


@dataclass(frozen=True)
class Recorded:
    """One request the stand-in answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any  # the JSON sent, the text when it was not JSON, None when there was none
    headers: dict[str, str]  # lower-case names
    status: int
    operation_id: str | None


@dataclass(frozen=True)
class Violation:
    """Something GitHub's description does not allow: kind is route, request, response or
    unimplemented (documented, but this stand-in cannot answer it)."""

    kind: str
    method: str
    path: str
    message: str


@dataclass
class Fault:
    """An answer forced on matching requests, `times` times (None: every time)."""

    method: str
    path_glob: str
    times: int | None
    respond: Callable[[Operation | None], tuple[int, dict[str, str], Any]]
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        left = self.times is None or self.hits < self.times
        return left and self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path_glob)


@dataclass(frozen=True)
class Token:
    """Who a token is and what it may do (permissions None: everything; repositories None: every
    repository; expires_at None: never, else a `time.time()` after which GitHub answers 401)."""

    login: str
    permissions: Mapping[str, str] | None = None
    repositories: frozenset[str] | None = None  # lower-case owner/name
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def sees(self, full_name: str) -> bool:
        return self.repositories is None or full_name.lower() in self.repositories

    def allows(self, accepted: str) -> bool:
        """Whether one of the `;`-separated permission sets is wholly granted."""
        if self.permissions is None:
            return True
        granted = {"metadata": "read", **self.permissions}
        for alternative in accepted.split(";"):
            needed = [p.strip().split("=") for p in alternative.split(",") if p.strip()]
            if all(_LEVELS.get(granted.get(n, ""), 0) >= _LEVELS[lvl] for n, lvl in needed):
                return True
        return False


@dataclass
class Pull:
    id: int
    number: int
    head_ref: str
    head_sha: str
    base_ref: str
    title: str
    body: str | None
    state: str
    draft: bool
    created_at: str


@dataclass
class Repo:
    """A repository the stand-in knows, and what was done to it."""

    owner: str
    name: str
    id: int
    default_branch: str
    refs: dict[str, str]  # branch or tag → commit SHA
    private: bool = True
    issues: set[int] = field(default_factory=set)  # issue numbers that are not pull requests
    pulls: dict[int, Pull] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # path → content (any ref)
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit → its files (git)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # SHA → oldest first
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)
    deployment_statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Installation:
    """One installation of a GitHub App: on some repositories (None: all), with permissions."""

    id: int
    app_id: int
    account: str  # the owner it is installed on
    repositories: frozenset[str] | None  # lower-case owner/name
    permissions: dict[str, str]


@dataclass
class App:
    """A GitHub App the stand-in knows: its JWTs are checked against `public_key`; tests sign
    with `private_key` (PEM), as the app's owner downloads it from GitHub."""

    id: int
    slug: str
    private_key: str = field(repr=False)
    public_key: Any = field(repr=False)  # cryptography's RSAPublicKey
    installations: dict[int, Installation] = field(default_factory=dict)

    @property
    def installation_id(self) -> int:
        """The first installation's id (most tests install an app once)."""
        return next(iter(self.installations))


class Answer(Exception):
    """An error answer in GitHub's shape: message, documentation_url, status (and errors)."""

    def __init__(self, status: int, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors
        self.headers: dict[str, str] = {}


@dataclass(frozen=True)
class Call:
    op: Operation
    path: str
    params: dict[str, str]
    query: dict[str, Any]
    body: Any
    token: Token
    repo: Repo


@dataclass(frozen=True)
class AppCall:
    """A request authenticated as a GitHub App (by its JWT), not by a token."""

    op: Operation
    path: str
    params: dict[str, str]
    query: dict[str, Any]
    body: Any
    app: App


Handler = Callable[[Call], tuple[int, Any, dict[str, str]]]
AppHandler = Callable[[AppCall], tuple[int, Any, dict[str, str]]]
