"""The receiver's durable queue, on SQLite and on PostgreSQL alike: repeated deliveries recognised,
the newest delivery per environment wins, receivers claiming at once each get different work and
never two runs of one environment, leases that another receiver takes over once they run out,
and `newer_than`, which tells a run in any receiver that it has been superseded."""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING

import pytest

from deploy_pipeline.model import EnvironmentRecord
from deploy_pipeline.store.queue import Job, Queue
from deploy_pipeline.store.state import holder_id
from tests.support.clock import Clock
from tests.support.locks import dead_holder

if TYPE_CHECKING:  # imported only as the plugin: a plain import comes before pytest can rewrite it
    from tests.support.postgres_testbed import Stores

pytest_plugins = ["tests.support.postgres_testbed"]


def add(queue: Queue, delivery: str, environment: str, sha: str | None = None, **extra: object):  # type: ignore[no-untyped-def]
    options: dict[str, object] = {"action": "deploy", "pull_request": None, "reason": "", **extra}
    return queue.add(
        delivery,
        "pull_request",
        {"delivery": delivery},
        environment=environment,
        sha=sha,
        **options,  # type: ignore[arg-type]
    )


def test_a_repeated_delivery_is_recognised_and_an_ignored_one_is_not_queued(
    stores: Stores,
) -> None:
    """The same delivery id twice is kept once; `ignore` is kept with its reason, not queued."""
    queue = Queue(stores.open())
    assert add(queue, "d1", "pr-1", "a" * 40) is True
    assert add(queue, "d1", "pr-1", "a" * 40) is False
    assert queue.add(
        "d2",
        "ping",
        {},
        action="ignore",
        environment=None,
        pull_request=None,
        sha=None,
        reason="ping: nothing to do",
    )
    assert queue.depth() == 1
    assert queue.delivery("d2") == {
        "id": "d2",
        "event": "ping",
        "action": "ignore",
        "environment": None,
        "pull_request": None,
        "sha": None,
        "reason": "ping: nothing to do",
        "state": "ignored",
        "run_id": None,
        "result": None,
        "services": [],
        "worker": None,
    }


def test_an_unknown_action_is_refused_naming_the_ones_there_are(stores: Stores) -> None:
    """A job asking for an action the runner does not have is refused before it is stored."""
    queue = Queue(stores.open())
    with pytest.raises(
        ValueError,
        match="a job's action is one of deploy, restart, stop, delete, ignore, not 'redeploy'",
    ):
        add(queue, "d1", "staging", action="redeploy")
    assert queue.delivery("d1") is None


def test_the_newest_delivery_of_an_environment_wins_and_carries_its_services(
    stores: Stores,
) -> None:
    """Three queued for pr-1: the claim takes the newest, with its action and services, and
    marks the two older superseded by it; the oldest-waiting environment comes first."""
    queue = Queue(stores.open(clock=Clock(step=0.001)))
    add(queue, "d1", "pr-1", "1" * 40)
    add(queue, "s1", "staging", None, action="restart", services=["api", "web"])
    add(queue, "d2", "pr-1", "2" * 40)
    add(queue, "d3", "pr-1", "3" * 40, action="stop")
    job = queue.claim()
    assert job == Job("d3", "pull_request", "stop", "pr-1", None, "3" * 40, {"delivery": "d3"})
    for older in ("d1", "d2"):
        found = queue.delivery(older)
        assert found is not None
        assert (found["state"], found["result"]) == ("superseded", "superseded by delivery d3")
    running = queue.delivery("d3")
    assert running is not None
    assert (running["state"], running["worker"]) == ("running", holder_id())
    staging = queue.claim()
    assert staging is not None
    assert (staging.delivery, staging.action, staging.services) == ("s1", "restart", ("api", "web"))
    assert queue.claim() is None


