"""Preview housekeeping in a running receiver (Starlette's TestClient, the simulated target, the
GitHub stand-in): expiry after `previews.ttl`, the `previews.max` cap, and the sweeper that
deletes previews of pull requests closed while no webhook arrived; each says why on the PR."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from deploy_pipeline.receiver import Receiver
from deploy_pipeline.receiver.housekeeping import Housekeeper
from deploy_pipeline.receiver.serving import from_environ
from tests.support.eventually import eventually
from tests.support.github_standin import GitHubStandin
from tests.support.receiver import ReceiverFactory, deliver, serving, settled
from tests.support.webhooks import SECRET, payload

PIPELINE = """
version: 1
targets:
  rehearse: {kind: simulated}
services:
  web: {type: container, image: nginx:1.27, port: 80, public: true}
environments:
  staging: {target: rehearse}
previews: {from: staging, ttl: 1h, max: 2}
"""


@pytest.fixture
def receiver(make_receiver: ReceiverFactory, standin: GitHubStandin) -> Receiver:
    # sweeps happen when the test says (and after each preview deploy), not on a timer
    return make_receiver(PIPELINE, standin=standin, workers=1, sweep_every=3600)


@pytest.fixture
def client(receiver: Receiver) -> Iterator[TestClient]:
    with serving(receiver) as test_client:
        yield test_client


def open_preview(client: TestClient, standin: GitHubStandin, sha: str) -> int:
    number = standin.add_pull(f"feature-{sha[:4]}", head_sha=sha)
    answer = deliver(
        client, "pull_request", payload("pull_request", "opened", number=number, sha=sha)
    )
    assert settled(client, answer.json()["queued"])["result"] == "succeeded"
    return number


def previews(client: TestClient) -> set[str]:
    return {e["name"] for e in client.get("/api/environments").json()["environments"]} - {"staging"}


def gone(client: TestClient, name: str, timeout: float = 30) -> None:
    eventually(
        lambda: previews(client),
        lambda listed: name not in listed,
        timeout=timeout,
        message=f"{name} no longer listed",
    )


def test_a_preview_expires_ttl_after_its_last_push(
    client: TestClient, receiver: Receiver, standin: GitHubStandin
) -> None:
    """Two hours after its last push a preview with `ttl: 1h` is deleted, and its PR comment
    says it expired and how to bring it back."""
    number = open_preview(client, standin, "a" * 40)
    assert receiver.housekeeper.sweep() == []  # fresh: nothing to do
    receiver.housekeeper.clock = lambda: time.time() + 2 * 3600
    ((name, why),) = receiver.housekeeper.sweep()
    assert name == f"pr-{number}" and "No push for 2 hours" in why
    gone(client, name)
    (comment,) = standin.comments(number)
    assert f"Preview `{name}` removed" in comment["body"]
    assert "previews expire 1 hour after their last push" in comment["body"]
    assert "Push a new commit" in comment["body"]


def test_the_oldest_preview_is_evicted_beyond_max(
    client: TestClient, standin: GitHubStandin
) -> None:
    """With `max: 2`, a third preview evicts the one pushed longest ago, which is told so on
    its PR, and the two newest stay."""
    first = open_preview(client, standin, "1" * 40)
    second = open_preview(client, standin, "2" * 40)
    third = open_preview(client, standin, "3" * 40)
    gone(client, f"pr-{first}")
    assert previews(client) == {f"pr-{second}", f"pr-{third}"}
    bodies = [c["body"] for c in standin.comments(first)]
    assert len(bodies) == 1  # the preview's one comment, edited in place
    assert "At most 2 previews may exist (`previews.max`)" in bodies[0]
    assert standin.violations == []


def test_the_sweeper_deletes_previews_of_pull_requests_closed_without_a_webhook(
    client: TestClient, receiver: Receiver, standin: GitHubStandin
) -> None:
    """A PR closed while the receiver missed its webhook loses its preview at the next sweep
    (the open PRs are listed from GitHub); the open PR's preview stays."""
    kept = open_preview(client, standin, "b" * 40)
    closed = open_preview(client, standin, "c" * 40)
    pulls = standin.repo().pulls
    pulls[closed] = dataclasses.replace(pulls[closed], state="closed")
    assert receiver.housekeeper.sweep() == [
        (f"pr-{closed}", f"Pull request #{closed} is closed (found by the sweeper).")
    ]
    gone(client, f"pr-{closed}")
    assert previews(client) == {f"pr-{kept}"}
    assert "is closed (found by the sweeper)" in standin.comments(closed)[0]["body"]


