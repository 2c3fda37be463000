"""The receiver reading each pull request's own pipeline file (DEPLOY_PIPELINE_SOURCE=
pull-request) on the simulated target: the PR's file is what runs, and a PR without a pipeline
file or with a broken one is told so on its commit, with the message a user can act on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from deploy_pipeline.errors import UsageError
from deploy_pipeline.github import GitHubApp, GitHubClient
from deploy_pipeline.receiver import Receiver, create_app
from tests.github_standin import GitHubStandin
from tests.test_receiver import SECRET, deliver, payload, settled

BASE = """
version: 1
targets:
  rehearse: {kind: simulated}
services:
  web: {type: container, image: nginx:1.27, port: 80, public: true}
environments:
  staging: {target: rehearse}
previews: {from: staging}
"""


@pytest.fixture
def client(write_config: Callable[[str], Path], standin: GitHubStandin) -> Iterator[TestClient]:
    app = standin.add_app()
    standin.add_repository_files({".deploy-pipeline.yml": BASE}, message="the base")
    github = GitHubClient(
        app=GitHubApp(str(app.id), app.private_key), api_url=standin.base_url, write_pause=0.01
    )
    receiver = Receiver(
        write_config(BASE), secret=SECRET, github=github, workers=1, source="pull-request"
    )
    with TestClient(create_app(receiver)) as test_client:
        yield test_client


def open_pull(
    client: TestClient, standin: GitHubStandin, files: dict[str, str | None]
) -> tuple[int, str, dict[str, Any]]:
    sha = standin.add_repository_files(files, branch="feature")
    number = standin.add_pull("feature", head_sha=sha)
    body = payload("pull_request", "opened", number=number, sha=sha)
    return number, sha, settled(client, deliver(client, "pull_request", body).json()["queued"])


def test_the_pull_requests_own_pipeline_file_is_what_runs(
    client: TestClient, standin: GitHubStandin
) -> None:
    """A PR adding a service to its pipeline file gets a preview with that service, and the
    status page's view of the preview shows it."""
    changed = BASE.replace(
        "services:\n", "services:\n  api: {type: container, image: api:2, port: 8000}\n"
    )
    number, _, done = open_pull(client, standin, {".deploy-pipeline.yml": changed})
    assert done["result"] == "succeeded"
    events = client.get(f"/api/runs/{done['run_id']}").json()["events"]
    deployed = {e["service"] for e in events if e["status"] == "succeeded" and e["service"]}
    assert deployed == {"api", "web"}
    listed = client.get("/api/environments").json()["environments"]
    assert f"pr-{number}" in {e["name"] for e in listed}
    view = client.get(f"/api/environments/pr-{number}").json()  # the status page's view
    assert {svc["name"] for stage in view["stages"] for svc in stage["services"]} == {"api", "web"}


@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({".deploy-pipeline.yml": None}, "has no .deploy-pipeline.yml at"),
        (
            {".deploy-pipeline.yml": BASE.replace("port: 80,", "port: eighty,")},
            "services.web.port: expected",
        ),
    ],
)
def test_a_pull_request_without_a_good_pipeline_file_is_told_on_its_commit(
    client: TestClient, standin: GitHubStandin, files: dict[str, str | None], said: str
) -> None:
    """No pipeline file at the head, or one with an error: the delivery fails with the message
    and the commit gets an `error` status saying it; nothing is deployed."""
    number, sha, done = open_pull(client, standin, files)
    assert done["state"] == "failed" and said in str(done["result"])
    (status,) = standin.statuses(sha)
    assert (status["state"], status["context"]) == ("error", f"deploy-pipeline/pr-{number}")
    assert status["description"].startswith("deploy could not start: ")
    assert said in status["description"]
    assert standin.deployments() == []
    assert standin.violations == []


def test_reading_pull_requests_needs_github(write_config: Callable[[str], Path]) -> None:
    """DEPLOY_PIPELINE_SOURCE=pull-request without GitHub access, or an unknown source, is
    refused at start, saying what to set."""
    with pytest.raises(UsageError, match="set GITHUB_TOKEN, or GITHUB_APP_ID"):
        Receiver(write_config(BASE), secret=SECRET, source="pull-request")
    with pytest.raises(UsageError, match="one of file, pull-request, got 'git'"):
        Receiver(write_config(BASE), secret=SECRET, source="git")
