"""Two real `deploy-pipeline serve` processes sharing one PostgreSQL (issue 6, "Several
receivers"), as two receivers behind one load balancer would: deliveries sent to either are each
run once, both do work, and a push arriving at one stops the run in flight on the other."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.eventually import eventually
from tests.support.serve import Server
from tests.support.webhooks import payload, signed

pytest_plugins = ["tests.support.postgres_testbed"]

PIPELINE = """
version: 1
targets:
  rehearse: {kind: simulated, durations: {web: {deploy: DURATION}}}
services:
  web: {type: container, image: nginx:1.27, port: 80, public: true}
environments:
  staging: {target: rehearse}
previews: {from: staging}
"""


@pytest.fixture
def receivers(
    database_url: str,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Server, Server]]:
    """Receivers A and B on one fresh PostgreSQL schema, each with its own local folder."""
    monkeypatch.setenv("DEPLOY_PIPELINE_DATABASE_URL", database_url)
    config = write_config(PIPELINE.replace("DURATION", "1s"))
    pair = (
        Server(config, tmp_path / "a" / "state.db"),
        Server(config, tmp_path / "b" / "state.db"),
    )
    try:
        yield pair
    finally:
        for server in pair:
            server.stop()


@pytest.fixture
def sql(database_url: str) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    """Read the shared database directly (autocommit: every read sees what is committed)."""
    with psycopg.connect(database_url, autocommit=True) as db:
        yield lambda query, *args: db.execute(query, args).fetchall()


def send(server: Server, action: str, number: int, sha: str, delivery: str) -> int:
    body = json.dumps(payload("pull_request", action, number=number, sha=sha)).encode()
    request = urllib.request.Request(
        server.url("/webhooks/github"), data=body, headers=signed(body, "pull_request", delivery)
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return int(answer.status)


def pid_of(server: Server) -> int:
    assert server.process is not None
    return server.process.pid


def wait_until(
    check: Callable[[], bool], what: str, servers: tuple[Server, ...], timeout: float
) -> None:
    def said() -> str:
        logs = "\n".join(s.log.read_text()[-1500:] for s in servers if s.log.exists())
        return f"{what}; the receivers' logs end:\n{logs}\n"

    eventually(check, message=said, timeout=timeout, every=0.1)


def test_deliveries_sent_to_either_receiver_each_run_once_and_both_do_work(
    receivers: tuple[Server, Server], sql: Callable[..., list[tuple[Any, ...]]]
) -> None:
    """Six PRs opened, three of them pushed to again, sent alternately to A and B, and four
    deliveries sent again to the other receiver: every answer is 202, each delivery id is kept
    once, every one ends done or superseded, each done one with a run of its own (no run twice,
    none abandoned), each PR's last push deployed, and both receivers ran some."""
    a, b = (server.start() for server in receivers)
    sent: list[tuple[str, str, int, str]] = []  # (delivery, action, PR, sha)
    for number in range(1, 7):
        sent.append((f"open-{number}", "opened", number, f"{number}" * 40))
    for number in range(1, 4):
        sent.append((f"push-{number}", "synchronize", number, f"{number}a" * 20))
    answers = [send((a, b)[i % 2], *item[1:], item[0]) for i, item in enumerate(sent)]
    again = [sent[0], sent[3], sent[6], sent[8]]  # GitHub's redelivery, to the other receiver
    answers += [send((b, a)[sent.index(item) % 2], *item[1:], item[0]) for item in again]
    assert answers == [202] * (len(sent) + len(again))

    def drained() -> bool:
        return sql("SELECT COUNT(*) FROM deliveries WHERE state IN ('queued', 'running')") == [(0,)]

    wait_until(drained, "every delivery finished", (a, b), 120)
    rows = sql("SELECT id, state, result, run_id, worker, environment FROM deliveries")
    deliveries = {r[0]: r[1:] for r in rows}
    assert sorted(deliveries) == sorted(d for d, *_ in sent)
    assert {state for state, *_ in deliveries.values()} <= {"done", "superseded"}
    done = {d: v for d, v in deliveries.items() if v[0] == "done"}
    run_ids = [run_id for _, _, run_id, _, _ in done.values()]
    assert None not in run_ids
    assert len(set(run_ids)) == len(run_ids)  # no two deliveries on one run
    runs = dict(sql("SELECT id, environments FROM runs"))
    assert sorted(runs) == sorted(run_ids)  # no delivery ran twice, no stray run
    for _, _, run_id, _, environment in done.values():
        assert json.loads(runs[run_id]) == [environment]
    assert sql("SELECT COUNT(*) FROM runs WHERE status = 'abandoned'") == [(0,)]
    for number in range(1, 7):
        last = f"push-{number}" if number <= 3 else f"open-{number}"
        assert deliveries[last][:2] == ("done", "succeeded"), (last, deliveries[last])
    workers = {worker.rpartition(":")[2] for _, _, _, worker, _ in done.values()}
    assert workers == {str(pid_of(a)), str(pid_of(b))}


