"""The receiver's access to GitHub, as a token or as a GitHub App: installation tokens, the
pipeline file at a commit, open pull requests, a preview's comment, the clone URL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests
from github import (
    Auth,
    Github,
    GithubException,
    GithubIntegration,
)
from github.Repository import Repository

from deploy_pipeline.errors import GitHubError, UsageError, truncate
from deploy_pipeline.github.common import (
    API_VERSION,
    DEFAULT_API,
    REFRESH_BEFORE,
    GitHubSettings,
    T,
    describe,
    post_or_edit_comment,
    retry_policy,
)
from deploy_pipeline.reporting.markdown import clip


@dataclass(frozen=True)
class GitHubApp:
    """A GitHub App: its id, a private key (PEM) from its settings, and optionally the
    installation to use (else looked up per repository)."""

    app_id: str
    private_key: str = field(repr=False)
    installation_id: int | None = None


@dataclass(frozen=True)
class _Issued:
    token: str = field(repr=False)
    expires_at: float  # seconds since the epoch


class GitHubClient:
    """GitHub for the receiver, authenticated by a token or as a GitHub App. Thread-safe.

    With an App, `token(repository)` is an installation token (the app's JWT, RS256, signs the
    request for it), kept until `REFRESH_BEFORE` seconds before it expires, then replaced.
    Every failure is a `GitHubError` in `describe`'s words.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        app: GitHubApp | None = None,
        api_url: str = DEFAULT_API,
        retries: int = 6,
        backoff: float = 0.5,
        write_pause: float = 0.5,
        per_page: int = 100,
        timeout: int = 15,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (token is None) == (app is None):
            raise UsageError("GitHubClient takes a token or a GitHub App, one of the two")
        if app is not None:
            _check_private_key(app.private_key, "the GitHub App's private key")
        self._token, self.app = token, app
        self.api_url = api_url.rstrip("/") or DEFAULT_API
        self.retries, self.backoff, self.write_pause = retries, backoff, write_pause
        self.per_page, self.timeout, self.clock = per_page, timeout, clock
        self._lock = threading.Lock()
        self._installations: dict[str, int] = {}  # lower-case owner/name → installation id
        self._issued: dict[int, _Issued] = {}
        self._integration = (
            GithubIntegration(
                base_url=self.api_url,
                auth=Auth.AppAuth(app.app_id, app.private_key),  # JWT: iat −60 s, exp +5 min
                # an unreachable GitHub fails a token's request at once: the reporter retries
                # it on its own thread, with backoff, and the run goes on
                retry=retry_policy(retries, backoff, 60.0, unreachable=False),
                timeout=timeout,
                seconds_between_requests=0,
                seconds_between_writes=0,
                lazy=True,
                api_version=API_VERSION,
            )
            if app is not None
            else None
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> GitHubClient | None:
        """The client `deploy-pipeline serve` documents: a GitHub App (GITHUB_APP_ID with
        GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_FILE, optional GITHUB_APP_INSTALLATION_ID)
        when configured, else GITHUB_TOKEN; None when neither is set."""
        api_url = environ.get("GITHUB_API_URL", "").strip().rstrip("/") or DEFAULT_API
        pause_text = environ.get("DEPLOY_PIPELINE_GITHUB_WRITE_PAUSE", "").strip()
        try:
            pause = float(pause_text) if pause_text else 0.5
        except ValueError:
            raise UsageError(
                f"DEPLOY_PIPELINE_GITHUB_WRITE_PAUSE must be seconds, got {pause_text[:40]!r}"
            ) from None
        app = _app_from_environ(environ)
        if app is not None:
            return cls(app=app, api_url=api_url, write_pause=pause, backoff=pause or 0.5)
        token = environ.get("GITHUB_TOKEN", "").strip()
        if token:
            return cls(token=token, api_url=api_url, write_pause=pause, backoff=pause or 0.5)
        return None

    # --- tokens ----------------------------------------------------------------------------

    def token(self, repository: str) -> str:
        """A token valid for `repository` now (an App's installation token lasts an hour)."""
        if self._token is not None:
            return self._token
        with self._lock:  # one request for a new token, however many threads want one
            installation = self._installation(repository)
            issued = self._issued.get(installation)
            if issued is None or self.clock() >= issued.expires_at - REFRESH_BEFORE:
                issued = self._issued[installation] = self._issue(installation)
            return issued.token

    def settings(
        self, repository: str, sha: str, *, run_url: str | None = None, lazy: bool = False
    ) -> GitHubSettings:
        """What a `GitHubReporter` of one run needs, with a token taken now (`lazy`: taken by
        the reporter, on its own thread, when it first calls GitHub)."""
        return GitHubSettings(
            repository=repository,
            token="" if lazy else self.token(repository),
            token_source=(lambda: self.token(repository)) if lazy else None,
            sha=sha,
            api_url=self.api_url,
            run_url=run_url,
            retries=self.retries,
            backoff=self.backoff,
            write_pause=self.write_pause,
            app=self.app is not None,
        )

    def _installation(self, repository: str) -> int:
        assert self.app is not None and self._integration is not None
        if self.app.installation_id is not None:
            return self.app.installation_id
        key = repository.lower()
        if key not in self._installations:
            owner, _, name = repository.partition("/")
            what = f"find the installation of the GitHub App {self.app.app_id} on {repository}"
            try:
                found = self._integration.get_repo_installation(owner, name)
            except GithubException as exc:
                raise self._app_error(exc, what, repository=repository) from exc
            except requests.RequestException as exc:
                raise GitHubError(describe(exc, what)) from exc
            self._installations[key] = found.id
        return self._installations[key]

    def _issue(self, installation: int) -> _Issued:
        assert self.app is not None and self._integration is not None
        what = f"create a token for installation {installation} of the GitHub App"
        try:
            made = self._integration.get_access_token(installation)
        except GithubException as exc:
            if exc.status == 404:  # uninstalled since it was looked up: look it up again
                self._installations = {
                    k: v for k, v in self._installations.items() if v != installation
                }
            raise self._app_error(exc, f"{what} {self.app.app_id}") from exc
        except requests.RequestException as exc:
            raise GitHubError(describe(exc, f"{what} {self.app.app_id}")) from exc
        return _Issued(made.token, made.expires_at.timestamp())

    def _app_error(
        self, error: GithubException, what: str, *, repository: str | None = None
    ) -> GitHubError:
        assert self.app is not None
        app = f"the GitHub App {self.app.app_id}"
        data = error.data if isinstance(error.data, dict) else {}
        said = truncate(str(data.get("message") or ""), 200)
        if error.status == 401:
            return GitHubError(
                f"GitHub refused {app}'s credentials ({said}): check that GITHUB_APP_ID is the "
                "app's id and the private key one of its current keys (its settings → Private "
                "keys), and that this machine's clock is right",
                401,
            )
        if error.status == 404 and repository is not None:
            return GitHubError(
                f"{app} is not installed on {repository}: install it on that repository "
                "(the app's page → Install), or set GITHUB_APP_INSTALLATION_ID",
                404,
            )
        if error.status == 404 and self.app.installation_id is not None:
            return GitHubError(
                f"GitHub knows no installation {self.app.installation_id} of {app}: check "
                "GITHUB_APP_INSTALLATION_ID (the number at the end of the installation's "
                "settings URL)",
                404,
            )
        return GitHubError(describe(error, what, app=True), error.status)

    # --- what the receiver asks --------------------------------------------------------------

    def pipeline_file(
        self, repository: str, ref: str, path: str = ".deploy-pipeline.yml"
    ) -> str | None:
        """The pipeline file's text at `ref` (a commit, branch or tag); None when there is none."""
        short = ref[:12] if len(ref) == 40 else ref  # a SHA as people see it

        def read(repo: Repository) -> str | None:
            try:
                found = repo.get_contents(path, ref=ref)
            except GithubException as exc:
                if exc.status != 404:
                    raise
                said = str(exc.data.get("message", "")) if isinstance(exc.data, dict) else ""
                if said.startswith("No commit found"):
                    raise GitHubError(
                        f"GitHub has no commit {ref!r} in {repository}: was the branch deleted "
                        "or force-pushed?",
                        404,
                    ) from exc
                repo.update()  # a missing repository is an error, not a missing file
                return None
            if isinstance(found, list):
                raise GitHubError(f"{path} in {repository} at {short} is a folder, not a file")
            if found.encoding != "base64":  # over 1 MB the contents API leaves the content out
                raise GitHubError(f"{path} in {repository} is too large ({found.size} bytes)")
            try:
                return found.decoded_content.decode("utf-8")
            except UnicodeDecodeError:
                raise GitHubError(f"{path} in {repository} is not UTF-8 text") from None

        return self._call(repository, f"read {path} at {short} of {repository}", read)

    def open_pulls(self, repository: str) -> set[int]:
        """The numbers of the repository's open pull requests (every page)."""
        return self._call(
            repository,
            f"list the open pull requests of {repository}",
            lambda repo: {pull.number for pull in repo.get_pulls(state="open")},
        )

    def comment(self, repository: str, number: int, environment: str, body: str) -> None:
        """Post the preview's comment on pull request `number`, or edit it when it is there."""
        self._call(
            repository,
            f"comment on pull request #{number}",
            lambda repo: post_or_edit_comment(repo, number, environment, body),
        )

    def deactivate(self, repository: str, environment: str, why: str) -> None:
        """Mark the environment's Deployments `inactive` (a preview that was removed): GitHub
        no longer shows them as live."""

        def inactive(repo: Repository) -> None:
            for deployment in repo.get_deployments(environment=environment):
                deployment.create_status("inactive", description=clip(why))

        self._call(repository, f"mark the deployments of {environment} inactive", inactive)

    def status(self, repository: str, sha: str, environment: str, state: str, text: str) -> None:
        """The environment's commit status (`deploy-pipeline/<environment>`), for what failed
        before a run could start: a pull request without a pipeline file, or a bad one."""
        self._call(
            repository,
            f"set the status of {sha[:7]}",
            lambda repo: repo.get_commit(sha).create_status(
                state, description=clip(text), context=f"deploy-pipeline/{environment}"
            ),
        )

    def clone_url(self, repository: str) -> str:
        """The HTTPS URL git fetches the repository from (no credentials in it)."""
        return self._call(
            repository,
            f"look up {repository}",
            lambda repo: str(repo.clone_url),
        )

    def close(self) -> None:
        if self._integration is not None:
            self._integration.close()

    def _call(self, repository: str, what: str, fn: Callable[[Repository], T]) -> T:
        """`fn` on the repository; an App's token GitHub refused is replaced once. A client per
        call: a token rotating under a call in another thread cannot close its connection."""
        for attempt in (1, 2):
            try:
                with self._api(self.token(repository)) as gh:
                    return fn(gh.get_repo(repository))
            except GithubException as exc:
                if exc.status == 401 and self.app is not None and attempt == 1:
                    self._forget(repository)  # revoked or expired early: a new one may do
                    continue
                raise GitHubError(
                    describe(exc, what, app=self.app is not None), exc.status
                ) from exc
            except requests.RequestException as exc:
                raise GitHubError(describe(exc, what)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _api(self, token: str) -> Github:
        return Github(
            base_url=self.api_url,
            auth=Auth.Token(token),
            retry=retry_policy(self.retries, self.backoff, 60.0),
            timeout=self.timeout,
            per_page=self.per_page,
            seconds_between_requests=0,
            seconds_between_writes=self.write_pause,
            lazy=True,
            api_version=API_VERSION,
        )

    def _forget(self, repository: str) -> None:
        with self._lock:
            installation = self._installations.get(repository.lower(), None)
            if self.app is not None and self.app.installation_id is not None:
                installation = self.app.installation_id
            if installation is not None:
                self._issued.pop(installation, None)


def _app_from_environ(environ: Mapping[str, str]) -> GitHubApp | None:
    """The GitHub App the environment configures, None when it configures none; a UsageError
    for half of one. The key's text is never part of a message."""
    app_id = environ.get("GITHUB_APP_ID", "").strip()
    key_text = environ.get("GITHUB_APP_PRIVATE_KEY", "").strip()
    key_file = environ.get("GITHUB_APP_PRIVATE_KEY_FILE", "").strip()
    installation = environ.get("GITHUB_APP_INSTALLATION_ID", "").strip()
    if not (app_id or key_text or key_file or installation):
        return None
    if not app_id:
        given = "GITHUB_APP_PRIVATE_KEY" if key_text or key_file else "GITHUB_APP_INSTALLATION_ID"
        raise UsageError(
            f"{given} is set but GITHUB_APP_ID is not: set GITHUB_APP_ID to the app's id "
            '(its settings page, "App ID")'
        )
    if not app_id.isdigit():
        raise UsageError(f"GITHUB_APP_ID must be the app's numeric id, got {app_id[:40]!r}")
    if key_text and key_file:
        raise UsageError(
            "both GITHUB_APP_PRIVATE_KEY and GITHUB_APP_PRIVATE_KEY_FILE are set: set one"
        )
    if not (key_text or key_file):
        raise UsageError(
            "GITHUB_APP_ID is set but no private key: set GITHUB_APP_PRIVATE_KEY to the PEM text "
            "of a key generated in the app's settings (Private keys), or "
            "GITHUB_APP_PRIVATE_KEY_FILE to the file GitHub downloaded"
        )
    where = "GITHUB_APP_PRIVATE_KEY"
    if key_file:
        where = f"GITHUB_APP_PRIVATE_KEY_FILE ({key_file})"
        try:
            key_text = Path(key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not text"
            raise UsageError(f"cannot read {where}: {reason}") from None
    if "\n" not in key_text and "\\n" in key_text:  # a PEM pasted into one line with \n escapes
        key_text = key_text.replace("\\n", "\n")
    _check_private_key(key_text, where)
    if installation and not installation.isdigit():
        raise UsageError(f"GITHUB_APP_INSTALLATION_ID must be a number, got {installation[:40]!r}")
    return GitHubApp(app_id, key_text + "\n", int(installation) if installation else None)


def _check_private_key(pem: str, where: str) -> None:
    """A UsageError unless `pem` is an unencrypted RSA private key in PEM (what GitHub issues)."""
    # imported here: the Action's image leaves cryptography out, and never reads a key
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    expected = (
        "expected the PEM text GitHub downloads, from -----BEGIN RSA PRIVATE KEY----- to "
        "-----END RSA PRIVATE KEY-----"
    )
    try:
        key = load_pem_private_key(pem.strip().encode(), password=None)
    except TypeError:
        raise UsageError(f"{where} is encrypted with a passphrase: {expected}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(f"{where} is not a PEM private key: {expected}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UsageError(f"{where} is not an RSA private key: {expected}")