def test_an_environment_with_a_run_in_flight_is_not_claimed_until_it_finishes(
    stores: Stores,
) -> None:
    """A delivery for an environment whose previous one is running waits; once that one is
    finished it is claimed."""
    queue = Queue(stores.open(clock=Clock(step=0.001)))
    add(queue, "d1", "pr-1")
    first = queue.claim()
    assert first is not None
    add(queue, "d2", "pr-1")
    assert queue.claim() is None
    queue.finish("d1", "done", "succeeded")
    second = queue.claim()
    assert second is not None
    assert second.delivery == "d2"


def test_receivers_claiming_at_once_get_each_delivery_once_and_one_run_per_environment(
    stores: Stores,
) -> None:
    """Four receivers (each its own store and connection) claim, run and finish at the same time
    while 300 deliveries for 3 environments keep arriving: no delivery is claimed twice, no
    environment ever has two claims open at once, and every delivery ends done or superseded,
    the last of each environment done."""
    receivers = [Queue(stores.open()) for _ in range(5)]
    sender, claimers = receivers[0], receivers[1:]
    start = threading.Barrier(5)
    guard = threading.Lock()
    sent = threading.Event()
    claimed: list[str] = []
    open_claims: collections.Counter[str] = collections.Counter()
    overlaps: list[str] = []

    def send() -> None:
        start.wait()
        for n in range(300):
            add(sender, f"d{n:03}", f"pr-{n % 3}")
        sent.set()

    def receive(receiver: Queue) -> None:
        start.wait()
        while True:
            done = sent.is_set()
            job = receiver.claim()
            if job is None:
                if done:
                    return
                continue
            with guard:
                claimed.append(job.delivery)
                open_claims[job.environment] += 1
                if open_claims[job.environment] > 1:
                    overlaps.append(job.environment)
            receiver.newer_than(job)  # a round trip while the claim is open
            with guard:
                open_claims[job.environment] -= 1
            receiver.finish(job.delivery, "done", "succeeded")

    threads = [threading.Thread(target=send)]
    threads += [threading.Thread(target=receive, args=(r,)) for r in claimers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    assert len(claimed) == len(set(claimed))
    states = dict(sender.store.query("SELECT id, state FROM deliveries"))
    assert sorted(d for d, state in states.items() if state == "done") == sorted(claimed)
    assert set(states.values()) == {"done", "superseded"}
    assert {states[f"d{n:03}"] for n in (297, 298, 299)} == {"done"}


def test_of_receivers_racing_for_one_environment_exactly_one_claims_it(stores: Stores) -> None:
    """Twenty times over, a fresh environment's delivery is claimed by four receivers at the
    same moment: one gets it, the three others get nothing."""
    receivers = [Queue(stores.open()) for _ in range(4)]
    barrier = threading.Barrier(4)
    for attempt in range(20):
        add(receivers[0], f"d{attempt}", f"pr-{attempt}")
        results: list[Job | None] = []

        def claim(receiver: Queue, results: list[Job | None]) -> None:
            barrier.wait()
            results.append(receiver.claim())

        threads = [threading.Thread(target=claim, args=(r, results)) for r in receivers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        won = [job.delivery for job in results if job is not None]
        assert won == [f"d{attempt}"], f"attempt {attempt}: {won}"


def test_a_lease_renewed_is_kept_and_one_run_out_is_taken_over(stores: Stores) -> None:
    """A running delivery whose receiver renews it stays; once its receiver stops renewing and
    the lease runs out, the next claim (any receiver's) queues it again and takes it."""
    clock = Clock(step=0.001)
    queue = Queue(stores.open(clock=clock), lease=30)
    add(queue, "d1", "pr-1")
    job = queue.claim()
    assert job is not None
    clock.now += 25
    assert queue.renew("d1") is True
    clock.now += 25  # 50 s after the claim, 25 after the renewal
    assert queue.claim() is None
    clock.now += 6
    other = Queue(stores.open(clock=clock), lease=30)
    again = other.claim()
    assert again is not None
    assert again.delivery == "d1"


def test_a_finished_delivery_cannot_be_renewed(stores: Stores) -> None:
    """Renewing says False once the delivery is no longer running."""
    queue = Queue(stores.open())
    add(queue, "d1", "pr-1")
    assert queue.claim() is not None
    queue.finish("d1", "done", "succeeded")
    assert queue.renew("d1") is False


def test_a_delivery_another_receiver_runs_now_is_not_finished_by_the_one_that_lost_it(
    stores: Stores,
) -> None:
    """A receiver whose lease ran out (and whose delivery another receiver took) cannot mark
    that delivery done: the other one's run decides how it ended."""
    queue = Queue(stores.open())
    add(queue, "d1", "pr-1")
    assert queue.claim() is not None
    queue.store.query("UPDATE deliveries SET worker = 'another-host:7'")
    queue.finish("d1", "done", "cancelled")
    assert queue.renew("d1") is False
    found = queue.delivery("d1")
    assert found is not None
    assert (found["state"], found["result"]) == ("running", None)


def test_requeue_abandoned_takes_dead_processes_and_run_out_leases_only(stores: Stores) -> None:
    """At a receiver's start: a delivery of a dead process of this machine and one whose lease
    ran out (another machine) are queued again; a live process's and a valid lease's are not."""
    clock = Clock(step=0.001)
    queue = Queue(stores.open(clock=clock), lease=30)
    workers = {
        "dead-here": (dead_holder(), clock.now + 30),
        "run-out": ("another-host:1", clock.now - 1),
        "held-elsewhere": ("another-host:2", clock.now + 30),
        "alive-here": (holder_id(), clock.now + 30),
    }
    for n, (name, (worker, lease)) in enumerate(workers.items()):
        add(queue, name, f"pr-{n}")
        queue.store.query(
            "UPDATE deliveries SET state = 'running', worker = ?, lease_until = ? WHERE id = ?",
            (worker, lease, name),
        )
    assert queue.requeue_abandoned() == 2
    states = {name: (queue.delivery(name) or {})["state"] for name in workers}
    assert states == {
        "dead-here": "queued",
        "run-out": "queued",
        "held-elsewhere": "running",
        "alive-here": "running",
    }


def test_newer_than_names_a_later_delivery_of_the_same_environment(stores: Stores) -> None:
    """While pr-1's delivery runs: nothing newer at first; a later one for pr-2 is not its
    concern; a later one for pr-1 is named by its commit, or by its id when it has none."""
    queue = Queue(stores.open(clock=Clock(step=0.001)))
    add(queue, "d1", "pr-1", "1" * 40)
    job = queue.claim()
    assert job is not None
    assert queue.newer_than(job) is None
    add(queue, "other", "pr-2", "9" * 40)
    assert queue.newer_than(job) is None
    add(queue, "d2", "pr-1", None, action="delete")
    assert queue.newer_than(job) == "d2"
    add(queue, "d3", "pr-1", "3" * 40)
    assert queue.newer_than(job) == "3" * 40


def test_the_last_taken_is_the_newest_pull_request_delivery_of_the_environment(
    stores: Stores,
) -> None:
    """last_taken gives the payload of the environment's newest pull_request delivery, whether
    it is queued or superseded, and not an ignored one, another event's or another
    environment's; None for an environment with none."""
    queue = Queue(stores.open(clock=Clock(step=0.001)))
    assert queue.last_taken("pr-1") is None
    add(queue, "opened", "pr-1", "a" * 40)
    add(queue, "closed", "pr-1", "b" * 40, action="delete")
    add(queue, "elsewhere", "pr-2", "c" * 40)
    queue.add(
        "api-1",
        "api",
        {"reason": "x"},
        action="deploy",
        environment="pr-1",
        pull_request=1,
        sha=None,
        reason="x",
    )
    queue.add(
        "ignored",
        "pull_request",
        {"delivery": "ignored"},
        action="ignore",
        environment="pr-1",
        pull_request=1,
        sha=None,
        reason="a label",
    )
    assert queue.last_taken("pr-1") == {"delivery": "closed"}
    assert queue.claim() is not None  # pr-1's newest runs, the others are superseded
    assert queue.last_taken("pr-1") == {"delivery": "closed"}


def test_deliveries_past_the_retention_are_forgotten_but_not_the_ones_still_needed(
    stores: Stores,
) -> None:
    """`prune` forgets deliveries that ended or were ignored before the cut-off; queued and
    running ones stay, and so do a live environment's newest deploy and newest pull_request
    delivery (its last push, its repository), however old."""
    clock = Clock(now=1000.0, step=0.001)
    store = stores.open(clock=clock)
    queue = Queue(store)
    store.save_environment(EnvironmentRecord("pr-1", "preview", "staging", pull_request=1))
    for delivery, environment in (("old-1", "pr-1"), ("new-1", "pr-1"), ("gone", "pr-9")):
        add(queue, delivery, environment, pull_request=1)
        job = queue.claim()
        assert job is not None and job.delivery == delivery
        queue.finish(delivery, "done", "succeeded")
    queue.add(
        "ping",
        "ping",
        {},
        action="ignore",
        environment=None,
        pull_request=None,
        sha=None,
        reason="ping: nothing to do",
    )
    add(queue, "waiting", "pr-2")
    add(queue, "busy", "pr-3")
    clock.now = 2000.0
    assert queue.claim() is not None  # pr-2's or pr-3's: one running, one queued

    assert queue.prune(before=1500.0) == 3  # old-1, gone and the ping
    left = {str(r[0]) for r in store.query("SELECT id FROM deliveries")}
    assert left == {"new-1", "waiting", "busy"}


def test_last_pushes_and_leaving_are_read_from_deploys_and_deletes(stores: Stores) -> None:
    """Housekeeping's questions: each environment's newest deploy delivery's arrival, and which
    environments have a delete queued or running (not one that finished)."""
    clock = Clock(now=1000.0, step=0.0)
    queue = Queue(stores.open(clock=clock))
    add(queue, "first", "pr-1")
    clock.now = 1010.0
    add(queue, "second", "pr-1")
    add(queue, "other", "pr-2")
    add(queue, "drop-2", "pr-2", action="delete")
    add(queue, "drop-3", "pr-3", action="delete")
    claimed = {job.delivery for job in iter(queue.claim, None)}
    assert claimed == {"second", "drop-2", "drop-3"}  # each environment's newest
    assert queue.last_pushes() == {"pr-1": 1010.0, "pr-2": 1010.0}
    assert queue.leaving() == {"pr-2", "pr-3"}
    queue.finish("drop-2", "done", "succeeded")
    assert queue.leaving() == {"pr-3"}


def test_what_last_taken_remembers_is_what_the_table_says(stores: Stores) -> None:
    """The queue that adds the deliveries answers last_taken as a new queue reading the table
    does (on SQLite from what it remembers, with no query before a 202): after deliveries of
    two previews, a repeat, an ignored one, and after pruning."""
    store = stores.open(clock=Clock(step=0.001))
    writer = Queue(store)
    assert writer.last_taken("pr-1") is None
    add(writer, "a", "pr-1")
    add(writer, "b", "pr-2")
    add(writer, "c", "pr-1")
    add(writer, "c", "pr-1")  # the same delivery again
    add(writer, "d", "pr-1", action="ignore")
    for environment in ("pr-1", "pr-2", "pr-3"):
        assert writer.last_taken(environment) == Queue(store).last_taken(environment)
    assert writer.last_taken("pr-1") == {"delivery": "c"}
    writer.prune(before=0.0)
    assert writer.last_taken("pr-1") == Queue(store).last_taken("pr-1") == {"delivery": "c"}
