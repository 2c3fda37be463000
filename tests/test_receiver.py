"""The webhook receiver in-process (Starlette's TestClient, its workers running): DESIGN.md §6's
answers for signed recorded deliveries, and a pull request's preview through its lifecycle on
the simulated target, with the GitHub stand-in showing what GitHub would."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from deploy_pipeline.errors import UsageError
from deploy_pipeline.github import GitHubApp, GitHubClient
from deploy_pipeline.model import Action
from deploy_pipeline.operation import Operation
from deploy_pipeline.receiver import Receiver
from deploy_pipeline.receiver.outbox import Outbox
from deploy_pipeline.store.queue import Job
from deploy_pipeline.store.state import Store
from tests.support.eventually import eventually
from tests.support.fuzzing import fuzzing
from tests.support.github import other_key
from tests.support.github_standin import REPO, GitHubStandin
from tests.support.github_standin.unreachable import Unreachable
from tests.support.receiver import PIPELINE, ReceiverFactory, deliver, serving, settled
from tests.support.webhooks import payload, signed

FUZZ = fuzzing(300)


@pytest.fixture
def client(make_receiver: ReceiverFactory, standin: GitHubStandin) -> Iterator[TestClient]:
    with serving(make_receiver(PIPELINE, standin=standin, workers=2)) as test_client:
        yield test_client


def test_a_wrong_or_missing_signature_is_401_before_anything_is_parsed(client: TestClient) -> None:
    """A body signed with another secret, or not signed, is refused with 401; so is one that is
    not even JSON (the signature comes first)."""
    body = json.dumps(payload("ping")).encode()
    wrong = client.post("/webhooks/github", content=body, headers=signed(body, "ping", secret="x"))
    assert wrong.status_code == 401
    headers = signed(body, "ping")
    del headers["X-Hub-Signature-256"]
    assert client.post("/webhooks/github", content=body, headers=headers).status_code == 401
    junk = b"not json"
    assert (
        client.post(
            "/webhooks/github", content=junk, headers=signed(junk, "ping", secret="x")
        ).status_code
        == 401
    )


def test_a_signed_body_that_is_not_json_is_400(client: TestClient) -> None:
    """Correctly signed garbage is a 400, not a crash."""
    junk = b"{not json"
    assert (
        client.post("/webhooks/github", content=junk, headers=signed(junk, "push")).status_code
        == 400
    )


def test_a_body_over_25_mib_is_413(client: TestClient) -> None:
    """A body over 25 MiB is refused with 413 (its Content-Length says so before it is read)."""
    big = b"x" * (25 * 1024 * 1024 + 1)
    assert (
        client.post("/webhooks/github", content=big, headers=signed(big, "push")).status_code == 413
    )


def test_ping_and_other_events_are_200_and_ignored(client: TestClient) -> None:
    """ping answers 200; a push (not a preview's business) is 200 and ignored."""
    assert deliver(client, "ping", payload("ping")).status_code == 200
    answer = deliver(client, "push", payload("push"))
    assert answer.status_code == 200
    assert "ignored" in answer.json()


def test_a_preview_lives_from_open_to_close_and_github_shows_it(
    client: TestClient, standin: GitHubStandin
) -> None:
    """opened deploys pr-N (search still skipped), a repeated delivery is not run twice, a push
    redeploys at the new commit, closed deletes it: the stand-in has the statuses, deployments
    (the old ones inactive) and one comment, and /api/environments no longer lists it."""
    sha1, sha2 = "1" * 40, "2" * 40
    number = standin.add_pull("feature", head_sha=sha1)
    name = f"pr-{number}"

    opened = deliver(
        client, "pull_request", payload("pull_request", "opened", number=number, sha=sha1)
    )
    assert opened.status_code == 202
    delivery = opened.json()["queued"]
    again = deliver(
        client, "pull_request", payload("pull_request", "opened", number=number, sha=sha1), delivery
    )
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert settled(client, delivery)["result"] == "succeeded"
    envs = {e["name"]: e for e in client.get("/api/environments").json()["environments"]}
    assert envs[name]["skipped"] == ["search"] and envs[name]["pull_request"] == number
    assert envs[name]["status"] == "deployed"

    pushed = deliver(
        client, "pull_request", payload("pull_request", "synchronize", number=number, sha=sha2)
    )
    assert settled(client, pushed.json()["queued"])["result"] == "succeeded"
    assert [
        s["state"] for s in standin.statuses(sha2) if s["context"] == f"deploy-pipeline/{name}"
    ][-1] == "success"

    closed = deliver(
        client, "pull_request", payload("pull_request", "closed", number=number, sha=sha2)
    )
    assert settled(client, closed.json()["queued"])["result"] == "succeeded"
    assert name not in [e["name"] for e in client.get("/api/environments").json()["environments"]]
    deployments = standin.deployments()
    assert len(deployments) == 2  # one per deploy; the duplicate delivery made none
    for d in deployments:
        assert standin.deployment_statuses(d["id"])[-1]["state"] == "inactive"
    (comment,) = standin.comments(number)
    assert "is gone" in comment["body"]
    assert standin.violations == []
    metrics = client.get("/metrics").text
    assert (
        'deploy_pipeline_deliveries_total{event="pull_request",outcome="duplicate"} 1.0' in metrics
    )


def test_a_newer_push_supersedes_the_run_in_flight(
    make_receiver: ReceiverFactory, write_config: Callable[[str], Path], standin: GitHubStandin
) -> None:
    """While pr-N's first deploy is in its long apps stage, a push arrives: that run stops at its
    next safe point, GitHub shows it `error` "cancelled: superseded by 2222222" with its
    Deployment `inactive` (not `failure`), and the push's run deploys."""
    receiver = make_receiver(
        PIPELINE.replace("{kind: simulated}", "{kind: simulated, durations: {web: {deploy: 60s}}}"),
        standin=standin,
    )
    sha1, sha2 = "1" * 40, "2" * 40
    number = standin.add_pull("feature", head_sha=sha1)
    context = f"deploy-pipeline/pr-{number}"
    with serving(receiver) as client:
        first = deliver(
            client, "pull_request", payload("pull_request", "opened", number=number, sha=sha1)
        )
        eventually(
            lambda: any(
                "stage 2/2 apps" in (s["description"] or "") for s in standin.statuses(sha1)
            ),
            timeout=20,
            message="the first run reaching its apps stage",
        )
        # the second run must not wait out web's 60 s: it supersedes, so let it deploy fast
        write_config(PIPELINE)
        second = deliver(
            client, "pull_request", payload("pull_request", "synchronize", number=number, sha=sha2)
        )
        assert settled(client, first.json()["queued"])["result"] == "cancelled"
        assert settled(client, second.json()["queued"])["result"] == "succeeded"
    final = [s for s in standin.statuses(sha1) if s["context"] == context][-1]
    assert (final["state"], final["description"]) == (
        "error",
        "deploy cancelled: superseded by 2222222",
    )
    assert [s for s in standin.statuses(sha2) if s["context"] == context][-1]["state"] == "success"
    (superseded,) = [d for d in standin.deployments() if d["sha"] == sha1]
    assert standin.deployment_statuses(superseded["id"])[-1]["state"] == "inactive"


def test_a_fork_pull_request_gets_no_preview_by_default(client: TestClient) -> None:
    """A pull request whose head is in another repository is acknowledged with 200 and the
    reason, and nothing is queued (previews.forks is false)."""
    data = payload("pull_request", "opened", number=41, sha="4" * 40)
    data["pull_request"]["head"]["repo"]["full_name"] = "stranger/app-fork"
    answer = deliver(client, "pull_request", data)
    assert answer.status_code == 200
    assert "fork" in answer.json()["ignored"]
    assert client.get("/readyz").json()["queued"] == 0


def test_synchronize_before_opened_and_closed_of_an_unknown_pr_both_work(
    client: TestClient, standin: GitHubStandin
) -> None:
    """A push to a PR the receiver never saw opened makes its preview; a close for a PR it never
    saw deletes nothing and still succeeds."""
    number = standin.add_pull("late", head_sha="5" * 40)
    pushed = deliver(
        client, "pull_request", payload("pull_request", "synchronize", number=number, sha="5" * 40)
    )
    assert settled(client, pushed.json()["queued"])["result"] == "succeeded"
    assert f"pr-{number}" in [
        e["name"] for e in client.get("/api/environments").json()["environments"]
    ]
    unknown = standin.add_pull("never-opened", head_sha="6" * 40)
    closed = deliver(
        client, "pull_request", payload("pull_request", "closed", number=unknown, sha="6" * 40)
    )
    assert settled(client, closed.json()["queued"])["result"] == "succeeded"


def test_the_receiver_refuses_to_start_without_a_webhook_secret(
    write_config: Callable[[str], Path],
) -> None:
    """No secret, no receiver: the error says which variable to set."""
    with pytest.raises(UsageError, match="DEPLOY_PIPELINE_WEBHOOK_SECRET"):
        Receiver(write_config(PIPELINE), secret="")


def test_fuzzed_headers_and_bodies_never_get_a_500(make_receiver: ReceiverFactory) -> None:
    """Random headers and bodies, signed or not, and signed edits of a recorded pull_request,
    are answered 200, 202, 400, 401 or 413: never a server error."""
    receiver = make_receiver(PIPELINE, workers=1)
    header = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=10,
    )
    with serving(receiver) as client:

        @FUZZ
        @given(
            event=st.sampled_from(["pull_request", "ping", "push", ""]) | header,
            body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
            extra=st.dictionaries(
                st.sampled_from(["X-Hub-Signature-256", "X-GitHub-Delivery", "Content-Type"]),
                header,
                max_size=2,
            ),
            sign=st.booleans(),
            pr=st.booleans(),
            action=st.sampled_from(["opened", "closed", "labeled", "edited"]) | header,
            number=st.integers() | st.text(max_size=5) | st.none(),
        )
        def check(
            event: str,
            body: bytes,
            extra: dict[str, str],
            sign: bool,
            pr: bool,
            action: str,
            number: object,
        ) -> None:
            if pr:
                data = payload("pull_request", "opened")
                data["action"], data["number"] = action, number
                body, event = json.dumps(data).encode(), "pull_request"
            headers = signed(body, event) if sign else {"X-GitHub-Event": event}
            if not sign:
                headers.update(extra)
            answer = client.post("/webhooks/github", content=body, headers=headers)
            assert answer.status_code in (200, 202, 400, 401, 413), answer.text

        check()


