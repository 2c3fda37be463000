"""The GitHub stand-in, driven by PyGithub: GitHub's shapes, checks, state and failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from github import (
    Auth,
    BadCredentialsException,
    Github,
    GithubException,
    GithubRetry,
    RateLimitExceededException,
    UnknownObjectException,
)
from urllib3 import Retry

from tests.support.github_standin import BOT, REPO, TOKEN, GitHubStandin, description


def client(standin: GitHubStandin, token: str | None = TOKEN, **options: Any) -> Github:
    """PyGithub pointed at the stand-in, without its pacing (by default it waits 0.25 s between
    requests and 1 s between writes) and, unless `options` say, without retries."""
    options = {"retry": None, "seconds_between_requests": 0, "seconds_between_writes": 0, **options}
    auth = Auth.Token(token) if token else None
    return Github(base_url=standin.base_url, auth=auth, **options)


@pytest.fixture
def gh(standin: GitHubStandin) -> Iterator[Github]:
    """PyGithub pointed at the stand-in, without retries."""
    with client(standin) as github:
        yield github


def call(
    standin: GitHubStandin, method: str, path: str, body: Any = None, token: str = TOKEN
) -> requests.Response:
    """One plain HTTP request, for what PyGithub cannot send."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
    return requests.request(
        method, f"{standin.base_url}{path}", json=body, headers=headers, timeout=10
    )


def main_sha(standin: GitHubStandin) -> str:
    return standin.repo().refs["main"]


def test_commit_statuses_round_trip(standin: GitHubStandin, gh: Github) -> None:
    """Commit statuses PyGithub creates are kept, listed newest first and combined per context."""
    sha = main_sha(standin)
    commit = gh.get_repo(REPO).get_commit(sha)
    commit.create_status("pending", target_url="https://ci.example/1", context="deploy/staging")
    done = commit.create_status("success", description="deployed", context="Deploy/Staging")
    commit.create_status("pending", context="lint")

    assert (done.state, done.description, done.creator.login) == ("success", "deployed", BOT)
    assert done.url == f"{standin.base_url}/repos/{REPO}/statuses/{sha}"
    assert [s.state for s in commit.get_statuses()] == ["pending", "success", "pending"]
    combined = commit.get_combined_status()
    assert (combined.state, combined.total_count) == ("pending", 2)  # contexts ignore case
    assert [s["context"] for s in standin.statuses(sha)] == [
        "deploy/staging",
        "Deploy/Staging",
        "lint",
    ]
    assert standin.violations == []


def test_deployment_and_its_statuses(standin: GitHubStandin, gh: Github) -> None:
    """A deployment with every option, then in_progress and success with environment and log
    URLs, reads back the way GitHub shows it."""
    repo = gh.get_repo(REPO)
    deployment = repo.create_deployment(
        ref="main",
        environment="preview-7",
        description="Preview of #7",
        payload={"run": 41},
        transient_environment=True,
        production_environment=False,
        auto_merge=False,
        required_contexts=[],
    )
    deployment.create_status("in_progress", description="rolling out")
    # PyGithub's create_status has no log_url: its requester sends what the description allows
    _, success = gh.requester.requestJsonAndCheck(
        "POST",
        f"{deployment.url}/statuses",
        input={
            "state": "success",
            "log_url": "https://ci.example/runs/41",
            "environment_url": "https://preview-7.example",
        },
    )

    assert (deployment.sha, deployment.environment) == (main_sha(standin), "preview-7")
    assert (deployment.transient_environment, deployment.production_environment) == (True, False)
    assert deployment.payload == {"run": 41}
    assert success["target_url"] == success["log_url"] == "https://ci.example/runs/41"
    assert success["environment"] == "preview-7"  # taken from the deployment
    kept = standin.deployment_statuses(deployment.id)
    assert [s["state"] for s in kept] == ["in_progress", "success"]
    assert kept[1]["environment_url"] == "https://preview-7.example"
    assert [s.state for s in deployment.get_statuses()] == ["success", "in_progress"]
    assert repo.get_deployments(environment="preview-7").totalCount == 1
    assert repo.get_deployments(environment="production").totalCount == 0
    assert repo.get_deployment(deployment.id).ref == "main"
    sent = next(r.body for r in standin.requests if r.operation_id == "repos/create-deployment")
    assert sent["auto_merge"] is False and sent["required_contexts"] == []
    assert standin.violations == []


