"""`GET /api/environments/{name}/releases` (DESIGN.md §10) against `deploy-pipeline serve` running
as a process on loopback, on SQLite and on PostgreSQL: the releases that real runs on the
simulated target made, as `history --format json` gives them; the limit, the unknown name and the
token as a caller reads them; every answer checked against the OpenAPI description."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from jsonschema import Draft202012Validator

from deploy_pipeline.receiver.openapi import DESCRIPTION
from tests.support.eventually import eventually
from tests.support.serve import Server
from tests.support.webhooks import payload, signed

pytest_plugins = ["tests.support.postgres_testbed"]

TOKEN = "releases-token-0123"
# `broken` deploys to a target that fails web's deploy: a failed run, no release.
PIPELINE = """
version: 1
stages: [data, apps]
targets:
  rehearse: {kind: simulated}
  faulty: {kind: simulated, fail: {web: deploy}}
services:
  db: {type: database, image: postgres:16, stage: data}
  api: {type: application, build: ./api, port: 8000, stage: apps, env: {MODE: fast}}
  web: {type: container, image: nginx:1.27, port: 80, public: true, stage: apps}
environments:
  staging: {target: rehearse}
  broken: {target: faulty}
previews: {from: staging}
"""
ROUTE = "/api/environments/{name}/releases"
DIGEST = re.compile(r"^[a-z0-9./:-]+@sha256:[0-9a-f]{64}$")


@pytest.fixture(params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest,
    write_config: Callable[[str], Path],
    own_state: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Server]:
    """The receiver, with an API token, on a SQLite file or a fresh PostgreSQL schema."""
    monkeypatch.setenv("DEPLOY_PIPELINE_API_TOKEN", TOKEN)
    if request.param == "postgresql":  # the CLI this test runs reads it too
        monkeypatch.setenv("DEPLOY_PIPELINE_DATABASE_URL", request.getfixturevalue("database_url"))
    s = Server(write_config(PIPELINE), own_state)
    try:
        yield s.start()
    finally:
        s.stop()


def get(server: Server, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    """The status and JSON body of a GET, 2xx or not."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(server.url(path), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def releases(server: Server, name: str, query: str = "", token: str | None = TOKEN) -> Any:
    """`GET /api/environments/{name}/releases`'s status and body, the body checked against the
    OpenAPI description of the route and status."""
    status, body = get(server, ROUTE.format(name=name) + query, token)
    answers = DESCRIPTION["paths"][ROUTE]["get"]["responses"]
    assert str(status) in answers, f"{ROUTE} answered {status}, not described"
    schema = answers[str(status)]["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": DESCRIPTION["components"]}).validate(body)
    return status, body


def settled(server: Server, delivery: str) -> dict[str, Any]:
    found: dict[str, Any] = eventually(
        lambda: get(server, f"/api/deliveries/{delivery}")[1],
        lambda d: d.get("state") not in ("queued", "running"),
        message=f"delivery {delivery} settling",
    )
    return found


def push(server: Server, action: str, number: int, sha: str) -> dict[str, Any]:
    """A signed pull_request delivery, once its run is over."""
    body = json.dumps(payload("pull_request", action, number=number, sha=sha)).encode()
    request = urllib.request.Request(
        server.url("/webhooks/github"), data=body, headers=signed(body, "pull_request")
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return settled(server, json.loads(answer.read())["queued"])


def order(server: Server, name: str, action: str) -> dict[str, Any]:
    """An action ordered through the write API, once its run is over."""
    request = urllib.request.Request(
        server.url(f"/api/environments/{name}/{action}"),
        data=b"",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return settled(server, json.loads(answer.read())["queued"])


def history(config: Path, state: Path, name: str, *args: str) -> Any:
    """`deploy-pipeline history --format json` on the same state database, as a user runs it."""
    command = [sys.executable, "-m", "deploy_pipeline", "history", "-f", str(config)]
    done = subprocess.run(
        [*command, "-e", name, "--format", "json", *args],
        env={**os.environ, "DEPLOY_PIPELINE_STATE": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_previews_releases_are_its_history_newest_first(server: Server) -> None:
    """Two pushes to a pull request make releases v1 and v2 of its preview: the API lists v2 then
    v1 with the head commits, each service's image by digest, target and settings — the JSON
    `history --format json` prints; `?limit=1` gives v2 alone, as `--limit 1` does."""
    first, second = "a1" * 20, "b2" * 20
    assert push(server, "opened", 7, first)["result"] == "succeeded"
    assert push(server, "synchronize", 7, second)["result"] == "succeeded"

    status, doc = releases(server, "pr-7")
    assert status == 200
    assert doc["environment"] == "pr-7"
    assert [(r["id"], r["action"], r["status"], r["commit"]) for r in doc["releases"]] == [
        (2, "deploy", "succeeded", second),
        (1, "deploy", "succeeded", first),
    ]
    newest = doc["releases"][0]
    assert sorted(newest["services"]) == ["api", "db", "web"]
    assert DIGEST.match(newest["services"]["api"]["image"]), newest["services"]["api"]
    assert newest["services"]["api"]["target"] == "rehearse"
    assert newest["services"]["api"]["env"] == {"MODE": "fast"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", newest["finished"])
    assert doc == history(server.config, server.state, "pr-7")

    status, one = releases(server, "pr-7", "?limit=1")
    assert status == 200 and [r["id"] for r in one["releases"]] == [2]
    assert one == history(server.config, server.state, "pr-7", "--limit", "1")


def test_a_failed_deploy_is_listed_failed_and_a_new_environment_has_none(server: Server) -> None:
    """A deploy that fails is listed `failed`, with no number and no services, as `history`
    lists it; an environment never deployed answers an empty list, not a 404."""
    done = order(server, "broken", "deploy")
    assert done["result"] == "failed"
    status, doc = releases(server, "broken")
    assert status == 200
    [failed] = doc["releases"]
    assert (failed["id"], failed["status"], failed["run"]) == (None, "failed", done["run_id"])
    assert "services" not in failed
    assert doc == history(server.config, server.state, "broken")
    assert releases(server, "staging") == (200, {"environment": "staging", "releases": []})


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_bad_limit_an_unknown_name_or_no_token_is_refused_in_words(server: Server) -> None:
    """A limit that is not a whole number from 1 up is a 400 saying so; one past what a database
    holds means all; an unknown environment is a 404 naming it and where the names are; without
    the bearer token, or with a wrong one, a 401."""
    for limit in ("0", "-1", "two", "²", "1.5", ""):
        assert releases(server, "staging", "?" + urlencode({"limit": limit})) == (
            400,
            {"error": f"limit is a whole number from 1 up, got {limit!r}"},
        )
    assert releases(server, "staging", "?limit=" + "9" * 40)[0] == 200
    assert releases(server, "pr-9") == (
        404,
        {"error": "no environment named 'pr-9' (GET /api/environments lists them)"},
    )
    for token in (None, "wrong"):
        assert releases(server, "staging", token=token) == (
            401,
            {"error": "a bearer token is needed (DEPLOY_PIPELINE_API_TOKEN)"},
        )
