"""The GitHub stand-in: `GitHubStandin`, what a test makes known to it and reads back from it, and
the threaded HTTP server on loopback that serves it for the length of a `with` block.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.github_standin.answering import Answering
from tests.support.github_standin.apps import Apps
from tests.support.github_standin.description import description
from tests.support.github_standin.faults import Faults
from tests.support.github_standin.gitserver import GIT_PATH, GitServer
from tests.support.github_standin.handlers import Handlers
from tests.support.github_standin.rendering import _made_up_sha, _now
from tests.support.github_standin.state import (
    App,
    AppHandler,
    Fault,
    Handler,
    Pull,
    Recorded,
    Repo,
    Token,
    Violation,
)

TOKEN = "ghs_standin"  # accepted by every stand-in, with every permission, unless told otherwise
REPO = "octo-org/app"  # the repository every stand-in knows unless told otherwise
BOT = "deploy-pipeline[bot]"


class GitHubStandin(Answering, Faults, Handlers, Apps, GitServer):
    """GitHub's REST API on 127.0.0.1 for one test. Use it as a context manager.

    GitHub's behaviour it keeps, as the description's texts state it: a new deployment status
    `success` (with `auto_inactive`, default true) adds `inactive` to prior non-transient,
    non-production deployments of the same environment whose latest state was `success`; a
    deployment can be deleted when it is the repository's only one or its latest state is not
    `success`; `log_url` and `target_url` of a deployment status mirror each other; a status
    without `environment` keeps the previous status's (else the deployment's). Not modelled:
    `auto_merge`, and commits outside `add_repository_files` (any 40-hex SHA exists).

    GitHub Apps (`add_app`): the app's JWT is verified, installation tokens expire after
    `token_lifetime` seconds and carry the installation's permissions and repositories. Git over
    HTTP: `add_repository_files` commits into a real bare repository, which `clone_url` serves
    through `git http-backend` to Basic auth `x-access-token:<token>`; `git_requests` keeps what
    git sent.
    """

    def __init__(self, repos: Iterable[str] = (REPO,), tokens: Iterable[str] = (TOKEN,)) -> None:
        self.description = description()
        self.requests: list[Recorded] = []
        self.violations: list[Violation] = []
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, Token] = {}
        self.apps: dict[int, App] = {}
        self.token_lifetime = 3600.0
        self.git_requests: list[Recorded] = []
        self._git_root: Path | None = None
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
        self._app_handlers: dict[str, AppHandler] = {
            "apps/get-repo-installation": self._get_repo_installation,
            "apps/create-installation-access-token": self._create_installation_token,
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

    def start(self, port: int = 0) -> GitHubStandin:
        self._server = _Server(("127.0.0.1", port), _RequestHandler)
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
        self._remove_git_root()

    def __enter__(self) -> GitHubStandin:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the request threads: nothing outlives stop()
    standin: GitHubStandin


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that connects and says nothing cannot hold stop() forever
    server: _Server

    def _serve(self) -> None:
        raw = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        if GIT_PATH.fullmatch(self.path.partition("?")[0]):  # git, not the REST API
            status, out, data = self.server.standin.serve_git(self.command, self.path, headers, raw)
        else:
            status, out, payload = self.server.standin.handle(self.command, self.path, headers, raw)
            data = b"" if payload is None else json.dumps(payload).encode()
            if payload is not None:
                out = {**out, "Content-Type": "application/json; charset=utf-8"}
        self.send_response(status)
        for name, value in out.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")  # one request per connection: nothing lingers
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _body(self) -> bytes:
        """The request's body, also when it comes in chunks (git sends large ones so)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(chunks)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stand-in keeps its own log in `requests`."""