def test_success_makes_earlier_deployments_inactive(standin: GitHubStandin, gh: Github) -> None:
    """A success in an environment adds `inactive` to earlier successful deployments there that
    are neither transient nor production, as auto_inactive's description says."""
    repo = gh.get_repo(REPO)

    def deploy(environment: str, **options: Any) -> int:
        made = repo.create_deployment(
            ref="main", environment=environment, required_contexts=[], **options
        )
        made.create_status("success")
        return made.id

    older = deploy("staging", production_environment=False)
    transient = deploy("staging", transient_environment=True)
    production = deploy("production")
    deploy("production")
    deploy("staging", production_environment=False)

    def states(deployment_id: int) -> list[str]:
        return [s["state"] for s in standin.deployment_statuses(deployment_id)]

    assert states(older) == ["success", "inactive"]
    assert states(transient) == ["success"]
    assert states(production) == ["success"]
    assert standin.violations == []


def test_only_an_inactive_deployment_is_deleted(standin: GitHubStandin, gh: Github) -> None:
    """Deleting an active deployment is refused with 422 while others exist; once a status made
    it inactive, the delete succeeds."""
    repo = gh.get_repo(REPO)
    first = repo.create_deployment(ref="main", environment="qa", required_contexts=[])
    second = repo.create_deployment(ref="main", environment="qa", required_contexts=[])
    first.create_status("success", auto_inactive=False)

    with pytest.raises(GithubException) as refused:
        gh.requester.requestJsonAndCheck("DELETE", first.url)  # PyGithub has no delete call
    first.create_status("inactive")
    gh.requester.requestJsonAndCheck("DELETE", first.url)

    assert refused.value.status == 422
    assert refused.value.data["message"].startswith("We cannot delete an active deployment")
    assert [d["id"] for d in standin.deployments()] == [second.id]
    assert standin.violations == []


def test_comments_paginate_and_edit(standin: GitHubStandin) -> None:
    """Comments PyGithub posts and edits on a pull request come back in pages that GitHub's Link
    header chains together."""
    number = standin.add_pull("feature/login", title="Log in")
    with client(standin, per_page=2) as github:
        pull = github.get_repo(REPO).get_pull(number)
        posted = [pull.create_issue_comment(f"comment {i}") for i in range(5)]
        posted[2].edit("comment 2, edited")
        listed = [c.body for c in pull.get_issue_comments()]

    page_two = call(standin, "GET", f"/repos/{REPO}/issues/{number}/comments?per_page=2&page=2")

    assert listed == ["comment 0", "comment 1", "comment 2, edited", "comment 3", "comment 4"]
    pages = [r.query.get("page", ["1"]) for r in standin.requests if r.method == "GET"]
    assert pages[-4:] == [["1"], ["2"], ["3"], ["2"]]  # PyGithub followed the Link header
    links = page_two.headers["Link"]
    assert all(f'rel="{rel}"' in links for rel in ("prev", "first", "next", "last"))
    assert f"{standin.base_url}/repos/{REPO}/issues/{number}/comments?per_page=2&page=3" in links
    assert posted[0].html_url.endswith(f"/pull/{number}#issuecomment-{posted[0].id}")
    assert [c["body"] for c in standin.comments(number)] == listed
    assert standin.violations == []


def test_state_outside_the_enum_is_refused(standin: GitHubStandin, gh: Github) -> None:
    """A deployment status whose state the description's enum lacks is refused with GitHub's 422
    and recorded as a violation."""
    deployment = gh.get_repo(REPO).create_deployment(ref="main", required_contexts=[])

    with pytest.raises(GithubException) as refused:
        deployment.create_status("deployed")

    assert refused.value.status == 422
    assert refused.value.data["message"].startswith(
        "Invalid request.\n\nFor 'properties/state', \"deployed\" is not a member of"
    )
    assert [(v.kind, v.path) for v in standin.violations] == [
        ("request", f"/repos/{REPO}/deployments/{deployment.id}/statuses")
    ]
    assert standin.deployment_statuses(deployment.id) == []


