"""The Action run the way GitHub runs it: nektos/act builds the repo's Dockerfile and runs
`uses: ./` in a workflow, with INPUT_* from `with:`, outputs and the job summary read back from
act, GitHub's REST API played by the stand-in on loopback, and the deployments really done."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.action_testbed import ActRun, act, copy_action, require_act
from tests.support.docker_testbed import HTTPD, DockerBed, busybox_context
from tests.support.github_standin import REPO, TOKEN, GitHubStandin
from tests.support.webhooks import pr_event

pytestmark = pytest.mark.engine

CANARY = "canary-not-a-secret-to-act-7d2e"  # given as a plain variable: only our mask hides it

PIPELINE = """
version: 1
stages: [backend, frontend]
targets:
  laptop: {kind: docker}
  rehearse: {kind: simulated}
services:
  api: {type: application, build: ./web, port: 8080, health: /healthz, stage: backend,
        secrets: [API_TOKEN]}
  web: {type: application, build: ./web, port: 8080, health: /healthz, public: true,
        stage: frontend}
  search: {type: application, build: ./web, port: 8080, stage: frontend}
environments:
  staging: {target: laptop, skip: [search]}
  rehearsal: {target: rehearse}
previews: {from: staging}
"""

WORKFLOW = """
name: deploy
on: [push, pull_request]
jobs:
  deploy:
    runs-on: ubuntu-latest
    permissions: {statuses: write, deployments: write, pull-requests: write}
    steps:
      - uses: actions/checkout@v4
      - id: dp
        uses: ./
        with:
          action: ${{ github.event_name == 'pull_request' && 'preview' || 'deploy' }}
          environment: ${{ github.event_name == 'push' && 'rehearsal' || '' }}
          github-api-url: ${{ vars.API_URL }}
        env:
          API_TOKEN: ${{ vars.CANARY }}
      - run: echo "after the action, status=${{ steps.dp.outputs.status }}"
"""


def make_repo(root: Path, workflow: str, pipeline: str) -> Path:
    """A repository using the Action from its own root, with a pipeline of busybox services."""
    copy_action(root)
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "deploy.yml").write_text(workflow)
    (root / ".deploy-pipeline.yml").write_text(pipeline)
    busybox_context(root / "web", HTTPD, extra="EXPOSE 8080")
    (root / ".gitignore").write_text(".deploy-pipeline/\n")

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=root,
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "the shop")
    git("remote", "add", "origin", f"https://github.com/{REPO}.git")
    return root


@pytest.fixture
def repo(tmp_path: Path, docker_env: DockerBed) -> Iterator[Path]:
    """The shop's repository, deploying `rehearsal` on push and previews on pull requests."""
    require_act(docker_env)
    yield make_repo(tmp_path / "repo", WORKFLOW, PIPELINE)