def names(client: TestClient) -> list[str]:
    return [e["name"] for e in client.get("/api/environments").json()["environments"]]


def test_a_delivery_of_another_repository_never_touches_this_ones_preview(
    client: TestClient, standin: GitHubStandin
) -> None:
    """A `closed` for pull request #N of another repository is answered 200 with the reason
    and counted as ignored; this repository's pr-N stays deployed."""
    number = standin.add_pull("feature", head_sha="1" * 40)
    opened = deliver(
        client, "pull_request", payload("pull_request", "opened", number=number, sha="1" * 40)
    )
    assert settled(client, opened.json()["queued"])["result"] == "succeeded"
    theirs = payload("pull_request", "closed", number=number, sha="9" * 40)
    theirs["repository"]["id"], theirs["repository"]["full_name"] = 99, "someone/else"
    answer = deliver(client, "pull_request", theirs)
    assert answer.status_code == 200
    assert answer.json()["ignored"] == (
        f"pull request #{number} of someone/else: pr-{number} is the preview of {REPO}'s pull "
        f"request #{number}, and a delivery of another repository never touches it"
    )
    assert client.get("/readyz").json()["queued"] == 0
    envs = {e["name"]: e for e in client.get("/api/environments").json()["environments"]}
    assert envs[f"pr-{number}"]["status"] == "deployed"
    assert (
        'deploy_pipeline_deliveries_total{event="pull_request",outcome="ignored"} 1.0'
        in client.get("/metrics").text
    )