def test_required_field_and_nullable(standin: GitHubStandin) -> None:
    """A body without a required field is refused in GitHub's words; a nullable field takes null."""
    path = f"/repos/{REPO}/statuses/{main_sha(standin)}"

    missing = call(standin, "POST", path, {"description": "no state"})
    nulls = call(standin, "POST", path, {"state": "error", "description": None, "target_url": None})

    assert missing.status_code == 422
    assert missing.json()["message"] == 'Invalid request.\n\n"state" wasn\'t supplied.'
    assert nulls.status_code == 201 and nulls.json()["description"] is None
    assert [v.kind for v in standin.violations] == ["request"]


def test_discriminator_names_the_missing_field(standin: GitHubStandin) -> None:
    """The discriminator on a check run's status picks the oneOf branch, so a completed run
    without a conclusion is refused for exactly that."""
    body = {"name": "deploy", "head_sha": main_sha(standin), "status": "completed"}

    refused = call(standin, "POST", f"/repos/{REPO}/check-runs", body)

    assert refused.status_code == 422
    assert refused.json()["message"] == 'Invalid request.\n\n"conclusion" wasn\'t supplied.'


def test_without_or_with_a_wrong_token(standin: GitHubStandin) -> None:
    """No token answers 401 "Requires authentication"; a wrong one 401 "Bad credentials"."""
    with client(standin, token=None) as anonymous, pytest.raises(GithubException) as without:
        anonymous.get_repo(REPO)
    with client(standin, token="ghs_wrong") as wrong, pytest.raises(BadCredentialsException) as bad:
        wrong.get_repo(REPO)

    assert (without.value.status, without.value.data["message"]) == (401, "Requires authentication")
    assert (bad.value.status, bad.value.data["message"]) == (401, "Bad credentials")


def test_unknown_repository(standin: GitHubStandin, gh: Github) -> None:
    """A repository the stand-in does not know answers 404 with GitHub's error body."""
    with pytest.raises(UnknownObjectException) as missing:
        gh.get_repo("octo-org/elsewhere")

    assert missing.value.data == {
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest/repos/repos#get-a-repository",
        "status": "404",
    }
    assert standin.violations == []


def test_undocumented_route_is_recorded(standin: GitHubStandin, gh: Github) -> None:
    """A route outside the description answers 404 and is recorded: PyGithub's get_issue is one."""
    number = standin.add_issue()

    with pytest.raises(UnknownObjectException):
        gh.get_repo(REPO).get_issue(number)

    assert [(v.kind, v.path) for v in standin.violations] == [
        ("route", f"/repos/{REPO}/issues/{number}")
    ]


def test_missing_permission(standin: GitHubStandin) -> None:
    """A token without statuses=write gets GitHub's 403, whose X-Accepted-GitHub-Permissions
    header names what was needed, while what it may do still works."""
    standin.add_token("ghs_limited", permissions={"contents": "read", "deployments": "write"})
    with client(standin, token="ghs_limited") as github:
        repo = github.get_repo(REPO)
        repo.create_deployment(ref="main", required_contexts=[])
        with pytest.raises(GithubException) as forbidden:
            repo.get_commit(main_sha(standin)).create_status("success")

    assert forbidden.value.status == 403
    assert forbidden.value.headers["x-accepted-github-permissions"] == "statuses=write"
    assert forbidden.value.data == {
        "message": "Resource not accessible by integration",
        "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
        "status": "403",
    }
    assert standin.statuses(main_sha(standin)) == []


def test_deny_answers_one_operation_with_403(standin: GitHubStandin, gh: Github) -> None:
    """deny() answers an operation with the missing-permission 403 whatever the token may do."""
    number = standin.add_pull("feature/deny")
    fault = standin.deny("POST", "/repos/*/issues/*/comments")
    pull = gh.get_repo(REPO).get_pull(number)

    with pytest.raises(GithubException) as forbidden:
        pull.create_issue_comment("hello")

    assert forbidden.value.status == 403
    accepted = forbidden.value.headers["x-accepted-github-permissions"]
    assert accepted == "issues=write; pull_requests=write"
    assert fault.hits == 1 and standin.comments(number) == []