def test_without_github_the_sweeper_leaves_previews_alone(
    make_receiver: ReceiverFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With no GitHub access the sweeper cannot know which PRs are closed: it says so once
    in the log and deletes nothing."""
    caplog.set_level(logging.INFO, logger="deploy_pipeline.receiver")
    receiver = make_receiver(PIPELINE, workers=1, sweep_every=3600)
    with serving(receiver) as client:
        sha = "d" * 40
        answer = deliver(
            client, "pull_request", payload("pull_request", "opened", number=5, sha=sha)
        )
        assert settled(client, answer.json()["queued"])["result"] == "succeeded"
        assert receiver.housekeeper.sweep() == []
        assert receiver.housekeeper.sweep() == []
        assert previews(client) == {"pr-5"}
    said = [r.getMessage() for r in caplog.records if "not swept" in r.getMessage()]
    assert said == ["previews of closed pull requests are not swept: GitHub access is off"]


def deployments_of(standin: GitHubStandin, name: str) -> list[str]:
    """The latest state of each of the environment's Deployments on the stand-in."""
    return [
        standin.deployment_statuses(d["id"])[-1]["state"]
        for d in standin.deployments()
        if d["environment"] == name
    ]


def inactive(standin: GitHubStandin, name: str, timeout: float = 30) -> list[str]:
    states: list[str] = eventually(
        lambda: deployments_of(standin, name),
        lambda states: states and states == ["inactive"] * len(states),
        timeout=timeout,
        message=f"every deployment of {name} inactive",
    )
    return states


def test_previews_removed_by_housekeeping_leave_their_deployments_inactive(
    client: TestClient, receiver: Receiver, standin: GitHubStandin
) -> None:
    """A preview evicted by `previews.max`, one swept for its closed PR and one expired by
    `previews.ttl` each end with every GitHub Deployment `inactive` (no longer `success`), the
    state saying why, and the PR comment saying why."""
    evicted = open_preview(client, standin, "4" * 40)
    closed = open_preview(client, standin, "5" * 40)
    expired = open_preview(client, standin, "6" * 40)
    gone(client, f"pr-{evicted}")
    assert inactive(standin, f"pr-{evicted}") == ["inactive"]
    pulls = standin.repo().pulls
    pulls[closed] = dataclasses.replace(pulls[closed], state="closed")
    receiver.housekeeper.sweep()
    gone(client, f"pr-{closed}")
    assert inactive(standin, f"pr-{closed}") == ["inactive"]
    receiver.housekeeper.clock = lambda: time.time() + 2 * 3600
    receiver.housekeeper.sweep()
    gone(client, f"pr-{expired}")
    assert inactive(standin, f"pr-{expired}") == ["inactive"]
    (last,) = [d for d in standin.deployments() if d["environment"] == f"pr-{expired}"]
    assert standin.deployment_statuses(last["id"])[-1]["description"].startswith(
        "removed: No push for 2 hours"
    )
    assert "previews expire 1 hour after" in standin.comments(expired)[0]["body"]
    assert standin.violations == []


def test_housekeeping_forgets_deliveries_and_runs_past_the_retention(
    write_config: Callable[[str], Path], standin: GitHubStandin
) -> None:
    """With DEPLOY_PIPELINE_RETENTION_DAYS=7, a deleted preview's deliveries and runs are still
    there after 6 days and forgotten by housekeeping after 8."""
    environ = {"DEPLOY_PIPELINE_WEBHOOK_SECRET": SECRET, "DEPLOY_PIPELINE_RETENTION_DAYS": "7"}
    receiver = from_environ(write_config(PIPELINE), environ)
    with serving(receiver) as client:
        number = open_preview(client, standin, "7" * 40)
        closed = deliver(
            client, "pull_request", payload("pull_request", "closed", number=number, sha="7" * 40)
        )
        delivery = settled(client, closed.json()["queued"])
        receiver.housekeeper.clock = lambda: time.time() + 6 * 86400
        assert receiver.housekeeper.prune() == (0, 0)
        receiver.housekeeper.clock = lambda: time.time() + 8 * 86400
        assert receiver.housekeeper.prune() == (2, 2)  # the preview's deploy and delete
        assert client.get(f"/api/deliveries/{delivery['id']}").status_code == 404
        assert client.get(f"/api/runs/{delivery['run_id']}").status_code == 404


class SweepFails(Housekeeper):
    """Housekeeping whose sweep meets a defect (an error no check expects) every time."""

    def sweep(self, *, closed: bool = True) -> list[tuple[str, str]]:
        raise ZeroDivisionError("division by zero")


def test_housekeeping_outlives_an_unexpected_error_and_says_it(
    make_receiver: ReceiverFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A sweep that fails on an unexpected error is logged with its traceback and the
    housekeeping thread goes on: the receiver stays ready."""
    caplog.set_level(logging.ERROR, logger="deploy_pipeline.receiver")
    receiver = make_receiver(PIPELINE, workers=1, sweep_every=3600)
    receiver.housekeeper = SweepFails(
        receiver.store,
        receiver.queue,
        submit=receiver.submit,
        outbox=receiver.outbox,
        stopping=receiver.stopping,
        previews=receiver.previews,
        every=3600,
    )
    with serving(receiver) as client:
        eventually(
            lambda: any(r.getMessage() == "housekeeping failed" for r in caplog.records),
            timeout=10,
            message="the sweep running",
        )
        assert client.get("/readyz").status_code == 200
    (failed,) = [r for r in caplog.records if r.getMessage() == "housekeeping failed"]
    assert failed.exc_info is not None and failed.exc_info[0] is ZeroDivisionError
