"""GitHubClient against the GitHub stand-in: a GitHub App's installation tokens (JWT checked, kept,
replaced), the pipeline file at a commit, open pull requests, the preview's comment, and errors
that say what to grant or set without ever showing a token or a private key."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from deploy_pipeline.config import parse_config
from deploy_pipeline.errors import UsageError
from deploy_pipeline.github import GitHubApp, GitHubClient, GitHubError, GitHubReporter
from deploy_pipeline.plan import environments, plan_runs
from tests.support.clock import Clock
from tests.support.github import other_key
from tests.support.github_standin import REPO, TOKEN, App, GitHubStandin
from tests.support.github_standin.apps import EXPIRED, TOO_FAR, UNDECODABLE

PIPELINE = "version: 1\nservices:\n  web: {type: container, image: nginx:1.27}\n"


def app_client(standin: GitHubStandin, app: App, **options: Any) -> GitHubClient:
    """The client as a GitHub App, pointed at the stand-in, without retries or pauses."""
    options = {"retries": 0, "write_pause": 0.0, **options}
    installation = options.pop("installation_id", None)
    github_app = GitHubApp(str(app.id), app.private_key, installation)
    return GitHubClient(app=github_app, api_url=standin.base_url, **options)


def token_client(standin: GitHubStandin, token: str = TOKEN, **options: Any) -> GitHubClient:
    options = {"retries": 0, "write_pause": 0.0, **options}
    return GitHubClient(token=token, api_url=standin.base_url, **options)


def key_body(pem: str) -> str:
    """A line from the middle of a PEM key: what must never appear in a message."""
    lines = pem.strip().splitlines()
    return lines[len(lines) // 2]


def ops(standin: GitHubStandin, operation_id: str) -> list[Any]:
    return [r for r in standin.requests if r.operation_id == operation_id]


# --- installation tokens --------------------------------------------------------------------


def test_app_token_is_issued_kept_and_replaced(standin: GitHubStandin) -> None:
    """The app's JWT (RS256, iss the app id, at most 10 minutes) gets an installation token the
    stand-in accepts; it is kept while fresh and replaced 5 minutes before it expires."""
    app = standin.add_app()
    clock = Clock(time.time())
    client = app_client(standin, app, clock=clock)

    first = client.token(REPO)
    again = client.token(REPO)
    clock.now += 3600 - 301  # still 5 min 1 s left
    kept = client.token(REPO)
    clock.now += 2  # within the last 5 minutes
    fresh = client.token(REPO)
    client.close()

    assert first == again == kept != fresh
    assert first.startswith("ghs_") and standin.tokens[first].login == "deploy-pipeline[bot]"
    issued = ops(standin, "apps/create-installation-access-token")
    assert [r.status for r in issued] == [201, 201]
    assert [r.status for r in ops(standin, "apps/get-repo-installation")] == [200]  # looked up once
    scheme, _, signed = issued[0].headers["authorization"].partition(" ")
    claims = jwt.decode(signed, options={"verify_signature": False})
    assert scheme == "Bearer" and jwt.get_unverified_header(signed)["alg"] == "RS256"
    assert claims["iss"] == str(app.id) and 0 < claims["exp"] - claims["iat"] <= 660
    assert issued[0].path == f"/app/installations/{app.installation_id}/access_tokens"
    assert standin.violations == []


def test_threads_share_one_new_token(standin: GitHubStandin) -> None:
    """Eight threads asking for a token at once cause one installation lookup and one token."""
    app = standin.add_app()
    client = app_client(standin, app)
    start = threading.Barrier(8, timeout=10)

    def ask() -> str:
        start.wait()
        return client.token(REPO)

    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: ask(), range(8)))
    client.close()

    assert len(tokens) == 1
    assert len(ops(standin, "apps/get-repo-installation")) == 1
    assert len(ops(standin, "apps/create-installation-access-token")) == 1


def test_given_installation_is_not_looked_up(standin: GitHubStandin) -> None:
    """With an installation id the repository's installation is not asked for."""
    app = standin.add_app()
    client = app_client(standin, app, installation_id=app.installation_id)

    client.token(REPO)
    client.close()

    assert ops(standin, "apps/get-repo-installation") == []
    assert len(ops(standin, "apps/create-installation-access-token")) == 1


