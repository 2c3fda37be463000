"""A pull request's head fetched as a build context: a real shallow git fetch over HTTP from the
GitHub stand-in's `git http-backend`, authenticated by an installation token that never shows in
git's command line, its config, or an error."""

from __future__ import annotations

import base64
import gzip
import os
import stat
import subprocess
from pathlib import Path

import pytest

from deploy_pipeline.errors import CheckoutError
from deploy_pipeline.github import GitHubApp, GitHubClient
from deploy_pipeline.receiver.checkout import fetch, remove
from tests.support.github_standin import REPO, App, GitHubStandin, Recorded


@pytest.fixture
def app(standin: GitHubStandin) -> App:
    return standin.add_app()


def installation_token(standin: GitHubStandin, app: App) -> str:
    """An installation token, the way the receiver gets one."""
    client = GitHubClient(
        app=GitHubApp(str(app.id), app.private_key), api_url=standin.base_url, retries=0
    )
    token = client.token(REPO)
    client.close()
    return token


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def pkt(request: Recorded) -> str:
    """What git asked the server for, as text (the body of an upload-pack request)."""
    body = request.body or b""
    if request.headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return body.decode(errors="replace")


def files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def test_fetches_exactly_one_commit(standin: GitHubStandin, app: App, tmp_path: Path) -> None:
    """The commit asked for is checked out with history depth 1, fetched with Basic auth
    `x-access-token:<token>`, and the token is not written into the checkout's git config."""
    standin.add_repository_files({"README.md": "old\n"})
    sha = standin.add_repository_files({"api/Dockerfile": "FROM scratch\n"})
    standin.add_repository_files({"README.md": "newer, not asked for\n"})
    token = installation_token(standin, app)

    dest = fetch(standin.clone_url(), sha, token, tmp_path / "pr-1")

    assert files(dest) == {"README.md": "old\n", "api/Dockerfile": "FROM scratch\n"}
    assert git(dest, "rev-parse", "HEAD") == sha
    assert git(dest, "rev-list", "--count", "HEAD") == "1"
    assert git(dest, "status", "--porcelain") == ""
    assert token not in (dest / ".git" / "config").read_text()
    sent = {r.headers.get("authorization") for r in standin.git_requests}
    assert sent == {"Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()}
    assert {r.status for r in standin.git_requests} == {200}


def test_a_newer_commit_reuses_the_checkout(
    standin: GitHubStandin, app: App, tmp_path: Path
) -> None:
    """A second fetch into the same folder moves it to the newer commit (files added, changed
    and removed; leftovers of a build cleaned), still at depth 1, fetching only that commit."""
    first = standin.add_repository_files({"a.txt": "1\n", "gone.txt": "x\n"})
    token = installation_token(standin, app)
    dest = fetch(standin.clone_url(), first, token, tmp_path / "pr-2")
    (dest / "build-output.log").write_text("left by a build\n")
    git_dir = (dest / ".git").stat().st_ino
    second = standin.add_repository_files({"a.txt": "2\n", "gone.txt": None, "b.txt": "new\n"})

    fetch(standin.clone_url(), second, token, dest)

    assert files(dest) == {"a.txt": "2\n", "b.txt": "new\n"}
    assert git(dest, "rev-parse", "HEAD") == second
    assert git(dest, "rev-list", "--count", "HEAD") == "1"
    assert (dest / ".git").stat().st_ino == git_dir  # the same repository, not a new clone
    asked = [pkt(r) for r in standin.git_requests if r.path.endswith("/git-upload-pack")]
    assert f"want {first}" in asked[0] and "have " not in asked[0]
    assert f"want {second}" in asked[-1] and f"have {first}" in asked[-1]  # only what is new


def test_a_bad_token_is_refused_without_showing_it(standin: GitHubStandin, tmp_path: Path) -> None:
    """A token the server refuses gives an error that says so and contains neither the token
    nor its Basic encoding."""
    sha = standin.add_repository_files({"a.txt": "1\n"})
    bad = "ghs_notavalidtoken0000000000000000000000"

    with pytest.raises(CheckoutError) as refused:
        fetch(standin.clone_url(), sha, bad, tmp_path / "pr-3")

    message = str(refused.value)
    assert message == (
        f"could not fetch {sha[:12]} from {standin.clone_url()}: GitHub refused the token "
        "(expired, revoked, or not for this repository)"
    )
    assert bad not in message
    assert base64.b64encode(f"x-access-token:{bad}".encode()).decode() not in message
    assert not refused.value.transient
    assert [r.status for r in standin.git_requests] == [401]


def test_token_is_never_on_gits_command_line(
    standin: GitHubStandin, app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every git command fetch runs is logged by a wrapper in front of git: none carries the
    token or its Basic encoding, while the stand-in did receive it."""
    sha = standin.add_repository_files({"a.txt": "1\n"})
    token = installation_token(standin, app)
    real_git = subprocess.run(["which", "git"], capture_output=True, text=True, check=True)
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real_git.stdout.strip()}" "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")

    fetch(standin.clone_url(), sha, token, tmp_path / "pr-4")

    commands = log.read_text()
    assert "fetch --quiet --no-tags --depth 1 origin " + sha in commands
    assert token not in commands
    assert base64.b64encode(f"x-access-token:{token}".encode()).decode() not in commands
    basic = base64.b64decode(standin.git_requests[0].headers["authorization"].split()[1])
    assert basic.decode() == f"x-access-token:{token}"


def test_token_without_contents_permission(standin: GitHubStandin, tmp_path: Path) -> None:
    """An installation without Contents access is told which permission it needs."""
    sha = standin.add_repository_files({"a.txt": "1\n"})
    app = standin.add_app(permissions={"metadata": "read", "pull_requests": "write"})

    with pytest.raises(CheckoutError) as refused:
        fetch(standin.clone_url(), sha, installation_token(standin, app), tmp_path / "pr-5")

    assert str(refused.value).endswith(
        'the token may not read this repository (a GitHub App needs the "Contents: read" '
        "permission)"
    )


def test_a_commit_the_repository_lacks(standin: GitHubStandin, app: App, tmp_path: Path) -> None:
    """A SHA that is not in the repository (force-pushed away) is said to be missing."""
    standin.add_repository_files({"a.txt": "1\n"})
    missing = "0123456789abcdef0123456789abcdef01234567"

    with pytest.raises(CheckoutError) as absent:
        fetch(standin.clone_url(), missing, installation_token(standin, app), tmp_path / "pr-6")

    assert str(absent.value) == (
        f"could not fetch 0123456789ab from {standin.clone_url()}: the repository has no such "
        "commit (was it force-pushed away?)"
    )


def test_refuses_what_it_should_not_touch(tmp_path: Path) -> None:
    """A folder of other files is left alone, a URL with credentials in it is refused without
    repeating them, and only a full SHA is fetched."""
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious\n")
    sha = "a" * 40

    with pytest.raises(CheckoutError) as occupied:
        fetch("https://github.com/o/r.git", sha, None, keep)
    with pytest.raises(CheckoutError) as credentials:
        fetch("https://user:ghp_secret@github.com/o/r.git", sha, None, tmp_path / "x")
    with pytest.raises(CheckoutError) as short:
        fetch("https://github.com/o/r.git", "main", None, tmp_path / "y")

    assert (
        str(occupied.value) == f"{keep} holds files but is no checkout: give an empty or new folder"
    )
    assert (keep / "notes.txt").read_text() == "precious\n"
    assert "ghp_secret" not in str(credentials.value)
    assert str(credentials.value).startswith("cannot fetch from 'https://github.com/o/r.git'")
    assert str(short.value) == "cannot fetch 'main': expected a full commit SHA (40 hex)"


def test_remove(standin: GitHubStandin, app: App, tmp_path: Path) -> None:
    """remove() deletes a checkout, git's read-only objects included; a missing one is fine."""
    sha = standin.add_repository_files({"a.txt": "1\n"})
    dest = fetch(standin.clone_url(), sha, installation_token(standin, app), tmp_path / "pr-7")

    remove(dest)
    remove(dest)

    assert not dest.exists()