def test_a_receiver_for_one_repository_ignores_every_other(
    make_receiver: ReceiverFactory,
) -> None:
    """With DEPLOY_PIPELINE_REPOSITORY's owner/name, another repository's pull request is
    answered 200 "not served here" and nothing is queued; a value that is no owner/name stops
    the start, naming the variable."""
    receiver = make_receiver(PIPELINE, workers=1, repository=REPO)
    with serving(receiver) as client:
        theirs = payload("pull_request", "opened", number=3, sha="3" * 40)
        theirs["repository"]["full_name"] = "someone/else"
        answer = deliver(client, "pull_request", theirs)
        assert answer.status_code == 200
        assert answer.json()["ignored"] == (
            f"repository someone/else is not served here (this receiver serves {REPO}: "
            "DEPLOY_PIPELINE_REPOSITORY)"
        )
        assert client.get("/readyz").json()["queued"] == 0
    with pytest.raises(UsageError, match="DEPLOY_PIPELINE_REPOSITORY is the owner/name"):
        make_receiver(PIPELINE, repository="https://github.com/a/b")


def test_a_replayed_opened_does_not_bring_back_a_closed_preview(
    client: TestClient, standin: GitHubStandin
) -> None:
    """After the close deleted pr-N, the signed `opened` sent again under a new delivery id is
    answered 200 and ignored (pr-N stays deleted); a reopen newer than the close deploys it."""
    number = standin.add_pull("feature", head_sha="1" * 40)
    opened = payload("pull_request", "opened", number=number, sha="1" * 40)
    first = deliver(client, "pull_request", opened)
    assert settled(client, first.json()["queued"])["result"] == "succeeded"
    closed = deliver(
        client, "pull_request", payload("pull_request", "closed", number=number, sha="1" * 40)
    )
    assert settled(client, closed.json()["queued"])["result"] == "succeeded"

    replayed = deliver(client, "pull_request", opened)  # a new X-GitHub-Delivery
    assert replayed.status_code == 200, replayed.text
    assert "older than the closed" in replayed.json()["ignored"]
    assert f"pr-{number}" not in names(client)
    # GitHub's own redelivery keeps its id: the same 202, nothing done twice
    again = deliver(client, "pull_request", opened, first.json()["queued"])
    assert again.status_code == 202 and again.json()["duplicate"] is True

    reopened = payload("pull_request", "reopened", number=number, sha="1" * 40)
    reopened["pull_request"]["updated_at"] = "2019-05-15T15:30:00Z"  # after the recorded close
    answer = deliver(client, "pull_request", reopened)
    assert answer.status_code == 202
    assert settled(client, answer.json()["queued"])["result"] == "succeeded"
    assert f"pr-{number}" in names(client)


