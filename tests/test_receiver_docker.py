"""A pull request's preview through its whole life on the real Docker engine, the receiver
installed as a GitHub App and reading each push's pipeline file and build context from the PR
head (the contents API, then a shallow git fetch over HTTP from the stand-in's git server)."""

from __future__ import annotations

import dataclasses
import urllib.request
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.support.docker_testbed import BUSYBOX, DockerBed
from tests.support.github_standin import GitHubStandin
from tests.support.receiver import ReceiverFactory, deliver, serving, settled
from tests.support.webhooks import payload

pytestmark = pytest.mark.engine

PIPELINE = """
version: 1
stages: [backend, frontend]
targets:
  laptop: {kind: docker}
services:
  api: {type: application, build: ./web, port: 8080, health: /healthz, stage: backend}
  web: {type: application, build: ./web, port: 8080, health: /healthz, public: true,
        stage: frontend}
  search: {type: application, build: ./web, port: 8080, stage: frontend}
environments:
  staging: {target: laptop, skip: [search]}
previews: {from: staging}
"""

SERVE = (  # /healthz and /version (the commit's web/version file) on port 8080
    "/bin/busybox mkdir -p /www && /bin/busybox echo ok > /www/healthz"
    " && /bin/busybox cp /version /www/version && exec /bin/busybox httpd -f -p 8080 -h /www"
)
DOCKERFILE = f"""FROM scratch
COPY busybox /bin/busybox
COPY version /version
EXPOSE 8080
CMD ["/bin/busybox", "sh", "-c", "{SERVE}"]
"""


@pytest.fixture
def client(
    make_receiver: ReceiverFactory, standin: GitHubStandin, docker_env: DockerBed
) -> Iterator[TestClient]:
    """A receiver installed as a GitHub App, running each PR head's own pipeline file."""
    app = standin.add_app(
        permissions={
            "contents": "read",
            "pull_requests": "write",
            "statuses": "write",
            "deployments": "write",
        }
    )
    standin.add_repository_files(
        {
            ".deploy-pipeline.yml": PIPELINE,
            "web/Dockerfile": DOCKERFILE,
            "web/busybox": BUSYBOX.read_bytes(),
            "web/version": "main",
        },
        executable=["web/busybox"],
        message="the shop",
    )
    receiver = make_receiver(PIPELINE, standin=standin, app=app, workers=1, source="pull-request")
    with serving(receiver) as test_client:
        yield test_client


def push(standin: GitHubStandin, version: str, number: int | None = None) -> tuple[int, str]:
    """A commit on the PR's branch changing web/version; opens the PR on the first."""
    sha = standin.add_repository_files({"web/version": version}, branch="feature")
    if number is None:
        return standin.add_pull("feature", head_sha=sha), sha
    pulls = standin.repo().pulls
    pulls[number] = dataclasses.replace(pulls[number], head_sha=sha)
    return number, sha


def served(standin: GitHubStandin, path: str) -> str:
    (deployment,) = standin.deployments()[-1:]
    url = standin.deployment_statuses(deployment["id"])[-1]["environment_url"]
    with urllib.request.urlopen(f"{url}{path}", timeout=5) as answer:
        return str(answer.read().decode().strip())


def test_open_push_push_close_on_docker_from_the_pull_request_head(
    client: TestClient, standin: GitHubStandin, docker_env: DockerBed
) -> None:
    """Each push's own build context is what the preview serves; GitHub shows a success
    status per commit, a deployment per push and one comment; closing removes every container
    (the skipped service never ran) and makes the deployments inactive."""
    number, first = push(standin, "v1")
    name = f"pr-{number}"
    shas = [first]
    answer = deliver(
        client, "pull_request", payload("pull_request", "opened", number=number, sha=first)
    )
    assert settled(client, answer.json()["queued"], timeout=120)["result"] == "succeeded"
    assert served(standin, "/version") == "v1"
    for version, action in (("v2", "synchronize"), ("v3", "synchronize")):
        _, sha = push(standin, version, number)
        shas.append(sha)
        body = payload("pull_request", action, number=number, sha=sha)
        assert (
            settled(client, deliver(client, "pull_request", body).json()["queued"], 120)["result"]
            == "succeeded"
        )
        assert served(standin, "/version") == version

    running = docker_env.cli("ps", "-q", "--filter", f"label=io.deploy-pipeline.environment={name}")
    assert len(running.split()) == 2  # api and web: search stays skipped in the preview
    fetched = [r for r in standin.git_requests if r.path.endswith("/git-upload-pack")]
    assert len(fetched) >= 3, "each push's build context came over git"

    closed = payload("pull_request", "closed", number=number, sha=shas[-1])
    assert (
        settled(client, deliver(client, "pull_request", closed).json()["queued"], 120)["result"]
        == "succeeded"
    )
    assert not docker_env.cli(
        "ps", "-aq", "--filter", f"label=io.deploy-pipeline.environment={name}"
    )
    for sha in shas:
        assert [s["state"] for s in standin.statuses(sha)][-1] == "success", sha
    deployments = standin.deployments()
    assert len(deployments) == 3
    assert {standin.deployment_statuses(d["id"])[-1]["state"] for d in deployments} == {"inactive"}
    (comment,) = standin.comments(number)
    assert "is gone" in comment["body"]
    listing = client.get("/api/environments").json()["environments"]
    assert name not in {e["name"] for e in listing}
    assert standin.violations == []