def test_a_refused_token_is_replaced_once(standin: GitHubStandin) -> None:
    """An installation token GitHub no longer accepts (revoked) is replaced and the call made
    again, once."""
    standin.add_pull("feature/a")
    app = standin.add_app()
    client = app_client(standin, app)
    revoked = client.token(REPO)
    del standin.tokens[revoked]

    assert client.open_pulls(REPO) == {1}
    assert client.token(REPO) != revoked
    client.close()


def test_expired_installation_token_is_refused(standin: GitHubStandin) -> None:
    """The stand-in answers an installation token past its expires_at with GitHub's 401."""
    standin.token_lifetime = 0.0
    app = standin.add_app()
    client = app_client(standin, app, clock=lambda: 0.0)  # the client thinks it is fresh
    token = client.token(REPO)

    answer = requests.get(
        f"{standin.base_url}/repos/{REPO}", headers={"Authorization": f"token {token}"}, timeout=10
    )
    client.close()

    assert (answer.status_code, answer.json()["message"]) == (401, "Bad credentials")


def test_a_key_of_another_app_is_refused_clearly(standin: GitHubStandin) -> None:
    """A JWT signed with a key that is not the app's gets GitHub's 401, said as a problem with
    the app id or key and never showing the key."""
    app = standin.add_app()
    wrong = other_key()
    client = GitHubClient(
        app=GitHubApp(str(app.id), wrong), api_url=standin.base_url, retries=0, write_pause=0.0
    )

    with pytest.raises(GitHubError) as refused:
        client.pipeline_file(REPO, "main")
    client.close()

    message = str(refused.value)
    assert message.startswith(
        f"GitHub refused the GitHub App {app.id}'s credentials (A JSON web token could not be "
        "decoded): check that GITHUB_APP_ID is the app's id and the private key one of its "
        "current keys"
    )
    assert key_body(wrong) not in message and "BEGIN" not in message
    assert ops(standin, "repos/get-content") == []


