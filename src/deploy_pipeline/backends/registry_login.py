"""Registry logins for image pull Secrets (DESIGN.md §11): the registry an image is pulled from,
the Docker client's login for one registry (as `docker login` or the Action's inputs write it),
and the `.dockerconfigjson` that holds that one login and nothing else. No SDK, no I/O but
reading the Docker client's config file."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DOCKER_HUB = "https://index.docker.io/v1/"  # the key docker and the kubelet use for Docker Hub
HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True)
class Login:
    """A registry's credentials, as a dockerconfigjson entry holds them; repr shows no value."""

    registry: str  # the entry's key: a host[:port], or DOCKER_HUB
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Login(registry={self.registry!r})"


def image_registry(image: str) -> str:
    """The registry an image reference is pulled from, as Docker reads it: the first part of
    the name when it has a '.' or a ':' or is `localhost`, else Docker Hub (DOCKER_HUB)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB if first in HUB_NAMES else first
    return DOCKER_HUB


def registry_of(registry: str) -> str:
    """The registry of the pipeline's `registry:` (`registry.example.com/acme` →
    `registry.example.com`; `acme` alone is a Docker Hub account)."""
    return image_registry(f"{registry.rstrip('/')}/image")


def _key_registry(key: str) -> str:
    """An `auths` key as docker writes it (`host`, `https://host`, `https://host/v1/`) →
    the registry it is for."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB if host in HUB_NAMES else host


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The Docker client's config file: $DOCKER_CONFIG/config.json or ~/.docker/config.json."""
    environ = os.environ if environ is None else environ
    folder = environ.get("DOCKER_CONFIG")
    return Path(folder) / "config.json" if folder else Path("~/.docker/config.json").expanduser()


@dataclass(frozen=True)
class Found:
    """What the Docker client's config says of one registry: its login, or why there is none
    to hand on (a sentence with no value in it, for the step's log; empty when none is set)."""

    login: Login | None
    note: str = ""


def docker_login(registry: str, environ: Mapping[str, str] | None = None) -> Found:
    """The Docker client's login for `registry` (a value of `image_registry`), from the `auths`
    entry `docker login` writes; a credential helper's logins are not read."""
    path = config_path(environ)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Found(None)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not JSON"
        return Found(None, f"the Docker client's config {path} cannot be read ({reason})")
    if not isinstance(config, dict):
        return Found(None, f"the Docker client's config {path} is not a JSON object")
    auths = config.get("auths")
    entries = auths if isinstance(auths, dict) else {}
    for key, entry in entries.items():
        if _key_registry(str(key)) == registry and isinstance(entry, dict):
            login = _entry_login(registry, entry)
            if login is not None:
                return Found(login)
    helpers = config.get("credHelpers")
    helper = (helpers.get(registry) if isinstance(helpers, dict) else None) or config.get(
        "credsStore"
    )
    if isinstance(helper, str) and helper:
        return Found(
            None,
            f"the Docker client keeps the login for {registry} in the credential helper "
            f"docker-credential-{helper}, which deploy-pipeline does not read; log in with "
            "DOCKER_CONFIG pointing to a folder without a credential helper to hand it on",
        )
    return Found(None)


def _entry_login(registry: str, entry: Mapping[str, object]) -> Login | None:
    """An `auths` entry's username and password: its `auth` (base64 of `user:password`) or its
    `username` and `password`; None for an entry without them (an identity token, say)."""
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str) and user and password:
        return Login(registry, user, password)
    auth = entry.get("auth")
    if not isinstance(auth, str) or not auth:
        return None
    try:
        user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    return Login(registry, user, password) if sep and user and password else None


def dockerconfigjson(login: Login) -> str:
    """The content of a `kubernetes.io/dockerconfigjson` Secret: this one login, as
    `kubectl create secret docker-registry` writes it."""
    auth = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
    entry = {"username": login.username, "password": login.password, "auth": auth}
    return json.dumps({"auths": {login.registry: entry}}, sort_keys=True)
