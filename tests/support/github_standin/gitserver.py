"""Git over HTTP in the stand-in: real bare repositories, commits made with git's plumbing, and
git's smart-HTTP protocol served by `git http-backend` (run as a CGI program), behind the Basic
auth GitHub asks of an app (`x-access-token:<installation token>`).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.github_standin.state import Recorded, Repo, Token

GIT_PATH = re.compile(r"/(?P<owner>[^/]+)/(?P<name>[^/]+?)\.git(?P<rest>/.*)?")
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Octo Cat",
    "GIT_AUTHOR_EMAIL": "octocat@users.noreply.github.com",
    "GIT_COMMITTER_NAME": "GitHub",
    "GIT_COMMITTER_EMAIL": "noreply@github.com",
}


class GitServer:
    """The git methods of `GitHubStandin`."""

    repos: dict[str, Repo]
    tokens: dict[str, Token]
    git_requests: list[Recorded]
    _lock: threading.Lock
    _git_root: Path | None

    if TYPE_CHECKING:  # GitHubStandin's

        @property
        def base_url(self) -> str: ...

        def repo(self, full_name: str | None = None) -> Repo: ...

    def clone_url(self, repo: str | None = None) -> str:
        """Where git fetches the repository from: this server, as github.com's `/owner/name.git`."""
        return f"{self.base_url}/{self.repo(repo).full_name}.git"

    def add_repository_files(
        self,
        files: Mapping[str, str | bytes | None],
        *,
        repo: str | None = None,
        branch: str | None = None,
        parent: str | None = None,
        message: str = "A change",
        executable: Iterable[str] = (),
        links: Iterable[str] = (),
    ) -> str:
        """Commit `files` (path → content; None removes the path) in the repository's real git
        history and point `branch` (default: the default branch) at it; returns its SHA. The
        parent is `parent`, else the branch's tip, else (a new branch) the default branch's. The
        contents API answers from that commit's files. Paths in `executable` get mode 755; paths in
        `links` are symbolic links to their content (git's mode 120000)."""
        r = self.repo(repo)
        bare = self._bare(r)
        branch = branch or r.default_branch
        for candidate in (branch, r.default_branch) if parent is None else ():
            tip = f"refs/heads/{candidate}"
            parent = self._git(bare, "rev-parse", "--verify", "-q", tip, check=False) or None
            if parent:
                break
        index = bare / f"index-{uuid.uuid4().hex}"
        extra = {"GIT_INDEX_FILE": str(index)}
        try:
            if parent:
                self._git(bare, "read-tree", parent, env=extra)
            entries = []
            for name, content in files.items():
                path = name.strip("/")
                if content is None:  # mode 0 removes the path (no work tree needed)
                    entries.append(f"0 {'0' * 40}\t{path}\n")
                    continue
                data = content.encode() if isinstance(content, str) else content
                blob = self._git(bare, "hash-object", "-w", "--stdin", data=data)
                mode = (
                    "120000"
                    if name in set(links)
                    else "100755"
                    if name in set(executable)
                    else "100644"
                )
                entries.append(f"{mode} {blob}\t{path}\n")
            info = "".join(entries).encode()
            self._git(bare, "update-index", "--index-info", data=info, env=extra)
            tree = self._git(bare, "write-tree", env=extra)
        finally:
            index.unlink(missing_ok=True)
        parents = ["-p", parent] if parent else []
        sha = self._git(bare, "commit-tree", tree, *parents, "-m", message)
        self._git(bare, "update-ref", f"refs/heads/{branch}", sha)
        snapshot = dict(r.trees.get(parent or "", {}))
        for path, content in files.items():
            if content is None:
                snapshot.pop(path.strip("/"), None)
            else:
                snapshot[path.strip("/")] = (
                    content.encode() if isinstance(content, str) else content
                )
        with self._lock:
            r.refs[branch] = sha
            r.trees[sha] = snapshot
        return sha

    # git over HTTP

    def serve_git(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one smart-HTTP request for `/owner/name.git/…` (headers with lower-case names)."""
        split = urllib.parse.urlsplit(target)
        match = GIT_PATH.fullmatch(split.path)
        service = (
            "git-receive-pack"
            if "git-receive-pack" in split.path + split.query
            else "git-upload-pack"
        )
        status, out, data = self._git_answer(method, split, match, headers, body, service)
        with self._lock:
            self.git_requests.append(
                Recorded(
                    method,
                    split.path,
                    urllib.parse.parse_qs(split.query),
                    body,  # as sent: gzip when `content-encoding` says so
                    dict(headers),
                    status,
                    f"git/{service}",
                )
            )
        return status, out, data

    def _git_answer(
        self,
        method: str,
        split: urllib.parse.SplitResult,
        match: re.Match[str] | None,
        headers: Mapping[str, str],
        body: bytes,
        service: str,
    ) -> tuple[int, dict[str, str], bytes]:
        token, login = self._git_credentials(headers.get("authorization", ""))
        if token is None:
            challenge = {"WWW-Authenticate": 'Basic realm="GitHub"'}
            text = (
                b"Invalid username or token. "
                b"Password authentication is not supported for Git operations.\n"
            )
            return 401, challenge, text
        repo = self.repos.get(f"{match['owner']}/{match['name']}".lower()) if match else None
        bare = (
            self._git_root / "repos" / f"{repo.full_name}.git" if repo and self._git_root else None
        )
        if repo is None or bare is None or not bare.is_dir() or not token.sees(repo.full_name):
            return 404, {}, b"Repository not found.\n"
        if service == "git-receive-pack" or not token.allows("contents=read"):
            return 403, {}, f"Permission to {repo.full_name}.git denied to {login}.\n".encode()
        assert match is not None
        env = {
            **self._git_env(),
            "GIT_PROJECT_ROOT": str(self._git_root / "repos"),  # type: ignore[operator]
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo.full_name}.git{match['rest'] or ''}",
            "REQUEST_METHOD": method,
            "QUERY_STRING": split.query,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for name in ("content-encoding", "git-protocol"):
            if name in headers:
                env[f"HTTP_{name.upper().replace('-', '_')}"] = headers[name]
        done = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        return _cgi_answer(done.stdout, done.stderr)

    def _git_credentials(self, authorization: str) -> tuple[Token | None, str]:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None, ""
        try:
            user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, ""
        with self._lock:
            token = self.tokens.get(password)
        if token is None or token.expired(time.time()) or not user:
            return None, ""
        return token, token.login

    # the repositories on disk

    def _bare(self, repo: Repo) -> Path:
        if self._git_root is None:
            self._git_root = Path(tempfile.mkdtemp(prefix="github-standin-"))
        bare = self._git_root / "repos" / f"{repo.full_name}.git"
        if not bare.is_dir():
            bare.parent.mkdir(parents=True, exist_ok=True)
            self._git(
                None, "init", "--bare", "-q", f"--initial-branch={repo.default_branch}", str(bare)
            )
            self._git(bare, "config", "uploadpack.allowReachableSHA1InWant", "true")
            self._git(bare, "config", "http.receivepack", "false")
        return bare

    def _remove_git_root(self) -> None:
        if self._git_root is not None:
            shutil.rmtree(self._git_root, ignore_errors=True)
        self._git_root = None

    def _git_env(self) -> dict[str, str]:
        """git with no configuration but its own: nothing of the user running the tests."""
        home = str(self._git_root)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "XDG_CONFIG_HOME": home,
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
            **_IDENTITY,
        }

    def _git(
        self,
        git_dir: Path | None,
        *args: str,
        data: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> str:
        command = ["git", *(["--git-dir", str(git_dir)] if git_dir else []), *args]
        done = subprocess.run(
            command,
            input=data,
            env={**self._git_env(), **(env or {})},
            capture_output=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.decode().strip()}")
        return done.stdout.decode().strip()


def _cgi_answer(output: bytes, errors: bytes) -> tuple[int, dict[str, str], bytes]:
    """A CGI program's output as (status, headers, body)."""
    crlf, lf = output.find(b"\r\n\r\n"), output.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        end, skip = crlf, 4
    elif lf >= 0:
        end, skip = lf, 2
    else:
        return 500, {}, b"git http-backend said: " + errors[-500:]
    head, data = output[:end].decode("latin-1"), output[end + skip :]
    status, headers = 200, {}
    for line in head.splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return status, headers, data