def test_a_push_to_one_receiver_supersedes_the_run_in_flight_on_the_other(
    receivers: tuple[Server, Server],
    sql: Callable[..., list[tuple[Any, ...]]],
    write_config: Callable[[str], Path],
) -> None:
    """PR 9's first run (a 60 s deploy) is under way on one receiver; a push for PR 9 arrives at the
    other receiver: the run in flight stops, its run ends `cancelled: superseded by 2222222`,
    and the push's run deploys."""
    write_config(PIPELINE.replace("DURATION", "60s"))
    pair = tuple(server.start() for server in receivers)
    sha1, sha2 = "1" * 40, "2" * 40
    assert send(pair[0], "opened", 9, sha1, "first") == 202

    def started() -> bool:
        return sql("SELECT run_id FROM deliveries WHERE id = 'first'") not in ([], [(None,)])

    wait_until(started, "the first run started", pair, 30)
    worker, first_run = sql("SELECT worker, run_id FROM deliveries WHERE id = 'first'")[0]
    running_on = next(s for s in pair if worker.endswith(f":{pid_of(s)}"))
    other = next(s for s in pair if s is not running_on)
    write_config(PIPELINE.replace("DURATION", "0s"))  # the push's run need not wait a minute
    assert send(other, "synchronize", 9, sha2, "second") == 202

    def both_done() -> bool:
        states = sql("SELECT state FROM deliveries WHERE id IN ('first', 'second')")
        return sorted(states) == [("done",), ("done",)]

    wait_until(both_done, "both deliveries done", pair, 60)
    results = dict(sql("SELECT id, result FROM deliveries"))
    assert results == {"first": "cancelled", "second": "succeeded"}
    end = other.get(f"/api/runs/{first_run}")["events"][-1]
    assert (end["phase"], end["status"]) == ("run", "cancelled")
    assert end["message"].startswith("superseded by 2222222; ")


def test_a_receiver_killed_mid_run_has_its_delivery_taken_over_once_its_lease_runs_out(
    receivers: tuple[Server, Server],
    sql: Callable[..., list[tuple[Any, ...]]],
    write_config: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With 2 s leases: the receiver running PR 5's deploy is killed with SIGKILL; the other one,
    which was running all along, queues the delivery again once the lease has run out, runs it
    and finishes it: done, succeeded, by the survivor."""
    monkeypatch.setenv("DEPLOY_PIPELINE_LEASE", "2")
    write_config(PIPELINE.replace("DURATION", "60s"))
    pair = tuple(server.start() for server in receivers)
    assert send(pair[0], "opened", 5, "5" * 40, "doomed") == 202

    def started() -> bool:
        return sql("SELECT run_id FROM deliveries WHERE id = 'doomed'") not in ([], [(None,)])

    wait_until(started, "the run started", pair, 30)
    worker = sql("SELECT worker FROM deliveries WHERE id = 'doomed'")[0][0]
    victim = next(s for s in pair if worker.endswith(f":{pid_of(s)}"))
    survivor = next(s for s in pair if s is not victim)
    write_config(PIPELINE.replace("DURATION", "0s"))  # the run again need not wait a minute
    victim.kill()

    def finished() -> bool:
        return sql("SELECT state FROM deliveries WHERE id = 'doomed'") == [("done",)]

    wait_until(finished, "the delivery finished by the survivor", (survivor,), 60)
    worker, result, run_id = sql("SELECT worker, result, run_id FROM deliveries")[0]
    assert (worker.rpartition(":")[2], result) == (str(pid_of(survivor)), "succeeded")
    assert sql("SELECT status FROM runs WHERE id = %s", run_id) == [("succeeded",)]
