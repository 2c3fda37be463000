"""The receiver reading each pull request's own pipeline file (DEPLOY_PIPELINE_SOURCE=
pull-request) on the simulated target: the PR's file is what runs, and a PR without a pipeline
file or with a broken one is told so on its commit, with the message a user can act on. What the
PR's file may reach (secrets, targets, previews) stays the receiver's own file's, and its build
paths stay inside the checkout: each attack of issue 11 §2 is tried here."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from deploy_pipeline.errors import UsageError
from deploy_pipeline.receiver import Receiver
from tests.support.github_standin import GitHubStandin
from tests.support.receiver import ReceiverFactory, deliver, serving, settled
from tests.support.webhooks import SECRET, payload

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


# The receiver's own file: two environments on two targets, and one secret granted to `web`.
OPERATOR = """
version: 1
targets:
  rehearse: {kind: simulated}
  prod: {kind: simulated}
services:
  web: {type: container, image: nginx:1.27, port: 80, public: true, secrets: [SHOP_TOKEN]}
environments:
  staging: {target: rehearse}
  production: {target: prod}
previews: {from: staging}
"""
# The receiver's own variables a pull request's file must never reach.
RECEIVERS = {
    "DEPLOY_PIPELINE_WEBHOOK_SECRET": "webhook-secret-value-1",
    "DEPLOY_PIPELINE_API_TOKEN": "api-token-value-2",
    "GITHUB_APP_PRIVATE_KEY": "private-key-value-3",
    "SHOP_TOKEN": "shop-token-value-4",
}


def serve(
    operator: str, make_receiver: ReceiverFactory, standin: GitHubStandin
) -> Iterator[TestClient]:
    """A receiver installed as a GitHub App, with `operator` as its `-f` file and as the
    repository's default branch, running each PR head's own pipeline file."""
    app = standin.add_app()
    standin.add_repository_files({".deploy-pipeline.yml": operator}, message="the base")
    receiver = make_receiver(operator, standin=standin, app=app, workers=1, source="pull-request")
    with serving(receiver) as test_client:
        yield test_client


@pytest.fixture
def client(make_receiver: ReceiverFactory, standin: GitHubStandin) -> Iterator[TestClient]:
    yield from serve(BASE, make_receiver, standin)


@pytest.fixture
def guarded(
    make_receiver: ReceiverFactory, standin: GitHubStandin, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """A receiver serving OPERATOR, with the receiver's own secrets in its environment."""
    for name, value in RECEIVERS.items():
        monkeypatch.setenv(name, value)
    yield from serve(OPERATOR, make_receiver, standin)


def open_pull(
    client: TestClient,
    standin: GitHubStandin,
    files: dict[str, str | None],
    links: tuple[str, ...] = (),
) -> tuple[int, str, dict[str, Any]]:
    sha = standin.add_repository_files(files, branch="feature", links=links)
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


def refused(standin: GitHubStandin, number: int, sha: str, done: dict[str, Any], said: str) -> None:
    """The delivery failed saying `said`, the commit's `error` status says it, nothing ran."""
    assert done["state"] == "failed" and said in str(done["result"])
    assert done["run_id"] is None
    (status,) = standin.statuses(sha)
    assert (status["state"], status["context"]) == ("error", f"deploy-pipeline/pr-{number}")
    assert status["description"].startswith(f"deploy could not start: {said}")
    assert standin.deployments() == []
    assert standin.violations == []


def test_a_pull_request_cannot_hand_the_receivers_secrets_to_its_services(
    guarded: TestClient, standin: GitHubStandin, caplog: pytest.LogCaptureFixture
) -> None:
    """A PR's file naming the receiver's own variables as `secrets:` (on a new service, or on a
    service the operator grants another secret) is refused on its commit, naming each secret;
    no run starts, so no backend is handed a value, and no value reaches a status or a log."""
    changed = OPERATOR.replace(
        "secrets: [SHOP_TOKEN]}", "secrets: [SHOP_TOKEN, DEPLOY_PIPELINE_API_TOKEN]}"
    ).replace(
        "services:\n",
        "services:\n  leak: {type: job, image: busybox:1, secrets: [DEPLOY_PIPELINE_WEBHOOK_SECRET,"
        " DEPLOY_PIPELINE_API_TOKEN, GITHUB_APP_PRIVATE_KEY]}\n",
    )
    number, sha, done = open_pull(guarded, standin, {".deploy-pipeline.yml": changed})
    granted = "a pull request's service gets only the secrets the receiver's own file names "
    granted += "for the service of the same name"
    assert str(done["result"]).splitlines() == [
        f".deploy-pipeline.yml:7: services.leak.secrets[{i}]: '{name}' is not granted to 'leak' "
        f"by the receiver's pipeline file (granted: none); {granted}"
        for i, name in enumerate(
            [
                "DEPLOY_PIPELINE_WEBHOOK_SECRET",
                "DEPLOY_PIPELINE_API_TOKEN",
                "GITHUB_APP_PRIVATE_KEY",
            ]
        )
    ] + [
        ".deploy-pipeline.yml:8: services.web.secrets[1]: 'DEPLOY_PIPELINE_API_TOKEN' is not "
        f"granted to 'web' by the receiver's pipeline file (granted: SHOP_TOKEN); {granted}"
    ]
    refused(standin, number, sha, done, ".deploy-pipeline.yml:7: services.leak.secrets[0]: ")
    shown = json.dumps([done, standin.statuses(sha)]) + caplog.text
    assert not [value for value in RECEIVERS.values() if value in shown]