@pytest.mark.parametrize("number", [2.7, -5, "3", True, 10**40])
def test_a_pull_request_number_that_is_no_positive_integer_is_400(
    client: TestClient, number: object
) -> None:
    """A signed pull_request whose number is a float, a negative one, a string, a boolean or
    one beyond any database column is answered 400 with a sentence, and nothing is queued."""
    data = payload("pull_request", "opened", sha="1" * 40)
    data["number"] = data["pull_request"]["number"] = number
    answer = deliver(client, "pull_request", data)
    assert answer.status_code == 400
    assert "GitHub sends a whole number from 1 to 2147483647" in answer.json()["error"]
    assert client.get("/readyz").json()["queued"] == 0


def test_made_up_event_names_of_rejected_deliveries_do_not_grow_the_metrics(
    client: TestClient,
) -> None:
    """300 unsigned deliveries with made-up event names are counted under one fixed label; a
    signed event the receiver does not handle is `other`: /metrics stays the size it was."""
    before = len(client.get("/metrics").text)
    for i in range(300):
        headers = {"X-GitHub-Event": f"made-up-{i}-{'x' * 200}", "Content-Type": "text/plain"}
        assert client.post("/webhooks/github", content=b"{}", headers=headers).status_code == 401
    assert deliver(client, "star", {"action": "created"}).status_code == 200
    metrics = client.get("/metrics").text
    assert "made-up" not in metrics and "star" not in metrics
    assert 'deploy_pipeline_deliveries_total{event="unverified",outcome="rejected"} 300.0' in (
        metrics
    )
    assert 'deploy_pipeline_deliveries_total{event="other",outcome="ignored"} 1.0' in metrics
    assert len(metrics) < before + 1000


