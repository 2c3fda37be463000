"""A pull request's head as a build context: a shallow fetch of exactly one commit over HTTPS with
a GitHub token, into a folder reused for the pull request's next commit. git runs as a program;
the token travels in its environment (GIT_CONFIG_*), never on a command line or in `.git/config`.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from deploy_pipeline.errors import CheckoutError, truncate

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# git's own variables that would point it at another repository than the one asked for
_INHERITED_GIT = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


def fetch(
    clone_url: str, sha: str, token: str | None, dest: Path, *, timeout: float = 600.0
) -> Path:
    """`dest` holding exactly commit `sha` of `clone_url` (history depth 1, nothing else in the
    folder). A folder fetched before is reused: only the new commit's objects are fetched."""
    if not _SHA.fullmatch(sha):
        raise CheckoutError(f"cannot fetch {sha[:80]!r}: expected a full commit SHA (40 hex)")
    url = urllib.parse.urlsplit(clone_url)
    if url.scheme not in ("https", "http") or url.username or url.password:
        shown = url._replace(netloc=url.hostname or "").geturl()
        raise CheckoutError(
            f"cannot fetch from {shown!r}: expected an http(s) URL without credentials in it "
            "(the token is sent apart)"
        )
    dest = Path(dest)
    if not (dest / ".git").is_dir():
        if dest.exists() and any(dest.iterdir()):
            raise CheckoutError(
                f"{dest} holds files but is no checkout: give an empty or new folder"
            )
        dest.mkdir(parents=True, exist_ok=True)
        _git(dest, ["init", "-q"], timeout=timeout)
    _git(dest, ["config", "remote.origin.url", clone_url], timeout=timeout)
    what = f"fetch {sha[:12]} from {clone_url}"
    _git(
        dest,
        ["fetch", "--quiet", "--no-tags", "--depth", "1", "origin", sha],
        timeout=timeout,
        token=token,
        what=what,
    )
    _git(dest, ["checkout", "--quiet", "--force", "--detach", sha], timeout=timeout)
    _git(dest, ["clean", "-q", "-ffdx"], timeout=timeout)  # nothing left from an earlier build
    # a ref on the commit, so the next fetch tells the server what is here ("have") and gets
    # only what the newer commit adds
    _git(dest, ["update-ref", "refs/deploy-pipeline/checkout", sha], timeout=timeout)
    return dest


def remove(dest: Path) -> None:
    """Delete a checkout (gone already is fine)."""
    try:
        shutil.rmtree(dest)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CheckoutError(f"cannot remove the checkout {dest}: {exc.strerror}") from exc


def _git(
    cwd: Path,
    args: list[str],
    *,
    timeout: float,
    token: str | None = None,
    what: str | None = None,
) -> str:
    what = what or f"run git {args[0]} in {cwd}"
    secrets = _secrets(token)
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_environment(os.environ, token),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise CheckoutError(
            "git is not installed: it is needed to fetch pull requests' build contexts"
        ) from None
    except subprocess.TimeoutExpired:
        raise CheckoutError(
            f"could not {what}: git took over {timeout:.0f}s", transient=True
        ) from None
    if done.returncode != 0:
        said = _mask(done.stderr.strip() or done.stdout.strip(), secrets)
        reason, transient = _reason(said)
        raise CheckoutError(f"could not {what}: {reason}", transient=transient)
    return done.stdout


def _environment(environ: Mapping[str, str], token: str | None) -> dict[str, str]:
    """The process environment plus our configuration, appended to any GIT_CONFIG_* given."""
    env = {k: v for k, v in environ.items() if k not in _INHERITED_GIT}
    settings = [("credential.helper", "")]  # no stored credentials of this machine's user
    if token:
        settings.append(("http.extraHeader", f"Authorization: Basic {_basic(token)}"))
    given = env.get("GIT_CONFIG_COUNT", "")
    count = int(given) if given.isdigit() else 0
    for i, (key, value) in enumerate(settings, start=count):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    env["GIT_CONFIG_COUNT"] = str(count + len(settings))
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")  # fail instead of asking; English errors
    return env


def _basic(token: str) -> str:
    return base64.b64encode(f"x-access-token:{token}".encode()).decode()


def _secrets(token: str | None) -> list[str]:
    return [token, _basic(token)] if token else []


def _mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return truncate(text, 500)


def _reason(stderr: str) -> tuple[str, bool]:
    """git's complaint, said as what to do about it; and whether it may pass."""
    low = stderr.lower()
    if "authentication failed" in low or "could not read username" in low or " 401" in low:
        return "GitHub refused the token (expired, revoked, or not for this repository)", False
    if " 403" in low or "permission to" in low:
        return (
            'the token may not read this repository (a GitHub App needs the "Contents: read" '
            "permission)",
            False,
        )
    if "repository not found" in low or " 404" in low:
        return "no such repository, or the token cannot see it", False
    if "not our ref" in low or "couldn't find remote ref" in low or "unadvertised object" in low:
        return "the repository has no such commit (was it force-pushed away?)", False
    if any(
        s in low
        for s in ("could not resolve host", "failed to connect", "timed out", "connection reset")
    ):
        return f"cannot reach the server ({_last_line(stderr)})", True
    if " 50" in low:  # "The requested URL returned error: 502"
        return f"the server failed ({_last_line(stderr)})", True
    return _last_line(stderr) or "git failed without saying why", False


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