def head(repo: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def run(bed: DockerBed, repo: Path, standin: GitHubStandin, event: str, *args: str) -> ActRun:
    result = act(
        bed,
        repo,
        event,
        "-s",
        f"GITHUB_TOKEN={TOKEN}",
        "--var",
        f"API_URL={standin.base_url}",
        "--var",
        f"CANARY={CANARY}",
        *args,
    )
    if not result.lines:
        pytest.fail(f"act printed nothing it could read (exit {result.code}):\n{result.stderr}")
    return result


def test_a_push_deploys_on_the_simulated_target_with_outputs_and_a_summary(
    repo: Path, standin: GitHubStandin, docker_env: DockerBed
) -> None:
    """On push, the step deploys `rehearsal`: the job succeeds, the outputs and the job summary
    come back through act, the commit status and deployment end in success, the plain variable
    passed as a service's secret is masked in the whole log, and the image is at most 150 MB."""
    result = run(docker_env, repo, standin, "push")
    assert result.succeeded, result.log[-3000:]
    outputs = result.outputs("dp")
    assert outputs["status"] == "succeeded"
    services = json.loads(outputs["services"])
    assert services["web"]["url"] == "http://web.rehearsal.rehearse.simulated"
    assert "after the action, status=succeeded" in result.log
    assert "flowchart LR" in result.summary
    assert "| **api** | backend | ✅ succeeded |" in result.summary
    shown = [line for line in result.lines if line.get("command") != "add-mask"]
    assert CANARY not in json.dumps(shown)  # the mask's own command is the only place it is
    sha = head(repo)
    final = [s for s in standin.statuses(sha) if s["context"] == "deploy-pipeline/rehearsal"]
    assert final[-1]["state"] == "success"
    (deployment,) = standin.deployments()
    assert [s["state"] for s in standin.deployment_statuses(deployment["id"])] == [
        "in_progress",
        "success",
    ]
    assert standin.violations == []
    size = int(docker_env.cli("image", "inspect", "-f", "{{.Size}}", "act-dockeraction:latest"))
    assert size <= 150_000_000, f"the Action's image is {size / 1e6:.0f} MB, over 150 MB"


def test_a_pull_request_preview_is_deployed_on_docker_then_deleted(
    repo: Path, standin: GitHubStandin, docker_env: DockerBed, tmp_path: Path
) -> None:
    """opened: the preview (staging's clone, search skipped) runs on the Docker engine and its
    public URL answers; the PR has one comment and a deployment with that URL. closed: the
    containers are gone and the deployment is inactive."""
    sha = head(repo)
    number = standin.add_pull("feature", head_sha=sha)
    name = f"pr-{number}"
    result = run(
        docker_env, repo, standin, "pull_request", "-e", pr_event(tmp_path, "opened", number, sha)
    )
    assert result.succeeded, result.log[-3000:]
    url = result.outputs("dp")["environment-url"]
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:
        assert answer.read().strip() == b"ok"
    (comment,) = standin.comments(number)
    assert f"Skipped in `{name}`: `search`" in comment["body"]
    (deployment,) = standin.deployments()
    assert deployment["environment"] == name and deployment["transient_environment"] is True
    assert standin.deployment_statuses(deployment["id"])[-1]["environment_url"] == url
    running = docker_env.cli(
        "ps", "-q", "--filter", f"label=io.deploy-pipeline.environment={name}"
    ).split()
    assert len(running) == 2  # api and web; search stays skipped

    result = run(
        docker_env, repo, standin, "pull_request", "-e", pr_event(tmp_path, "closed", number, sha)
    )
    assert result.succeeded, result.log[-3000:]
    assert not docker_env.cli(
        "ps", "-aq", "--filter", f"label=io.deploy-pipeline.environment={name}"
    )
    assert standin.deployment_statuses(deployment["id"])[-1]["state"] == "inactive"
    assert len(standin.comments(number)) == 1
    assert standin.violations == []


MOVES_PIPELINE = """
version: 1
stages: [backend, frontend]
targets:
  laptop: {kind: docker}
services:
  api: {type: application, build: ./web, port: 8080, health: /healthz, stage: backend}
  web: {type: application, build: ./web, port: 8080, health: /healthz, public: true,
        stage: frontend, env: {WHERE: "${environment}"}}
environments:
  STAGING: {target: laptop}
  PRODUCTION: {target: laptop, production: true}
"""

PROMOTE_WORKFLOW = """
name: release
on: [push]
jobs:
  staging:
    runs-on: ubuntu-latest
    permissions: {statuses: write, deployments: write}
    steps:
      - uses: actions/checkout@v4
      - id: staging
        uses: ./
        with:
          environment: STAGING
          github-api-url: ${{ vars.API_URL }}
      - id: again
        uses: ./
        with:
          environment: STAGING
          github-api-url: ${{ vars.API_URL }}
      - id: back
        uses: ./
        with:
          action: rollback
          to: 1
          environment: STAGING
          github-api-url: ${{ vars.API_URL }}
  production:
    needs: staging
    runs-on: ubuntu-latest
    permissions: {statuses: write, deployments: write}
    steps:
      - uses: actions/checkout@v4
      - id: production
        uses: ./
        with:
          action: promote
          from: STAGING
          environment: PRODUCTION
          github-api-url: ${{ vars.API_URL }}
      - run: echo "production is release ${{ steps.production.outputs.release }}"
"""


def test_a_workflow_deploys_and_rolls_back_staging_then_promotes_it_to_production(
    tmp_path: Path, standin: GitHubStandin, docker_env: DockerBed
) -> None:
    """A job deploys staging on the Docker engine twice and rolls it back with `to: 1`; a
    second job, on a runner of its own with no state database, promotes it to production with
    `action: promote` and `from:`: the source's release is read back from the target, no build
    or test runs, production's outputs name its URL (which answers), its services by digest
    and its release, its containers run staging's images, the summary says what was promoted
    from where, and each move has a Deployment describing it, production's with its URL."""
    require_act(docker_env)
    suffix = uuid.uuid4().hex[:6]
    staging, production = f"stg-{suffix}", f"prd-{suffix}"

    def named(text: str) -> str:
        return text.replace("STAGING", staging).replace("PRODUCTION", production)

    root = make_repo(tmp_path / "repo", named(PROMOTE_WORKFLOW), named(MOVES_PIPELINE))
    result = run(docker_env, root, standin, "push")
    assert result.succeeded, result.log[-3000:]

    assert [result.outputs(step)["release"] for step in ("staging", "again", "back")] == [
        "1",
        "2",
        "3",
    ]
    assert (
        f"Rollback to v1, its images and its settings: recorded as release **v3** of "
        f"`{staging}`" in result.summary
    )

    # the rollback to v1 left the containers v1 started running (the same images and settings):
    # they keep v1's label, so v1 is what the target says runs, and what is promoted
    assert f"read back from laptop: release v1 of {staging} on laptop: deployed" in result.log
    outputs = result.outputs("production")
    assert outputs["status"] == "succeeded"
    assert outputs["release"] == "1"
    assert "production is release 1" in result.log
    url = outputs["environment-url"]
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:
        assert answer.read().strip() == b"ok"
    promoted = json.loads(outputs["services"])
    assert sorted(promoted) == ["api", "web"]
    assert all("sha256:" in v["image"] for v in promoted.values())  # by digest, never a tag
    moved = [line for line in result.log.splitlines() if f"{production}/laptop" in line]
    assert moved and not [line for line in moved if " build " in line or " test " in line]

    def images(environment: str) -> dict[str, str]:
        ids = docker_env.cli(
            "ps", "-q", "--filter", f"label=io.deploy-pipeline.environment={environment}"
        ).split()
        found = {}
        for line in docker_env.cli(
            "inspect",
            "-f",
            '{{index .Config.Labels "io.deploy-pipeline.service"}} {{.Image}}',
            *ids,
        ).splitlines():
            service, image = line.split()
            found[service] = image
        return found

    assert images(production) == images(staging)
    assert sorted(images(production)) == ["api", "web"]
    assert (
        f"Promotion of the images of `{staging}`'s latest release, with `{production}`'s own "
        f"settings: recorded as release **v1** of `{production}` (commit `{head(root)[:7]}`)."
    ) in result.summary

    sha = head(root)
    final = [s for s in standin.statuses(sha) if s["context"] == f"deploy-pipeline/{production}"]
    assert final[-1]["state"] == "success"
    assert [d["description"] for d in standin.deployments()] == [
        f"deploy-pipeline deploy of {staging}",
        f"deploy-pipeline deploy of {staging}",
        f"deploy-pipeline rollback of {staging} to v1",
        f"deploy-pipeline promote of {production} from {staging}",
    ]
    (deployment,) = [d for d in standin.deployments() if d["environment"] == production]
    assert deployment["production_environment"] is True
    states = standin.deployment_statuses(deployment["id"])
    assert [s["state"] for s in states] == ["in_progress", "success"]
    assert states[-1]["environment_url"] == url
    assert standin.violations == []
