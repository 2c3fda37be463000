"""GitHub Apps in the stand-in: apps with their key pairs and installations, the JWT an app signs
(checked as GitHub checks it: RS256 against the app's public key, `iss`, `iat`, `exp`), the
repository's installation, and installation tokens that expire and carry the installation's
permissions.
"""

from __future__ import annotations

import copy
import secrets
import string
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.github_standin.rendering import Rendering
from tests.support.github_standin.state import (
    _LEVELS,
    Answer,
    App,
    AppCall,
    Installation,
    Repo,
    Token,
)

# What an installation of the project's app is usually granted (GitHub's permission names).
APP_PERMISSIONS = {
    "metadata": "read",
    "contents": "read",
    "pull_requests": "write",
    "issues": "write",
    "statuses": "write",
    "deployments": "write",
}

# GitHub's own words for a JWT it refuses (401).
UNDECODABLE = "A JSON web token could not be decoded"
EXPIRED = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at "
    "which the assertion expires"
)
TOO_FAR = "'Expiration time' claim ('exp') is too far in the future"
BAD_IAT = (
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion "
    "was issued"
)
_DRIFT = 30  # seconds of clock difference the check forgives


class Apps(Rendering):
    """The App methods of `GitHubStandin`."""

    apps: dict[int, App]
    repos: dict[str, Repo]
    tokens: dict[str, Token]
    token_lifetime: float  # seconds an installation token lives (GitHub: one hour)
    _ids: defaultdict[str, Iterator[int]]

    def add_app(
        self,
        *,
        slug: str = "deploy-pipeline",
        repos: Iterable[str] | None = None,
        permissions: Mapping[str, str] | None = None,
        account: str | None = None,
    ) -> App:
        """Register an app with a new RSA key pair and install it once: on `repos` (None: every
        repository of `account`, by default the first repository's owner)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # "BEGIN RSA PRIVATE KEY", as GitHub
            serialization.NoEncryption(),
        ).decode()
        app = App(next(self._ids["app"]), slug, pem, key.public_key())
        self.apps[app.id] = app
        self.add_installation(app, repos=repos, permissions=permissions, account=account)
        return app

    def add_installation(
        self,
        app: App,
        *,
        repos: Iterable[str] | None = None,
        permissions: Mapping[str, str] | None = None,
        account: str | None = None,
    ) -> Installation:
        """Install `app` on `account` (all its repositories) or on the listed `repos`."""
        chosen = frozenset(r.lower() for r in repos) if repos is not None else None
        if account is None:
            first = next(iter(chosen)) if chosen else next(iter(self.repos))
            account = self.repos[first].owner if first in self.repos else first.split("/")[0]
        installation = Installation(
            next(self._ids["installation"]) + 40000000,
            app.id,
            account,
            chosen,
            dict(APP_PERMISSIONS if permissions is None else permissions),
        )
        app.installations[installation.id] = installation
        return installation

    # authentication

    def _authenticate_app(self, authorization: str) -> App:
        """The app whose JWT this is, checked as GitHub checks it (else its 401)."""
        if not authorization:
            raise Answer(401, "Requires authentication")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Answer(401, UNDECODABLE) from None
        issuer = str(claims.get("iss", ""))
        app = self.apps.get(int(issuer)) if issuer.isdigit() else None
        if scheme.lower() != "bearer" or app is None or header.get("alg") != "RS256":
            raise Answer(401, UNDECODABLE)
        try:
            jwt.decode(
                token,
                app.public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:  # signed with another key: GitHub cannot tell why either
            raise Answer(401, UNDECODABLE) from None
        now = time.time()
        issued, expires = claims.get("iat"), claims.get("exp")
        if not isinstance(issued, int) or issued > now + _DRIFT:
            raise Answer(401, BAD_IAT)
        if not isinstance(expires, int) or expires <= now - _DRIFT:
            raise Answer(401, EXPIRED)
        if expires > now + 600 + _DRIFT:
            raise Answer(401, TOO_FAR)
        return app

    # operations

    def _get_repo_installation(self, call: AppCall) -> tuple[int, Any, dict[str, str]]:
        full_name = f"{call.params['owner']}/{call.params['repo']}".lower()
        repo = self.repos.get(full_name)
        for installation in call.app.installations.values():
            if repo is not None and full_name in self._reach(installation):
                return 200, self._installation(call.app, installation), {}
        raise Answer(404, "Not Found")

    def _create_installation_token(self, call: AppCall) -> tuple[int, Any, dict[str, str]]:
        installation = call.app.installations.get(int(call.params["installation_id"]))
        if installation is None:
            raise Answer(404, "Not Found")
        body = call.body or {}
        granted = installation.permissions
        asked: dict[str, str] = dict(body.get("permissions") or {})
        if any(_LEVELS[lvl] > _LEVELS.get(granted.get(n, ""), 0) for n, lvl in asked.items()):
            raise Answer(422, "The permissions requested are not granted to this installation.")
        reach = self._reach(installation)
        wanted = {f"{installation.account}/{name}".lower() for name in body.get("repositories", [])}
        by_id = {repo.id: name for name, repo in self.repos.items()}
        ids = body.get("repository_ids", [])
        wanted |= {by_id[i] for i in ids if i in by_id}
        if not wanted <= reach or any(i not in by_id for i in ids):
            raise Answer(
                422,
                "There is at least one repository that does not exist or is not accessible to "
                "the parent installation.",
            )
        selected = wanted or (reach if installation.repositories is not None else set())
        permissions = asked or dict(granted)
        token = "ghs_" + "".join(
            secrets.choice(string.ascii_letters + string.digits) for _ in range(36)
        )
        expires = time.time() + self.token_lifetime
        self.tokens[token] = Token(
            f"{call.app.slug}[bot]", permissions, frozenset(wanted or reach), expires
        )
        out = self._example("installation-token", None)
        example_repo = out.pop("repositories")[0]
        out.update(
            token=token,
            expires_at=datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            permissions=permissions,
            repository_selection="selected" if selected else "all",
        )
        if selected:
            out["repositories"] = [
                self._repository(self.repos[name], copy.deepcopy(example_repo))
                for name in sorted(selected)
            ]
        return 201, out, {}

    def _reach(self, installation: Installation) -> set[str]:
        """The repositories (lower-case owner/name) an installation may see."""
        if installation.repositories is not None:
            return set(installation.repositories)
        owner = installation.account.lower()
        return {name for name, repo in self.repos.items() if repo.owner.lower() == owner}

    def _installation(self, app: App, installation: Installation) -> dict[str, Any]:
        out: dict[str, Any] = self._example("installation", None)
        iid = installation.id
        account = self._user(installation.account, "Organization")
        out.update(
            id=iid,
            app_id=app.id,
            app_slug=app.slug,
            client_id=f"Iv1.standin{app.id:06d}",
            account=account,
            target_id=account["id"],
            target_type="Organization",
            repository_selection="all" if installation.repositories is None else "selected",
            access_tokens_url=f"{self.base_url}/app/installations/{iid}/access_tokens",
            repositories_url=f"{self.base_url}/installation/repositories",
            html_url=f"https://github.com/organizations/{installation.account}/settings/installations/{iid}",
            permissions=dict(installation.permissions),
            events=["pull_request"],
        )
        return out