def test_the_standin_checks_the_jwt(standin: GitHubStandin) -> None:
    """Expired, too long-lived, forged (another key) and HS256 JWTs get GitHub's 401 words."""
    app = standin.add_app()
    now = int(time.time())
    url = f"{standin.base_url}/app/installations/{app.installation_id}/access_tokens"

    def post(token: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
        return requests.post(url, headers=headers, json={}, timeout=10)

    claims = {"iat": now - 60, "exp": now + 300, "iss": str(app.id)}
    good = post(jwt.encode(claims, app.private_key, algorithm="RS256"))
    expired = post(jwt.encode({**claims, "exp": now - 120}, app.private_key, algorithm="RS256"))
    too_far = post(jwt.encode({**claims, "exp": now + 3600}, app.private_key, algorithm="RS256"))
    forged = post(jwt.encode(claims, other_key(), algorithm="RS256"))
    shared = post(jwt.encode(claims, "a shared secret of 32 bytes at least!", algorithm="HS256"))

    assert good.status_code == 201 and good.json()["token"] in standin.tokens
    assert {"token", "expires_at", "permissions"} <= good.json().keys()
    assert [(r.status_code, r.json()["message"]) for r in (expired, too_far, forged, shared)] == [
        (401, EXPIRED),
        (401, TOO_FAR),
        (401, UNDECODABLE),
        (401, UNDECODABLE),
    ]
    assert standin.violations == []


def test_app_not_installed_on_the_repository(standin: GitHubStandin) -> None:
    """An app without an installation on the repository is told to install it or name one."""
    standin.add_repo("elsewhere/other")
    app = standin.add_app(account="elsewhere")

    with pytest.raises(GitHubError) as missing:
        app_client(standin, app).token(REPO)

    assert str(missing.value) == (
        f"the GitHub App {app.id} is not installed on {REPO}: install it on that repository "
        "(the app's page → Install), or set GITHUB_APP_INSTALLATION_ID"
    )


def test_missing_app_permission_is_named(standin: GitHubStandin) -> None:
    """An installation without Contents or Pull requests access is told which permission to
    grant, as the app's settings name it."""
    app = standin.add_app(permissions={"metadata": "read", "issues": "write"})
    client = app_client(standin, app)

    with pytest.raises(GitHubError) as contents:
        client.pipeline_file(REPO, "main")
    with pytest.raises(GitHubError) as pulls:
        client.open_pulls(REPO)
    client.close()

    assert str(contents.value) == (
        f"GitHub refused to read .deploy-pipeline.yml at main of {REPO}: the GitHub App lacks "
        'the contents=read permission; grant the app "Contents: read" (its settings → '
        "Permissions), then accept the new permissions on its installation"
    )
    assert 'grant the app "Pull requests: read"' in str(pulls.value)
    assert contents.value.status == pulls.value.status == 403


# --- what the receiver reads and writes -------------------------------------------------------


def test_pipeline_file_at_a_ref(standin: GitHubStandin) -> None:
    """The pipeline file is read at the commit asked for (not the branch's newer one), by SHA or
    branch; a commit without one gives None."""
    bare = standin.add_repository_files({"README.md": "hello\n"})
    first = standin.add_repository_files({".deploy-pipeline.yml": PIPELINE})
    newer = PIPELINE.replace("1.27", "1.28")
    head = standin.add_repository_files({".deploy-pipeline.yml": newer}, branch="feature/x")
    client = token_client(standin)

    assert client.pipeline_file(REPO, first) == PIPELINE
    assert client.pipeline_file(REPO, head) == newer
    assert client.pipeline_file(REPO, "feature/x") == newer
    assert client.pipeline_file(REPO, bare) is None
    assert client.pipeline_file(REPO, first, "deploy/other.yml") is None
    client.close()
    assert standin.violations == []


def test_pipeline_file_errors(standin: GitHubStandin) -> None:
    """A ref that names no commit, and a repository that does not exist, are errors, not a
    missing file."""
    client = token_client(standin)

    with pytest.raises(GitHubError) as no_commit:
        client.pipeline_file(REPO, "deleted-branch")
    with pytest.raises(GitHubError) as no_repo:
        client.pipeline_file("octo-org/gone", "main")
    client.close()

    assert str(no_commit.value) == (
        f"GitHub has no commit 'deleted-branch' in {REPO}: was the branch deleted or force-pushed?"
    )
    assert str(no_repo.value).startswith(
        "GitHub could not read .deploy-pipeline.yml at main of octo-org/gone: not found "
        "(Not Found); check the repository name and that the token can see it"
    )


def test_a_refused_token_is_not_shown(standin: GitHubStandin) -> None:
    """A token GitHub does not accept is said to be refused, and not repeated."""
    bad = "ghp_notagoodtoken000000000000000000000"
    client = token_client(standin, bad)

    with pytest.raises(GitHubError) as refused:
        client.open_pulls(REPO)

    assert str(refused.value) == (
        f"GitHub refused to list the open pull requests of {REPO}: the token is not accepted "
        "(Bad credentials)"
    )
    assert bad not in str(refused.value) and refused.value.status == 401


def test_open_pulls_over_pages(standin: GitHubStandin) -> None:
    """Every open pull request is listed, over as many pages as it takes; closed ones are not."""
    for i in range(7):
        standin.add_pull(f"feature/{i}", state="closed" if i in (2, 5) else "open")
    client = token_client(standin, per_page=2)

    found = client.open_pulls(REPO)
    client.close()

    assert found == {1, 2, 4, 5, 7}
    pages = [r.query.get("page", ["1"])[0] for r in ops(standin, "pulls/list")]
    assert pages == ["1", "2", "3"]
    assert all(r.query["state"] == ["open"] for r in ops(standin, "pulls/list"))
    assert standin.violations == []


def test_comment_is_edited_in_place(standin: GitHubStandin) -> None:
    """The preview's comment is posted once and then edited, leaving others' comments (and
    another preview's) alone."""
    number = standin.add_pull("feature/c")
    app = standin.add_app()
    client = app_client(standin, app)
    client.comment(REPO, number, "pr-1", "<!-- deploy-pipeline:preview:pr-11 -->\nnot mine")

    client.comment(REPO, number, "pr-1", "<!-- deploy-pipeline:preview:pr-1 -->\ndeployed")
    client.comment(REPO, number, "pr-1", "<!-- deploy-pipeline:preview:pr-1 -->\nevicted")
    client.close()

    bodies = [c["body"] for c in standin.comments(number)]
    assert bodies == [
        "<!-- deploy-pipeline:preview:pr-11 -->\nnot mine",
        "<!-- deploy-pipeline:preview:pr-1 -->\nevicted",
    ]
    assert {c["user"]["login"] for c in standin.comments(number)} == {"deploy-pipeline[bot]"}
    assert standin.violations == []


def test_clone_url_is_the_repositorys(standin: GitHubStandin) -> None:
    """The clone URL comes from the repository's API record, without credentials."""
    client = token_client(standin)

    assert client.clone_url(REPO) == standin.clone_url(REPO)
    client.close()


def test_reporter_takes_the_apps_token(standin: GitHubStandin) -> None:
    """A run's reporter built from the client's settings posts with the installation token, and
    says a missing permission as the app's."""
    app = standin.add_app(permissions={"metadata": "read", "deployments": "write"})
    client = app_client(standin, app)
    sha = standin.repo().refs["main"]
    settings = client.settings(REPO, sha, run_url="https://ci.example/1")
    pipeline = parse_config(
        "version: 1\ntargets: {sim: {kind: simulated}}\n"
        "services: {web: {type: container, image: nginx:1.27}}\n"
        "environments: {staging: {target: sim}}\n"
    )
    plan = plan_runs(pipeline, environments(pipeline, {}), ["staging"], "deploy")
    logged: list[str] = []

    reporter = GitHubReporter(settings, plan, "deploy", log=logged.append)
    reporter.start()
    problems = reporter.close()
    client.close()

    assert settings.token == client.token(REPO) and settings.app
    assert (
        problems
        == logged
        == [
            "GitHub refused to set the commit status of staging: the GitHub App lacks the "
            'statuses=write permission; grant the app "Commit statuses: write" (its settings → '
            "Permissions), then accept the new permissions on its installation"
        ]
    )
    assert [d["environment"] for d in standin.deployments()] == ["staging"]
    made = ops(standin, "repos/create-deployment")[0]
    assert made.headers["authorization"] == f"token {settings.token}"
    assert settings.token not in repr(settings)


# --- configuration from the environment -----------------------------------------------------


def test_from_environ_token_or_nothing() -> None:
    """GITHUB_TOKEN makes a token client; no credentials at all make none."""
    client = GitHubClient.from_environ(
        {"GITHUB_TOKEN": "ghs_x", "GITHUB_API_URL": "https://ghe.example/api/v3/"}
    )

    assert client is not None and client.app is None
    assert client.token("o/r") == "ghs_x" and client.api_url == "https://ghe.example/api/v3"
    assert GitHubClient.from_environ({}) is None


def test_from_environ_app(tmp_path: Path, standin: GitHubStandin) -> None:
    """An app is configured by its id and its key as text (also with \\n escapes, as pasted
    into one line) or as a file; it wins over GITHUB_TOKEN."""
    app = standin.add_app()
    key_file = tmp_path / "app.pem"
    key_file.write_text(app.private_key)
    one_line = app.private_key.strip().replace("\n", "\\n")
    base = {"GITHUB_APP_ID": str(app.id), "GITHUB_API_URL": standin.base_url}

    from_text = GitHubClient.from_environ({**base, "GITHUB_APP_PRIVATE_KEY": one_line})
    from_file = GitHubClient.from_environ(
        {
            **base,
            "GITHUB_APP_PRIVATE_KEY_FILE": str(key_file),
            "GITHUB_APP_INSTALLATION_ID": str(app.installation_id),
            "GITHUB_TOKEN": TOKEN,
        }
    )

    assert from_text is not None and from_file is not None
    assert from_file.app is not None and from_file.app.installation_id == app.installation_id
    assert from_text.token(REPO) in standin.tokens and from_file.token(REPO) != TOKEN
    assert app.private_key.strip() not in repr(from_file.app)
    from_text.close()
    from_file.close()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"GITHUB_APP_PRIVATE_KEY": "KEY"},
            "GITHUB_APP_PRIVATE_KEY is set but GITHUB_APP_ID is not: set GITHUB_APP_ID to the "
            'app\'s id (its settings page, "App ID")',
        ),
        (
            {"GITHUB_APP_ID": "12"},
            "GITHUB_APP_ID is set but no private key: set GITHUB_APP_PRIVATE_KEY to the PEM text "
            "of a key generated in the app's settings (Private keys), or "
            "GITHUB_APP_PRIVATE_KEY_FILE to the file GitHub downloaded",
        ),
        (
            {"GITHUB_APP_ID": "my-app", "GITHUB_APP_PRIVATE_KEY": "KEY"},
            "GITHUB_APP_ID must be the app's numeric id, got 'my-app'",
        ),
        (
            {"GITHUB_APP_ID": "12", "GITHUB_APP_PRIVATE_KEY": "KEY"},
            "GITHUB_APP_PRIVATE_KEY is not a PEM private key: expected the PEM text GitHub "
            "downloads, from -----BEGIN RSA PRIVATE KEY----- to -----END RSA PRIVATE KEY-----",
        ),
        (
            {"GITHUB_APP_ID": "12", "GITHUB_APP_PRIVATE_KEY_FILE": "/nonexistent/app.pem"},
            "cannot read GITHUB_APP_PRIVATE_KEY_FILE (/nonexistent/app.pem): "
            "No such file or directory",
        ),
    ],
)
def test_half_configured_app(environ: dict[str, str], expected: str) -> None:
    """An app configured by halves is a usage error saying what to set."""
    environ = {k: v.replace("KEY", SECRET_PEM) for k, v in environ.items()}

    with pytest.raises(UsageError) as wrong:
        GitHubClient.from_environ(environ)

    assert str(wrong.value) == expected
    assert "SECRETBODY" not in str(wrong.value)


SECRET_PEM = "-----BEGIN RSA PRIVATE KEY-----\nSECRETBODYSECRETBODY\n-----END RSA PRIVATE KEY-----"


def test_keys_that_are_not_githubs(standin: GitHubStandin) -> None:
    """An EC key, an encrypted key and a non-numeric installation id are refused at start,
    without showing the key."""
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()
    app = standin.add_app()

    messages = []
    for environ in (
        {"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": ec_pem},
        {"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": encrypted},
        {
            "GITHUB_APP_ID": "1",
            "GITHUB_APP_PRIVATE_KEY": app.private_key,
            "GITHUB_APP_INSTALLATION_ID": "the-org",
        },
    ):
        with pytest.raises(UsageError) as wrong:
            GitHubClient.from_environ(environ)
        messages.append(str(wrong.value))

    assert messages[0].startswith("GITHUB_APP_PRIVATE_KEY is not an RSA private key: expected")
    assert messages[1].startswith("GITHUB_APP_PRIVATE_KEY is encrypted with a passphrase:")
    assert messages[2] == "GITHUB_APP_INSTALLATION_ID must be a number, got 'the-org'"
    for pem in (ec_pem, encrypted, app.private_key):
        assert all(key_body(pem) not in m for m in messages)