def test_a_pull_request_keeps_the_secrets_the_operator_grants_its_service(
    guarded: TestClient, standin: GitHubStandin
) -> None:
    """A PR changing a service that keeps to the secrets the operator's file grants it runs."""
    changed = OPERATOR.replace("image: nginx:1.27", "image: nginx:1.28")
    _, sha, done = open_pull(guarded, standin, {".deploy-pipeline.yml": changed})
    assert done["result"] == "succeeded"
    assert standin.statuses(sha)[-1]["state"] == "success"


def test_a_pull_requests_targets_environments_and_previews_are_ignored(
    guarded: TestClient, standin: GitHubStandin, caplog: pytest.LogCaptureFixture
) -> None:
    """A PR's file pointing its targets at a cluster, its environments at them and `previews.from`
    at production gets the operator's preview all the same (named, cloned and deployed as the
    receiver's file says), and the receiver's log says what was ignored."""
    changed = """
version: 1
targets:
  rehearse: {kind: kubernetes, context: production-cluster}
services:
  web: {type: container, image: nginx:1.28, port: 80, public: true}
environments:
  staging: {target: rehearse}
  production: {target: rehearse}
previews: {from: production, name: "mine-{number}", forks: true}
"""
    caplog.set_level(logging.WARNING, logger="deploy_pipeline.receiver")
    number, _, done = open_pull(guarded, standin, {".deploy-pipeline.yml": changed})
    assert done["result"] == "succeeded"
    events = guarded.get(f"/api/runs/{done['run_id']}").json()["events"]
    assert {(e["environment"], e["target"]) for e in events if e["service"]} == {
        (f"pr-{number}", "rehearse")
    }
    listed = guarded.get("/api/environments").json()["environments"]
    preview = next(e for e in listed if e["pull_request"] == number)
    assert (preview["name"], preview["source"]) == (f"pr-{number}", "staging")
    assert (
        "the pull request's .deploy-pipeline.yml sets targets, environments, previews: ignored, "
        "the receiver's own file decides them"
    ) in caplog.messages


ESCAPE = "../" * 12


@pytest.mark.parametrize(
    ("build", "files", "links", "said"),
    [
        pytest.param(
            f"{{context: {ESCAPE}}}", {}, (), "7: services.api.build.context", id="context"
        ),
        pytest.param(
            f"{{context: ., dockerfile: {ESCAPE}etc/hostname}}",
            {},
            (),
            "7: services.api.build.dockerfile",
            id="dockerfile",
        ),
        pytest.param(
            "./api", {"api": "/etc"}, ("api",), "7: services.api.build.context", id="linked-context"
        ),
        pytest.param(
            "./api",
            {"api/Dockerfile": "/etc/hostname"},
            ("api/Dockerfile",),
            "7: services.api.build.dockerfile",
            id="linked-dockerfile",
        ),
    ],
)
def test_a_pull_requests_build_paths_stay_inside_its_checkout(
    guarded: TestClient,
    standin: GitHubStandin,
    build: str,
    files: dict[str, str | None],
    links: tuple[str, ...],
    said: str,
) -> None:
    """A context or Dockerfile climbing out of the checkout, or a committed link out of it
    (`api -> /etc`), is refused on the commit with its line and key; nothing is built."""
    changed = OPERATOR.replace(
        "services:\n", f"services:\n  api: {{type: application, build: {build}}}\n"
    )
    files = {".deploy-pipeline.yml": changed, **files}
    number, sha, done = open_pull(guarded, standin, files, links)
    refused(
        standin,
        number,
        sha,
        done,
        f".deploy-pipeline.yml:{said}: must stay inside the repository",
    )


def test_a_pipeline_file_committed_as_a_link_is_not_written_through(
    guarded: TestClient, standin: GitHubStandin, tmp_path: Path
) -> None:
    """A PR whose .deploy-pipeline.yml is a link to a file of the receiver's machine does not
    get the API's text written over that file: the link is replaced, the file left as it was."""
    victim = tmp_path / "victim.txt"
    victim.write_text("the receiver's own file\n")
    *_, done = open_pull(
        guarded, standin, {".deploy-pipeline.yml": str(victim)}, (".deploy-pipeline.yml",)
    )
    assert done["state"] == "failed"
    assert victim.read_text() == "the receiver's own file\n"


def test_a_preview_whose_last_push_was_refused_is_still_deleted_on_close(
    guarded: TestClient, standin: GitHubStandin
) -> None:
    """A PR deployed once, then refused (a secret not granted), is deleted when it closes: a
    refused file is not kept, so the delete reads the receiver's own file."""
    number, _, done = open_pull(guarded, standin, {".deploy-pipeline.yml": OPERATOR})
    assert done["result"] == "succeeded"
    bad = OPERATOR.replace("secrets: [SHOP_TOKEN]", "secrets: [DEPLOY_PIPELINE_API_TOKEN]")
    sha = standin.add_repository_files({".deploy-pipeline.yml": bad}, branch="feature")
    pushed = payload("pull_request", "synchronize", number=number, sha=sha)
    assert settled(guarded, deliver(guarded, "pull_request", pushed).json()["queued"])["state"] == (
        "failed"
    )
    closed = payload("pull_request", "closed", number=number, sha=sha)
    done = settled(guarded, deliver(guarded, "pull_request", closed).json()["queued"])
    assert (done["state"], done["result"]) == ("done", "succeeded")
    listed = guarded.get("/api/environments").json()["environments"]
    assert f"pr-{number}" not in {e["name"] for e in listed}
