"""The project's GitHub client pointed at the GitHub stand-in, and keys GitHub knows nothing of."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deploy_pipeline.github import GitHubApp, GitHubClient
from tests.support.github_standin import TOKEN, App, GitHubStandin


def standin_client(standin: GitHubStandin, app: App | None = None, **options: Any) -> GitHubClient:
    """A client of the stand-in as the GitHub App `app` (installed on REPO), else with TOKEN;
    it pauses 10 ms between writes, as GitHub asks of its callers, unless told otherwise."""
    options = {"write_pause": 0.01, **options}
    if app is not None:
        github_app = GitHubApp(str(app.id), app.private_key)
        return GitHubClient(app=github_app, api_url=standin.base_url, **options)
    return GitHubClient(token=TOKEN, api_url=standin.base_url, **options)


def other_key() -> str:
    """A new RSA private key (PEM) that is no GitHub App's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