def test_a_lone_surrogate_in_a_title_is_served_as_a_replacement_character(
    client: TestClient, standin: GitHubStandin
) -> None:
    """A pull request titled with a lone surrogate (JSON's "\\ud800", which no UTF-8 carries)
    deploys, and its environment's API answers 200 with U+FFFD in its place, every time."""
    number = standin.add_pull("odd", head_sha="7" * 40)
    data = payload("pull_request", "opened", number=number, sha="7" * 40)
    data["pull_request"]["title"] = "fix \ud800 things"
    answer = deliver(client, "pull_request", data)
    assert settled(client, answer.json()["queued"])["result"] == "succeeded"
    for _ in range(2):
        shown = client.get(f"/api/environments/pr-{number}")
        assert shown.status_code == 200
        assert shown.json()["pull_request_title"] == "fix \ufffd things"


class FirstRunBreaks(Receiver):
    """A receiver whose first run meets a defect: the OverflowError `defaults.timeout: 200000d`
    once raised deep in a run (`validate` refuses that value now; a defect like it may remain)."""

    broken = False

    def prepare(self, job: Job, action: Action) -> Operation:
        if not self.broken:
            self.broken = True
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
        return super().prepare(job, action)


def test_an_unexpected_error_fails_the_delivery_and_the_worker_goes_on(
    make_receiver: ReceiverFactory, write_config: Callable[[str], Path]
) -> None:
    """An unexpected error in a run fails its delivery with a one-line reason (no traceback),
    and the only worker then deploys the next push; /readyz stays ready. A file whose timeout
    would overflow the clock fails its delivery with the config error, the worker alive too."""
    receiver = make_receiver(PIPELINE, kind=FirstRunBreaks, workers=1)
    with serving(receiver) as client:
        first = deliver(client, "pull_request", payload("pull_request", "opened", number=3))
        failed = settled(client, first.json()["queued"])
        assert failed["state"] == "failed"
        assert failed["result"] == (
            "deploy of pr-3 stopped on an unexpected error: OverflowError: timestamp too large "
            "to convert to C _PyTime_t"
        )
        second = deliver(client, "pull_request", payload("pull_request", "synchronize", number=3))
        assert settled(client, second.json()["queued"])["result"] == "succeeded"
        write_config(PIPELINE.replace("version: 1\n", "version: 1\ndefaults: {timeout: 200000d}\n"))
        third = deliver(client, "pull_request", payload("pull_request", "synchronize", number=3))
        refused = settled(client, third.json()["queued"])
        assert refused["state"] == "failed"
        assert refused["result"].endswith(
            "defaults.timeout: expected a timeout from 0 to 7d (like 30s, 10m, 2h or 1d), "
            "got '200000d'"
        )
        write_config(PIPELINE)
        fourth = deliver(client, "pull_request", payload("pull_request", "synchronize", number=3))
        assert settled(client, fourth.json()["queued"])["result"] == "succeeded"
        assert client.get("/readyz").status_code == 200