def test_server_errors_are_retried(standin: GitHubStandin) -> None:
    """PyGithub with urllib3's Retry rides out two 502s and creates the status exactly once."""
    fault = standin.fail("POST", "/repos/*/statuses/*", 502, times=2)
    retry = Retry(
        total=3, backoff_factor=0, status_forcelist=[502], allowed_methods=["GET", "POST"]
    )
    sha = main_sha(standin)
    with client(standin, retry=retry) as github:
        status = github.get_repo(REPO).get_commit(sha).create_status("success", context="deploy")

    assert status.state == "success"
    assert [r.status for r in standin.requests if r.method == "POST"] == [502, 502, 201]
    assert fault.hits == 2 and len(standin.statuses(sha)) == 1
    assert standin.violations == []


def test_secondary_rate_limit_is_waited_out(standin: GitHubStandin) -> None:
    """PyGithub's default GithubRetry waits a secondary rate limit's Retry-After, then succeeds."""
    standin.rate_limit("GET", f"/repos/{REPO}", secondary=True, retry_after=1)
    started = time.monotonic()
    with client(standin, retry=GithubRetry()) as github:  # PyGithub's default retry
        repo = github.get_repo(REPO)

    assert repo.full_name == REPO
    assert [r.status for r in standin.requests] == [403, 200]
    assert time.monotonic() - started >= 1


def test_primary_rate_limit(standin: GitHubStandin, gh: Github) -> None:
    """An exhausted primary rate limit answers 403 with X-RateLimit-Remaining 0 and the reset,
    which PyGithub raises as RateLimitExceededException."""
    standin.rate_limit(reset_in=60)

    with pytest.raises(RateLimitExceededException) as limited:
        gh.get_repo(REPO)

    assert limited.value.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.value.headers["x-ratelimit-reset"]) > time.time() + 50


def test_slashed_ref_matches_greedily(standin: GitHubStandin) -> None:
    """A branch name with slashes is one `ref`: its statuses and combined status are found."""
    standin.add_pull("feature/a/b")
    sha = standin.repo().refs["feature/a/b"]
    call(standin, "POST", f"/repos/{REPO}/statuses/{sha}", {"state": "success"})

    listed = call(standin, "GET", f"/repos/{REPO}/commits/feature/a/b/statuses")
    combined = call(standin, "GET", f"/repos/{REPO}/commits/heads/feature/a/b/status")

    assert [s["state"] for s in listed.json()] == ["success"]
    assert (combined.json()["state"], combined.json()["sha"]) == ("success", sha)
    assert standin.violations == []


def test_file_contents(standin: GitHubStandin, gh: Github) -> None:
    """A file put in the repository comes back through PyGithub's get_contents, decoded."""
    standin.add_file(".deploy-pipeline.yml", "stages: []\n")

    found = gh.get_repo(REPO).get_contents(".deploy-pipeline.yml")

    assert not isinstance(found, list)
    assert found.decoded_content == b"stages: []\n"
    assert standin.violations == []


def test_stops_cleanly() -> None:
    """Once its context ends, the stand-in's port answers no more."""
    with GitHubStandin() as server:
        url = server.base_url
        assert call(server, "GET", f"/repos/{REPO}").status_code == 200

    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


def test_response_check_catches_a_stray_answer() -> None:
    """The description's response schemas reject an answer that strays from them, which is how
    a bug in the stand-in itself surfaces."""
    routed = description().route("GET", f"/repos/{REPO}/deployments/7")
    assert routed is not None
    op, params = routed
    deployment = description().example("deployment")

    assert (op.operation_id, params["deployment_id"]) == ("repos/get-deployment", "7")
    assert description().response_errors(op, 200, deployment) == []
    assert description().response_errors(op, 200, {**deployment, "id": "7"}) == [
        "properties/id: '7' is not of type 'integer'"
    ]
