"""A stand-in for GitHub's REST API: a real HTTP server on loopback that routes, checks and answers
requests by GitHub's own OpenAPI description (`fixtures/github-rest/`), keeps what it was sent and
behaves like GitHub for the operations the project calls. Tests can make it fail on purpose.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import functools
import hashlib
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from jsonschema import Draft7Validator, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT7

DESCRIPTION = Path(__file__).parent / "fixtures" / "github-rest" / "openapi-subset.json"
DOCS = "https://docs.github.com/rest"
TOKEN = "ghs_standin"  # accepted by every stand-in, with every permission, unless told otherwise
REPO = "octo-org/app"  # the repository every stand-in knows unless told otherwise
BOT = "deploy-pipeline[bot]"

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

# "This resource is also available via a legacy route" (list-commit-statuses-for-ref's text);
# PyGithub's Commit.get_statuses() calls it.
LEGACY_ROUTES = {
    ("GET", "/repos/{owner}/{repo}/statuses/{sha}"): "repos/list-commit-statuses-for-ref"
}

_RATE_LIMITS = f"{DOCS}/using-the-rest-api/rate-limits-for-the-rest-api"
_URN = "urn:github-rest"
_DATA_KEYS = frozenset({"example", "examples", "default", "enum", "const"})
_SHA = re.compile(r"[0-9a-f]{40}")
_EXAMPLE_REPOS = ("octocat/Hello-World", "octocat/example", "octokit/octokit.rb")
_LEVELS = {"read": 1, "write": 2, "admin": 3}


# ── the description ──────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Operation:
    """One operation of the description, with the pattern its path template matches."""

    method: str
    template: str
    source: str  # the template under `paths` that documents it (differs for a legacy route)
    operation_id: str
    spec: dict[str, Any]
    parameters: tuple[dict[str, Any], ...]
    pattern: re.Pattern[str]
    literals: int  # characters outside the parameters: the more, the more specific the route

    @property
    def docs_url(self) -> str:
        return str(self.spec.get("externalDocs", {}).get("url", DOCS))


class Description:
    """GitHub's OpenAPI 3.0 description: routes, request and response checks, canned examples."""

    def __init__(self, path: Path = DESCRIPTION) -> None:
        self.raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        schemas = _translate_nullable(self.raw)
        self._registry: Registry[Any] = Registry().with_resource(
            _URN, DRAFT7.create_resource(schemas)
        )
        self._validators: dict[str, Draft7Validator] = {}
        self.operations: list[Operation] = []
        for template, item in self.raw["paths"].items():
            for method, spec in item.items():
                if method != "parameters":
                    self.operations.append(
                        self._operation(method.upper(), template, template, spec)
                    )
        by_id = {op.operation_id: op for op in self.operations}
        for (method, template), operation_id in LEGACY_ROUTES.items():
            real = by_id[operation_id]
            self.operations.append(self._operation(method, template, real.source, real.spec))
        self.operations.sort(key=lambda op: -op.literals)

    def _operation(
        self, method: str, template: str, source: str, spec: dict[str, Any]
    ) -> Operation:
        parameters = tuple(self.resolve(p) for p in spec.get("parameters", []))
        greedy = {p["name"] for p in parameters if p.get("x-multi-segment")}
        regex, literals = "", 0
        for piece in re.split(r"(\{[^}]+\})", template):
            if piece.startswith("{"):
                name = piece[1:-1]
                regex += f"(?P<{name}>.+)" if name in greedy else f"(?P<{name}>[^/]+)"
            else:
                regex += re.escape(piece)
                literals += len(piece)
        pattern = re.compile(regex)
        return Operation(
            method, template, source, spec["operationId"], spec, parameters, pattern, literals
        )

    def resolve(self, node: Any) -> Any:
        """Follow a local `$ref` (once per level) to what it names."""
        while isinstance(node, dict) and "$ref" in node:
            node = self._at(node["$ref"].removeprefix("#/").split("/"))
        return node

    def _at(self, parts: Iterable[str]) -> Any:
        node: Any = self.raw
        for part in parts:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def route(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for op in self.operations:
            match = op.pattern.fullmatch(path) if op.method == method else None
            if match:
                return op, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
        return None

    def example(self, name: str) -> Any:
        return copy.deepcopy(self.raw["components"]["examples"][name]["value"])

    def _validator(self, *pointer: str) -> Draft7Validator:
        ref = f"{_URN}#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in pointer)
        if ref not in self._validators:
            self._validators[ref] = Draft7Validator({"$ref": ref}, registry=self._registry)
        return self._validators[ref]

    def request_errors(self, op: Operation, body: Any) -> list[str]:
        """What GitHub would say is wrong with this body ([] when nothing is)."""
        request = op.spec.get("requestBody") or {}
        content = request.get("content", {}).get("application/json", {})
        if "schema" not in content or (body is None and not request.get("required")):
            return []  # repos/get-content documents a body with examples but no schema
        pointer = ("paths", op.source, op.method.lower(), "requestBody", "content")
        validator = self._validator(*pointer, "application/json", "schema")
        return _messages(validator.iter_errors(body))

    def query_errors(self, op: Operation, query: dict[str, Any]) -> list[str]:
        errors: list[str] = []
        for parameter in op.parameters:
            name = parameter["name"]
            if parameter["in"] == "query" and name in query:
                schema = _translate_nullable(parameter.get("schema", {}))
                for e in Draft7Validator(schema).iter_errors(query[name]):
                    errors.append(_message(e, where=f"query/{name}"))
        return errors

    def response_errors(self, op: Operation, status: int, body: Any) -> list[str]:
        """How this answer strays from what the description documents ([] when it doesn't)."""
        response = op.spec["responses"].get(str(status))
        pointer: tuple[str, ...]
        if response is not None:
            if "$ref" in response:
                pointer = tuple(response["$ref"].removeprefix("#/").split("/"))
            else:
                pointer = ("paths", op.source, op.method.lower(), "responses", str(status))
            if "schema" not in self.resolve(response).get("content", {}).get(
                "application/json", {}
            ):
                return []  # documented without a JSON body (a 204, create-deployment's 409)
            pointer = (*pointer, "content", "application/json", "schema")
        elif status >= 400:
            pointer = ("components", "schemas", "basic-error")
        else:
            return [f"{status} is not a documented answer of {op.operation_id}"]
        errors = self._validator(*pointer).iter_errors(body)
        return [f"{_where(e.absolute_path)}: {e.message}" for e in errors]


@functools.cache
def description() -> Description:
    """The description, parsed once per test session."""
    return Description()


def _translate_nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema: null joins the types (and the enum)."""
    if isinstance(node, list):
        return [_translate_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):  # names here are not keywords
            out[key] = {name: _translate_nullable(schema) for name, schema in value.items()}
        else:
            out[key] = value if key in _DATA_KEYS else _translate_nullable(value)
    if out.pop("nullable", False) is not True:
        return out
    if "type" in out and "$ref" not in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [out, {"type": "null"}]}


def _where(path: Iterable[Any]) -> str:
    parts = [f"properties/{p}" if isinstance(p, str) else f"items/{p}" for p in path]
    return "/".join(parts) or "links/0/schema"  # GitHub's name for the whole body


def _show(value: Any) -> str:
    return "nil" if value is None else json.dumps(value)


def _messages(errors: Iterable[ValidationError]) -> list[str]:
    """Schema errors worded the way GitHub words them ("Invalid request.\\n\\n…")."""
    out: list[str] = []
    for e in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        if e.validator == "oneOf" and isinstance(e.schema, dict) and "discriminator" in e.schema:
            out.extend(_discriminated(e))
        else:
            out.append(_message(e))
    return out


def _discriminated(e: ValidationError) -> list[str]:
    """A oneOf with a discriminator: report the errors of the branch the discriminator picks."""
    prop = e.schema["discriminator"]["propertyName"]
    value = e.instance.get(prop) if isinstance(e.instance, dict) else None
    branches = e.schema["oneOf"]
    allowed = [v for b in branches for v in b.get("properties", {}).get(prop, {}).get("enum", [])]
    for index, branch in enumerate(branches):
        if value in branch.get("properties", {}).get(prop, {}).get("enum", []):
            picked = [c for c in e.context or [] if c.relative_schema_path[0] == index]
            return [_message(c) for c in picked] or [_message(e)]
    where = f"{_where(e.absolute_path)}/" if e.absolute_path else ""
    return [f"For '{where}properties/{prop}', {_show(value)} is not a member of {_show(allowed)}."]


def _message(e: ValidationError, where: str | None = None) -> str:
    where = where or _where(e.absolute_path)
    if e.validator == "required" and isinstance(e.instance, dict):
        missing = [name for name in e.validator_value if name not in e.instance]
        said = " ".join(f'"{name}" wasn\'t supplied.' for name in missing)
        return f"For '{where}', {said}" if e.absolute_path else said
    if e.validator == "enum":
        return f"For '{where}', {_show(e.instance)} is not a member of {_show(e.validator_value)}."
    if e.validator == "type":
        types = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        named = " or ".join(f"{'an' if t[0] in 'aeiou' else 'a'} {t}" for t in types)
        return f"For '{where}', {_show(e.instance)} is not {named}."
    return f"For '{where}', {e.message}."


# ── what the stand-in keeps ──────────────────────────────────────────────────────────────────


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
    """Who a token is and what it may do (permissions None: everything)."""

    login: str
    permissions: Mapping[str, str] | None = None

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
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # SHA → oldest first
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)
    deployment_statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


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


Handler = Callable[[Call], tuple[int, Any, dict[str, str]]]


# ── the server ───────────────────────────────────────────────────────────────────────────────


class GitHubStandin:
    """GitHub's REST API on 127.0.0.1 for one test. Use it as a context manager.

    GitHub's behaviour it keeps, as the description's texts state it: a new deployment status
    `success` (with `auto_inactive`, default true) adds `inactive` to prior non-transient,
    non-production deployments of the same environment whose latest state was `success`; a
    deployment can be deleted when it is the repository's only one or its latest state is not
    `success`; `log_url` and `target_url` of a deployment status mirror each other; a status
    without `environment` keeps the previous status's (else the deployment's). Not modelled:
    `auto_merge` (the stand-in has no git history) and commits (any 40-hex SHA exists).
    """

    def __init__(self, repos: Iterable[str] = (REPO,), tokens: Iterable[str] = (TOKEN,)) -> None:
        self.description = description()
        self.requests: list[Recorded] = []
        self.violations: list[Violation] = []
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, Token] = {}
        self._faults: list[Fault] = []
        self._ids: defaultdict[str, Iterator[int]] = defaultdict(lambda: itertools.count(1))
        self._users: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Handler] = {
            "repos/get": self._get_repo,
            "repos/get-commit": self._get_commit,
            "repos/get-content": self._get_content,
            "repos/create-commit-status": self._create_status,
            "repos/list-commit-statuses-for-ref": self._list_statuses,
            "repos/get-combined-status-for-ref": self._combined_status,
            "repos/create-deployment": self._create_deployment,
            "repos/list-deployments": self._list_deployments,
            "repos/get-deployment": self._get_deployment,
            "repos/delete-deployment": self._delete_deployment,
            "repos/create-deployment-status": self._create_deployment_status,
            "repos/list-deployment-statuses": self._list_deployment_statuses,
            "issues/create-comment": self._create_comment,
            "issues/list-comments": self._list_comments,
            "issues/update-comment": self._update_comment,
            "pulls/get": self._get_pull,
            "pulls/list": self._list_pulls,
        }
        for name in repos:
            self.add_repo(name)
        for token in tokens:
            self.add_token(token)

    # configuration

    def add_repo(
        self,
        full_name: str,
        *,
        default_branch: str = "main",
        refs: Mapping[str, str] | None = None,
        private: bool = True,
    ) -> Repo:
        """Make a repository known; its branches point at made-up SHAs unless `refs` says."""
        owner, _, name = full_name.partition("/")
        refs = dict(refs or {default_branch: _made_up_sha(full_name, default_branch)})
        repo = Repo(owner, name, next(self._ids["repo"]), default_branch, refs, private)
        self.repos[full_name.lower()] = repo
        return repo

    def add_token(
        self, token: str, *, login: str = BOT, permissions: Mapping[str, str] | None = None
    ) -> Token:
        """Accept `token`; with `permissions` (e.g. {"deployments": "write"}) only those."""
        self.tokens[token] = Token(login, permissions)
        return self.tokens[token]

    def add_pull(
        self,
        head_ref: str,
        *,
        repo: str | None = None,
        head_sha: str | None = None,
        base_ref: str | None = None,
        title: str = "A change",
        body: str | None = None,
        state: str = "open",
        draft: bool = False,
    ) -> int:
        """Open a pull request from `head_ref` (made known as a branch) and return its number."""
        r = self.repo(repo)
        head_sha = head_sha or r.refs.get(head_ref) or _made_up_sha(r.full_name, head_ref)
        r.refs.setdefault(head_ref, head_sha)
        number = next(r.numbers)
        base = base_ref or r.default_branch
        pid = next(self._ids["pull"])
        r.pulls[number] = Pull(
            pid, number, head_ref, head_sha, base, title, body, state, draft, _now()
        )
        return number

    def add_issue(self, *, repo: str | None = None) -> int:
        """Open an issue and return its number."""
        r = self.repo(repo)
        number = next(r.numbers)
        r.issues.add(number)
        return number

    def add_file(self, path: str, content: str | bytes, *, repo: str | None = None) -> None:
        """Put a file in the repository (at every ref)."""
        data = content.encode() if isinstance(content, str) else content
        self.repo(repo).files[path.strip("/")] = data

    # faults

    def fail(
        self,
        method: str,
        path_glob: str,
        status: int,
        *,
        times: int | None = 1,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer matching requests (method or "*", fnmatch glob on the path) with `status`."""
        default = {
            "message": HTTPStatus(status).phrase,
            "documentation_url": DOCS,
            "status": str(status),
        }
        answer = (status, dict(headers or {}), default if body is None else body)
        return self._fault(method, path_glob, times, lambda op: answer)

    def deny(self, method: str, path_glob: str, *, times: int | None = None) -> Fault:
        """Answer as GitHub does when the token lacks the operation's permission."""
        return self._fault(method, path_glob, times, _forbidden)

    def rate_limit(
        self,
        method: str = "*",
        path_glob: str = "*",
        *,
        secondary: bool = False,
        times: int | None = 1,
        retry_after: int = 1,
        reset_in: int = 1,
        status: int = 403,
    ) -> Fault:
        """Answer as GitHub's primary rate limit (X-RateLimit-Remaining: 0 until the reset) or
        its secondary one (Retry-After seconds) does."""
        if secondary:
            message = (
                "You have exceeded a secondary rate limit. "
                "Please wait a few minutes before you try again."
            )
            url = f"{_RATE_LIMITS}#about-secondary-rate-limits"
            headers = {"Retry-After": str(retry_after)}
        else:
            message = "API rate limit exceeded for installation ID 1."
            url = _RATE_LIMITS
            reset = str(int(time.time()) + reset_in)
            headers = {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Used": "5000",
                "X-RateLimit-Reset": reset,
                "X-RateLimit-Resource": "core",
            }
        body = {"message": message, "documentation_url": url, "status": str(status)}
        return self._fault(method, path_glob, times, lambda op: (status, dict(headers), body))

    def _fault(
        self,
        method: str,
        glob: str,
        times: int | None,
        respond: Callable[[Operation | None], tuple[int, dict[str, str], Any]],
    ) -> Fault:
        fault = Fault(method.upper(), glob, times, respond)
        with self._lock:
            self._faults.append(fault)
        return fault

    # views (copies, oldest first)

    def repo(self, full_name: str | None = None) -> Repo:
        return self.repos[(full_name or next(iter(self.repos.values())).full_name).lower()]

    def statuses(self, sha: str, repo: str | None = None) -> list[dict[str, Any]]:
        return copy.deepcopy(self.repo(repo).statuses.get(sha, []))

    def deployments(self, repo: str | None = None) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self.repo(repo).deployments.values()))

    def deployment_statuses(
        self, deployment_id: int, repo: str | None = None
    ) -> list[dict[str, Any]]:
        return copy.deepcopy(self.repo(repo).deployment_statuses.get(deployment_id, []))

    def comments(self, issue_number: int, repo: str | None = None) -> list[dict[str, Any]]:
        found = self.repo(repo).comments.values()
        return copy.deepcopy(
            [c for c in found if c["issue_url"].endswith(f"/issues/{issue_number}")]
        )

    # lifecycle

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the GitHub stand-in is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> GitHubStandin:
        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.standin = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="github-standin"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the request threads
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> GitHubStandin:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # answering

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """Answer one request: (status, headers, JSON body or None)."""
        split = urllib.parse.urlsplit(target)
        path, query = split.path, urllib.parse.parse_qs(split.query, keep_blank_values=True)
        body: Any = None
        malformed = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body, malformed = raw.decode(errors="replace"), True
        with self._lock:
            routed = self.description.route(method, path)
            op = routed[0] if routed else None
            status, out, payload = self._answer(
                method, path, query, headers, body, malformed, routed
            )
            out = {**self._common_headers(op), **out}
            self.requests.append(
                Recorded(
                    method, path, query, body, headers, status, op.operation_id if op else None
                )
            )
        return status, out, payload

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
        malformed: bool,
        routed: tuple[Operation, dict[str, str]] | None,
    ) -> tuple[int, dict[str, str], Any]:
        op = routed[0] if routed else None
        for fault in self._faults:
            if fault.matches(method, path):
                fault.hits += 1
                return fault.respond(op)
        try:
            if routed is None:
                self._violate(
                    "route", method, path, f"{method} {path} is not in GitHub's description"
                )
                raise Answer(404, "Not Found")
            status, payload, out = self._dispatch(
                method, path, query, headers, body, malformed, *routed
            )
        except Answer as answer:
            status, out = answer.status, answer.headers
            payload = {
                "message": answer.message,
                "documentation_url": op.docs_url if op else DOCS,
                "status": str(status),
            }
            if answer.errors is not None:
                payload["errors"] = answer.errors
        if op is not None:
            problems = self.description.response_errors(op, status, payload)
            if problems:
                message = (
                    f"the stand-in's {status} answer strays from the description: {problems[:3]}"
                )
                self._violate("response", method, path, message)
                return 500, {}, {"message": message, "documentation_url": DOCS, "status": "500"}
        return status, out, payload

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
        malformed: bool,
        op: Operation,
        params: dict[str, str],
    ) -> tuple[int, Any, dict[str, str]]:
        handler = self._handlers.get(op.operation_id)
        if handler is None and "owner" not in params:  # the App endpoints, authenticated by JWT
            raise self._unimplemented(method, path, op)
        token = self._authenticate(headers.get("authorization", ""))
        repo = self.repos.get(f"{params['owner']}/{params['repo']}".lower())
        if repo is None:
            raise Answer(404, "Not Found")
        accepted = PERMISSIONS.get(op.operation_id)
        if accepted and not token.allows(accepted):
            raise _forbidden_answer(accepted)
        for parameter in op.parameters:
            value = params.get(parameter["name"], "0")
            if parameter["schema"].get("type") == "integer" and not value.isdigit():
                self._violate("request", method, path, f"{parameter['name']} {value!r} is no id")
                raise Answer(404, "Not Found")  # GitHub's router would not have matched
        if malformed:
            self._violate("request", method, path, f"{op.operation_id}: the body is not JSON")
            raise Answer(400, "Problems parsing JSON")
        coerced = _coerce_query(op, query)
        problems = self.description.query_errors(op, coerced)
        problems += self.description.request_errors(op, body)
        if problems:
            self._violate("request", method, path, f"{op.operation_id}: {' '.join(problems)}")
            raise Answer(422, "Invalid request.\n\n" + "\n".join(problems))
        if handler is None:
            raise self._unimplemented(method, path, op)
        return handler(Call(op, path, params, coerced, body, token, repo))

    def _unimplemented(self, method: str, path: str, op: Operation) -> Answer:
        self._violate("unimplemented", method, path, f"the stand-in lacks {op.operation_id}")
        return Answer(501, f"The GitHub stand-in does not implement {op.operation_id}")

    def _authenticate(self, authorization: str) -> Token:
        if not authorization:
            raise Answer(401, "Requires authentication")
        scheme, _, secret = authorization.partition(" ")
        token = self.tokens.get(secret.strip()) if scheme.lower() in ("token", "bearer") else None
        if token is None:
            raise Answer(401, "Bad credentials")
        return token

    def _violate(self, kind: str, method: str, path: str, message: str) -> None:
        self.violations.append(Violation(kind, method, path, message))

    def _common_headers(self, op: Operation | None) -> dict[str, str]:
        used = len(self.requests) + 1
        headers = {
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Request-Id": f"STANDIN:{used}",
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(max(5000 - used, 0)),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        }
        if op is not None and op.operation_id in PERMISSIONS:
            headers["X-Accepted-GitHub-Permissions"] = PERMISSIONS[op.operation_id]
        return headers

    # rendering from the description's examples

    def _example(self, name: str, repo: Repo | None, swap: Mapping[str, str] | None = None) -> Any:
        """An example with its URLs on this server, its repository `repo` and `swap` applied."""
        swaps = {"https://api.github.com": self.base_url, "http://api.github.com": self.base_url}
        swaps |= dict.fromkeys(_EXAMPLE_REPOS, repo.full_name) if repo else {}
        text = json.dumps(self.description.example(name))
        for old, new in (swaps | dict(swap or {})).items():
            text = text.replace(old, new)
        return json.loads(text)

    def _user(self, login: str, kind: str = "Bot") -> dict[str, Any]:
        user: dict[str, Any] = self._example("status", None)["creator"]
        user = json.loads(json.dumps(user).replace("octocat", login))
        uid = self._users.setdefault(login, 1000 + next(self._ids["user"]))
        user.update(id=uid, node_id=_node_id("User", uid), type=kind, site_admin=False)
        return user

    def _api(self, repo: Repo, rest: str = "") -> str:
        return f"{self.base_url}/repos/{repo.full_name}{rest}"

    def _repository(self, repo: Repo, example: dict[str, Any]) -> dict[str, Any]:
        example.update(
            id=repo.id,
            node_id=_node_id("Repository", repo.id),
            name=repo.name,
            full_name=repo.full_name,
            owner=self._user(repo.owner, "Organization"),
            private=repo.private,
            html_url=f"https://github.com/{repo.full_name}",
            url=self._api(repo),
        )
        return example

    # operations

    def _get_repo(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo = call.repo
        out = self._repository(repo, self._example("full-repository-default-response", repo))
        for fork_only in ("parent", "source", "template_repository"):
            out.pop(fork_only, None)
        out.update(
            default_branch=repo.default_branch,
            fork=False,
            language=None,
            visibility="private" if repo.private else "public",
        )
        return 200, out, {}

    def _get_commit(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        sha = _resolve(call.repo, call.params["ref"])
        if sha is None:
            raise Answer(422, f"No commit found for SHA: {call.params['ref']}")
        example_sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
        out = self._example("commit", call.repo, {example_sha: sha})
        out.update(node_id=_node_id("Commit", sha), files=[])  # the example's files lack sha
        return 200, out, {}

    def _get_content(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, path = call.repo, call.params["path"].strip("/")
        ref = call.query.get("ref") or repo.default_branch
        if _resolve(repo, ref) is None:
            raise Answer(404, f"No commit found for the ref {ref}")
        if path in repo.files:
            return 200, self._content(repo, path, ref, with_content=True), {}
        inside = sorted(
            {p[len(path) + 1 :].split("/")[0] for p in repo.files if p.startswith(f"{path}/")}
        )
        if not inside:
            raise Answer(404, "Not Found")
        return (
            200,
            [self._content(repo, f"{path}/{name}", ref, with_content=False) for name in inside],
            {},
        )

    def _content(self, repo: Repo, path: str, ref: str, *, with_content: bool) -> dict[str, Any]:
        is_file = path in repo.files
        kind = "blob" if is_file else "tree"
        data = repo.files.get(path, b"")
        sha = _made_up_sha(repo.full_name, path, data.decode(errors="replace"))
        entry: dict[str, Any] = {
            "type": "file" if is_file else "dir",
            "size": len(data),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": self._api(repo, f"/contents/{path}?ref={ref}"),
            "git_url": self._api(repo, f"/git/{'blobs' if is_file else 'trees'}/{sha}"),
            "html_url": f"https://github.com/{repo.full_name}/{kind}/{ref}/{path}",
            "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{path}"
            if is_file
            else None,
        }
        entry["_links"] = {"self": entry["url"], "git": entry["git_url"], "html": entry["html_url"]}
        if with_content:
            encoded = base64.b64encode(data).decode()
            lines = [encoded[i : i + 60] for i in range(0, len(encoded), 60)]  # GitHub wraps at 60
            entry.update(content="\n".join(lines) + "\n", encoding="base64")
        return entry

    def _create_status(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, sha, body = call.repo, call.params["sha"], call.body
        if not _SHA.fullmatch(sha):
            raise Answer(422, f"No commit found for SHA: {sha}")
        context = body.get("context", "default")
        same = [s for s in repo.statuses.get(sha, []) if s["context"].lower() == context.lower()]
        if len(same) >= 1000:
            error = {
                "resource": "Status",
                "code": "custom",
                "field": "context",
                "message": "This SHA and context has reached the maximum number of statuses.",
            }
            raise Answer(422, "Validation Failed", [error])
        sid, now, creator = next(self._ids["status"]), _now(), self._user(call.token.login)
        out = self._example("status", repo)
        out.update(
            url=self._api(repo, f"/statuses/{sha}"),
            avatar_url=creator["avatar_url"],
            id=sid,
            node_id=_node_id("StatusContext", sid),
            state=body["state"],
            description=body.get("description"),
            target_url=body.get("target_url"),
            context=context,
            created_at=now,
            updated_at=now,
            creator=creator,
        )
        repo.statuses.setdefault(sha, []).append(out)
        return 201, out, {"Location": out["url"]}

    def _list_statuses(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        sha = _resolve(call.repo, call.params.get("ref") or call.params["sha"])
        found = call.repo.statuses.get(sha or "", [])
        return self._page(call, list(reversed(found)))  # newest first, as GitHub lists them

    def _combined_status(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo = call.repo
        sha = _resolve(repo, call.params["ref"])
        if sha is None:
            raise Answer(404, f"No commit found for SHA: {call.params['ref']}")
        latest = _latest_by_context(repo, sha)
        states = {s["state"] for s in latest.values()}
        if states & {"error", "failure"}:
            state = "failure"
        elif not latest or "pending" in states:
            state = "pending"
        else:
            state = "success"
        simple = [{k: v for k, v in s.items() if k != "creator"} for s in latest.values()]
        per_page, page = _paging(call)
        example = self._example("combined-commit-status", repo)
        out = {
            "state": state,
            "statuses": simple[(page - 1) * per_page : page * per_page],
            "sha": sha,
            "total_count": len(simple),
            "repository": self._repository(repo, example["repository"]),
            "commit_url": self._api(repo, f"/commits/{sha}"),
            "url": self._api(repo, f"/commits/{sha}/status"),
        }
        return 200, out, {}

    def _create_deployment(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, body = call.repo, call.body
        ref = body["ref"]
        sha = _resolve(repo, ref)
        if sha is None:
            raise Answer(422, f"No ref found for: {ref}")
        latest = _latest_by_context(repo, sha)
        required = (
            latest.keys()
            if body.get("required_contexts") is None
            else [c.lower() for c in body["required_contexts"]]
        )
        failing = [c for c in required if c not in latest or latest[c]["state"] != "success"]
        if failing:
            contexts = [
                {"context": c, "state": latest[c]["state"] if c in latest else "missing"}
                for c in failing
            ]
            error = {
                "contexts": contexts,
                "resource": "Deployment",
                "field": "required_contexts",
                "code": "invalid",
            }
            raise Answer(409, f"Conflict: Commit status checks failed for {ref}.", [error])
        did, now = next(self._ids["deployment"]), _now()
        environment = body.get("environment", "production")
        out = self._example("deployment", repo)
        out.update(
            url=self._api(repo, f"/deployments/{did}"),
            id=did,
            node_id=_node_id("Deployment", did),
            sha=sha,
            ref=ref,
            task=body.get("task", "deploy"),
            payload=body.get("payload", {}),
            original_environment=environment,
            environment=environment,
            description=body.get("description", ""),
            creator=self._user(call.token.login),
            created_at=now,
            updated_at=now,
            statuses_url=self._api(repo, f"/deployments/{did}/statuses"),
            repository_url=self._api(repo),
            transient_environment=body.get("transient_environment", False),
            production_environment=body.get("production_environment", environment == "production"),
        )
        repo.deployments[did] = out
        return 201, out, {}

    def _list_deployments(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        found = list(reversed(call.repo.deployments.values()))  # newest first
        for name in ("sha", "ref", "task", "environment"):
            if name in call.query:
                found = [d for d in found if d[name] == call.query[name]]
        return self._page(call, found)

    def _deployment(self, call: Call) -> dict[str, Any]:
        found = call.repo.deployments.get(int(call.params["deployment_id"]))
        if found is None:
            raise Answer(404, "Not Found")
        return found

    def _get_deployment(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        return 200, self._deployment(call), {}

    def _delete_deployment(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, deployment = call.repo, self._deployment(call)
        if len(repo.deployments) > 1 and _active(repo, deployment["id"]):
            raise Answer(422, _ACTIVE)
        del repo.deployments[deployment["id"]]
        repo.deployment_statuses.pop(deployment["id"], None)
        return 204, None, {}

    def _create_deployment_status(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, body, deployment = call.repo, call.body, self._deployment(call)
        description = body.get("description", "")
        if len(description) > 140:
            error = {
                "resource": "DeploymentStatus",
                "code": "custom",
                "field": "description",
                "message": "description is too long (maximum is 140 characters)",
            }
            raise Answer(422, "Validation Failed", [error])
        earlier = repo.deployment_statuses.get(deployment["id"], [])
        environment = body.get("environment") or (
            earlier[-1]["environment"] if earlier else deployment["environment"]
        )
        log_url = body.get("log_url") or body.get("target_url") or ""
        out = self._deployment_status(
            call,
            deployment,
            body["state"],
            description,
            environment,
            log_url,
            body.get("environment_url", ""),
        )
        if body["state"] == "success" and body.get("auto_inactive", True):
            for other in list(repo.deployments.values()):
                prior = other["id"] < deployment["id"] and other["environment"] == environment
                lasting = not other["transient_environment"] and not other["production_environment"]
                if prior and lasting and _active(repo, other["id"]):
                    self._deployment_status(call, other, "inactive", "", environment, "", "")
        return 201, out, {"Location": out["url"]}

    def _deployment_status(
        self,
        call: Call,
        deployment: dict[str, Any],
        state: str,
        description: str,
        environment: str,
        log_url: str,
        environment_url: str,
    ) -> dict[str, Any]:
        repo, sid, now = call.repo, next(self._ids["deployment_status"]), _now()
        out: dict[str, Any] = self._example("deployment-status", repo)
        out.update(
            url=f"{deployment['url']}/statuses/{sid}",
            id=sid,
            node_id=_node_id("DeploymentStatus", sid),
            state=state,
            creator=self._user(call.token.login),
            description=description,
            environment=environment,
            target_url=log_url,
            log_url=log_url,
            environment_url=environment_url,
            created_at=now,
            updated_at=now,
            deployment_url=deployment["url"],
            repository_url=self._api(repo),
        )
        repo.deployment_statuses.setdefault(deployment["id"], []).append(out)
        deployment.update(environment=environment, updated_at=now)
        return out

    def _list_deployment_statuses(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        deployment = self._deployment(call)
        found = call.repo.deployment_statuses.get(deployment["id"], [])
        return self._page(call, list(reversed(found)))  # newest first

    def _issue(self, call: Call) -> int:
        number = int(call.params["issue_number"])
        if number not in call.repo.issues and number not in call.repo.pulls:
            raise Answer(404, "Not Found")
        return number

    def _create_comment(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, number = call.repo, self._issue(call)
        cid, now = next(self._ids["comment"]), _now()
        kind = "pull" if number in repo.pulls else "issues"
        out = self._example("issue-comment", repo)
        out.update(
            id=cid,
            node_id=_node_id("IssueComment", cid),
            url=self._api(repo, f"/issues/comments/{cid}"),
            html_url=f"https://github.com/{repo.full_name}/{kind}/{number}#issuecomment-{cid}",
            body=call.body["body"],
            user=self._user(call.token.login),
            created_at=now,
            updated_at=now,
            issue_url=self._api(repo, f"/issues/{number}"),
            author_association="NONE",
        )
        repo.comments[cid] = out
        return 201, out, {"Location": out["url"]}

    def _list_comments(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        number = self._issue(call)
        suffix = f"/issues/{number}"
        found = [c for c in call.repo.comments.values() if c["issue_url"].endswith(suffix)]
        if "since" in call.query:
            found = [c for c in found if c["updated_at"] >= call.query["since"]]
        return self._page(call, found)  # ascending id

    def _update_comment(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        found = call.repo.comments.get(int(call.params["comment_id"]))
        if found is None:
            raise Answer(404, "Not Found")
        found.update(body=call.body["body"], updated_at=_now())
        return 200, found, {}

    def _pull(self, repo: Repo, pull: Pull, example: str) -> dict[str, Any]:
        old_sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
        found = self._example(example, repo, {"/1347": f"/{pull.number}", old_sha: pull.head_sha})
        out: dict[str, Any] = found[0] if isinstance(found, list) else found
        base_sha = repo.refs.get(pull.base_ref) or _made_up_sha(repo.full_name, pull.base_ref)
        for side, ref, sha in (
            ("head", pull.head_ref, pull.head_sha),
            ("base", pull.base_ref, base_sha),
        ):
            part = out[side]
            part.update(
                label=f"{repo.owner}:{ref}",
                ref=ref,
                sha=sha,
                user=self._user(repo.owner, "Organization"),
            )
            part["repo"] = self._repository(repo, part["repo"])
        out.update(
            id=pull.id,
            node_id=_node_id("PullRequest", pull.id),
            number=pull.number,
            state=pull.state,
            title=pull.title,
            body=pull.body,
            user=self._user("octocat", "User"),
            labels=[],
            milestone=None,
            assignee=None,
            assignees=[],
            requested_reviewers=[],
            requested_teams=[],
            draft=pull.draft,
            created_at=pull.created_at,
            updated_at=pull.created_at,
            closed_at=None,
            merged_at=None,
            merge_commit_sha=None,
            auto_merge=None,
        )
        if "merged" in out:
            out.update(merged=False, merged_by=None, mergeable=True, mergeable_state="clean")
        return out

    def _get_pull(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        pull = call.repo.pulls.get(int(call.params["pull_number"]))
        if pull is None:
            raise Answer(404, "Not Found")
        return 200, self._pull(call.repo, pull, "pull-request"), {}

    def _list_pulls(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, query = call.repo, call.query
        found = [p for p in repo.pulls.values() if query.get("state", "open") in ("all", p.state)]
        if "head" in query:
            found = [p for p in found if f"{repo.owner}:{p.head_ref}" == query["head"]]
        if "base" in query:
            found = [p for p in found if p.base_ref == query["base"]]
        if query.get("direction", "desc") == "desc":
            found.reverse()
        return self._page(call, [self._pull(repo, p, "pull-request-simple-items") for p in found])

    def _page(self, call: Call, items: list[Any]) -> tuple[int, Any, dict[str, str]]:
        """One page of a list, with GitHub's Link header when there are more."""
        per_page, page = _paging(call)
        last = max((len(items) + per_page - 1) // per_page, 1)
        headers = {}
        if last > 1:
            others = {k: v for k, v in call.query.items() if k not in ("page", "per_page")}

            def link(number: int, rel: str) -> str:
                query = urllib.parse.urlencode({**others, "per_page": per_page, "page": number})
                return f'<{self.base_url}{call.path}?{query}>; rel="{rel}"'

            links = [link(page - 1, "prev"), link(1, "first")] if page > 1 else []
            links += [link(page + 1, "next"), link(last, "last")] if page < last else []
            headers["Link"] = ", ".join(links)
        return 200, items[(page - 1) * per_page : page * per_page], headers


_ACTIVE = (  # GitHub's words, though its description says "the repository's only deployment"
    "We cannot delete an active deployment unless it is the only deployment in a given environment."
)


def _forbidden_answer(accepted: str) -> Answer:
    answer = Answer(403, "Resource not accessible by integration")
    answer.headers["X-Accepted-GitHub-Permissions"] = accepted
    return answer


def _forbidden(op: Operation | None) -> tuple[int, dict[str, str], Any]:
    accepted = PERMISSIONS.get(op.operation_id, "") if op else ""
    body = {
        "message": "Resource not accessible by integration",
        "documentation_url": op.docs_url if op else DOCS,
        "status": "403",
    }
    return 403, {"X-Accepted-GitHub-Permissions": accepted}, body


def _coerce_query(op: Operation, query: dict[str, list[str]]) -> dict[str, Any]:
    """The query's documented parameters, as the types the description gives them."""
    out: dict[str, Any] = {}
    for parameter in op.parameters:
        name = parameter["name"]
        if parameter["in"] != "query" or name not in query:
            continue
        value: Any = query[name][-1]
        kind = parameter.get("schema", {}).get("type")
        if kind == "integer" and re.fullmatch(r"-?\d+", value):
            value = int(value)
        elif kind == "boolean" and value in ("true", "false"):
            value = value == "true"
        out[name] = value
    return out


def _paging(call: Call) -> tuple[int, int]:
    return min(max(call.query.get("per_page", 30), 1), 100), max(call.query.get("page", 1), 1)


def _resolve(repo: Repo, ref: str) -> str | None:
    """The commit a SHA, branch or tag (also as heads/…, tags/…, refs/…) names."""
    if _SHA.fullmatch(ref):
        return ref
    name = ref.removeprefix("refs/").removeprefix("heads/").removeprefix("tags/")
    return repo.refs.get(name)


def _latest_by_context(repo: Repo, sha: str) -> dict[str, dict[str, Any]]:
    """Each context's latest status (contexts are case-insensitive)."""
    latest: dict[str, dict[str, Any]] = {}
    for status in repo.statuses.get(sha, []):
        latest[status["context"].lower()] = status
    return latest


def _active(repo: Repo, deployment_id: int) -> bool:
    """A deployment is active while its latest status is `success`."""
    found = repo.deployment_statuses.get(deployment_id)
    return bool(found) and found[-1]["state"] == "success"  # type: ignore[index]


def _made_up_sha(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode(), usedforsecurity=False).hexdigest()


def _node_id(kind: str, key: object) -> str:
    return base64.b64encode(f"{len(kind):02d}:{kind}{key}".encode()).decode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the request threads: nothing outlives stop()
    standin: GitHubStandin


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that connects and says nothing cannot hold stop() forever
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out, payload = self.server.standin.handle(self.command, self.path, headers, raw)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in out.items():
            self.send_header(name, value)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")  # one request per connection: nothing lingers
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stand-in keeps its own log in `requests`."""