class OneWorkerEnds(Receiver):
    """A receiver whose worker-1 thread ends at once, as a worker killed by a defect would."""

    def work(self) -> None:
        if threading.current_thread().name != "worker-1":
            super().work()


def test_readyz_is_503_naming_a_worker_thread_that_is_gone(
    make_receiver: ReceiverFactory,
) -> None:
    """With one of its worker threads gone, the receiver is not ready: /readyz answers 503 and
    names the worker."""
    receiver = make_receiver(PIPELINE, kind=OneWorkerEnds, workers=2)
    with serving(receiver) as client:
        receiver.threads[1].join(10)
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["error"] == "worker-1 stopped: restart the receiver"


def test_github_out_of_reach_neither_fails_nor_holds_up_a_deploy_or_a_delete(
    make_receiver: ReceiverFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With GitHub out of reach of the receiver's GitHub App (every connection reset), a pull
    request's preview deploys and is deleted, both deliveries succeeding; the reporter tries
    GitHub again with backoff, `retries` times, then says it gave up."""
    caplog.set_level(logging.WARNING, logger="deploy_pipeline.receiver")
    with Unreachable() as away:
        github = GitHubClient(
            app=GitHubApp("1", other_key()),
            api_url=away.base_url,
            retries=3,
            backoff=0.01,
            write_pause=0.0,
        )
        receiver = make_receiver(PIPELINE, github=github, workers=1)
        with serving(receiver) as client:
            opened = deliver(client, "pull_request", payload("pull_request", "opened", number=8))
            assert settled(client, opened.json()["queued"], timeout=10)["result"] == "succeeded"
            assert away.wait_for(3)  # the first update, tried three times
            closed = deliver(client, "pull_request", payload("pull_request", "closed", number=8))
            assert settled(client, closed.json()["queued"], timeout=10)["result"] == "succeeded"
            eventually(
                lambda: any("not tried again" in r.getMessage() for r in caplog.records),
                timeout=10,
                message="the reporter giving up",
            )
    gave_up = next(r.getMessage() for r in caplog.records if "not tried again" in r.getMessage())
    assert gave_up.startswith(
        f"GitHub could not find the installation of the GitHub App 1 on {REPO}: cannot reach "
    )
    assert gave_up.endswith("(tried 3 times; not tried again)")


def test_the_github_outbox_outlives_a_call_that_fails_unexpectedly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A call to GitHub that fails on an unexpected error is logged, with what it was for, and
    the outbox sends the next one."""
    caplog.set_level(logging.ERROR, logger="deploy_pipeline.receiver")
    outbox, made = Outbox(tries=1), threading.Event()

    def broken() -> None:
        raise KeyError("state")

    assert outbox.send("comment on #1", broken).wait(10)
    assert outbox.send("comment on #2", made.set).wait(10) and made.is_set()
    outbox.close(5)
    assert [r.getMessage() for r in caplog.records] == ["cannot comment on #1"]


def test_a_previews_releases_name_the_pull_requests_head_commits(
    client: TestClient, standin: GitHubStandin, own_state: Path
) -> None:
    """Each push to a pull request deploys its preview at the head commit, and the release it
    makes names that commit (DESIGN.md §9): release 2 at the second push's, 1 at the first's."""
    sha1, sha2 = "a" * 40, "b" * 40
    number = standin.add_pull("releases", head_sha=sha1)
    for action, sha in (("opened", sha1), ("synchronize", sha2)):
        sent = deliver(
            client, "pull_request", payload("pull_request", action, number=number, sha=sha)
        )
        assert settled(client, sent.json()["queued"])["result"] == "succeeded"
    store = Store(own_state)
    try:
        found = [(r.id, r.commit) for r in store.releases(f"pr-{number}")]
    finally:
        store.close()
    assert found == [(2, sha2), (1, sha1)]
