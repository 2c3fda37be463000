"""The state database, on SQLite and on PostgreSQL alike: versioned schema with forward migrations,
environments, runs and events, and the one-run-per-environment lock with expiry and supersede;
how a store is chosen, and what it says when PostgreSQL cannot be reached."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from deploy_pipeline.errors import StoreError
from deploy_pipeline.model import EnvironmentRecord, Event
from deploy_pipeline.store.state import MIGRATIONS, Store, open_store, store_exists
from tests.support.clock import Clock
from tests.support.locks import dead_holder

if TYPE_CHECKING:  # imported only as the plugin: a plain import comes before pytest can rewrite it
    from tests.support.postgres_testbed import Stores

pytest_plugins = ["tests.support.postgres_testbed"]


def test_a_new_database_is_at_the_current_schema_version(stores: Stores) -> None:
    """Opening a new database creates every table and records the schema version."""
    store = stores.open()
    assert store.database.version() == len(MIGRATIONS)
    assert store.query("SELECT COUNT(*) FROM deliveries") == [(0,)]


def test_a_new_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    """The SQLite file keeps its schema version in user_version and journals with WAL."""
    Store(tmp_path / "state.db").close()
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_an_older_database_is_migrated_forward_keeping_its_data(stores: Stores) -> None:
    """A database written by the previous schema is upgraded on open and its rows survive."""
    old = stores.open()
    old.save_environment(EnvironmentRecord("demo", "clone", "staging", frozenset({"report"})))
    old.close()
    newer = [*MIGRATIONS, "ALTER TABLE environments ADD COLUMN url TEXT"]
    store = stores.open(migrations=newer)
    assert store.database.version() == len(MIGRATIONS) + 1
    assert store.environments()["demo"].skipped == {"report"}
    assert store.query("SELECT url FROM environments") == [(None,)]


def test_a_database_from_a_newer_version_is_refused_not_misread(stores: Stores) -> None:
    """A database at schema 9 makes this version stop and say to upgrade."""
    store = stores.open()
    with store.transaction() as tx:
        store.database.set_version(tx, 9)
    with pytest.raises(
        StoreError,
        match=rf"newer deploy-pipeline \(schema 9; this one reads up "
        rf"to {len(MIGRATIONS)}\): upgrade deploy-pipeline",
    ):
        stores.open()


def test_two_stores_opening_a_new_database_at_once_migrate_it_once(stores: Stores) -> None:
    """Four processes' stores opening an empty database at the same moment all end at the
    current schema, with the tables made once (no 'already exists' error)."""
    barrier, errors, opened = threading.Barrier(4), [], []

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(stores.open())
        except StoreError as exc:  # pragma: no cover - the failure this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [s.database.version() for s in opened] == [len(MIGRATIONS)] * 4


def test_environment_records_round_trip(stores: Stores) -> None:
    """What is saved of an environment is read back the same, and saved again replaces it."""
    store = stores.open()
    rec = EnvironmentRecord(
        "pr-7",
        "preview",
        "staging",
        frozenset({"a", "b"}),
        pull_request=7,
        status="deployed",
        last_run=3,
    )
    store.save_environment(EnvironmentRecord("pr-7", "preview", "staging", frozenset()))
    store.save_environment(rec)
    assert store.environments() == {"pr-7": rec}
    store.forget_environment("pr-7")
    assert store.environments() == {}


def test_events_are_kept_per_run_in_order(stores: Stores) -> None:
    """A run's events come back in the order they were added, as their JSON form."""
    store = stores.open()
    first = store.create_run(["staging"], "deploy", [])
    run = store.create_run(["staging"], "deploy", ["api"])
    assert run == first + 1
    events = [Event(i, "staging", "eu", "s", "api", "deploy", "started") for i in range(3)]
    store.add_events(run, events[:2], 0)
    store.add_events(run, events[2:], 2)
    assert [e["ts"] for e in store.events(run)] == [0, 1, 2]
    assert store.events(first) == []
    store.finish_run(run, "succeeded")
    found = store.run(run)
    assert found is not None
    assert (found["status"], found["services"]) == ("succeeded", ["api"])


def test_a_second_run_finds_the_environment_locked_by_the_first(stores: Stores) -> None:
    """While run 1 holds staging, run 2 is told run 1 holds it; other environments are free."""
    store = stores.open()
    assert store.try_lock("staging", 1) is None
    assert store.try_lock("staging", 2) == 1
    assert store.try_lock("production", 2) is None
    store.release_lock("staging", 1)
    assert store.try_lock("staging", 2) is None


def test_of_runs_taking_one_lock_at_once_exactly_one_gets_it(stores: Stores) -> None:
    """Eight runs, each through its own store, ask for staging at the same moment: one holds it
    and the seven others are told that one's run id."""
    opened = [stores.open() for _ in range(8)]
    barrier, answers = threading.Barrier(8), {}

    def take(run_id: int) -> None:
        barrier.wait()
        answers[run_id] = opened[run_id - 1].try_lock("staging", run_id)

    threads = [threading.Thread(target=take, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [run for run, holder in answers.items() if holder is None]
    assert len(winners) == 1
    assert {holder for holder in answers.values() if holder is not None} == {winners[0]}


def test_a_crashed_runs_lock_expires(stores: Stores) -> None:
    """A lock whose holder stopped renewing it is free once its lease has run out."""
    clock = Clock()
    store = stores.open(clock=clock)
    store.try_lock("staging", 1, ttl=30)
    store.query("UPDATE locks SET holder = 'another-host:1'")
    clock.now += 29
    assert store.try_lock("staging", 2, ttl=30) == 1
    clock.now += 2
    assert store.try_lock("staging", 2, ttl=30) is None


def test_a_lock_of_a_dead_process_on_this_machine_is_free_at_once(stores: Stores) -> None:
    """A lock held by a process of this host that has exited does not make anyone wait."""
    store = stores.open()
    store.try_lock("staging", 1)
    store.query("UPDATE locks SET holder = ? ", (dead_holder(),))
    assert store.try_lock("staging", 2) is None


def test_supersede_is_seen_by_the_holder_at_its_next_heartbeat(stores: Stores) -> None:
    """Run 2 asks run 1 to stop; run 1's next renewal returns 2."""
    store = stores.open()
    store.try_lock("staging", 1)
    assert store.renew_lock("staging", 1) is None
    store.supersede("staging", 2)
    assert store.renew_lock("staging", 1) == 2


def test_a_pid_taken_by_a_later_process_is_not_the_holder_that_died(stores: Stores) -> None:
    """A holder `host:pid:start` whose pid is alive but started at another time (the pid was
    given again) is dead: its lock is free at once."""
    import os

    store = stores.open()
    store.try_lock("staging", 1)
    store.query("UPDATE locks SET holder = ?", (f"{socket.gethostname()}:{os.getpid()}:1",))
    assert store.try_lock("staging", 2) is None


def test_runs_of_gone_processes_are_abandoned_and_their_environments_fail(stores: Stores) -> None:
    """A run left `running` by a dead process of this machine, and one of another machine whose
    lock ran out, are `abandoned` and their environments read `failed`; a run of another machine
    that holds a live lock, and one waiting for a lock, are left running."""
    clock = Clock()
    store = stores.open(clock=clock)
    for name in ("dead", "expired", "alive", "waiting"):
        run_id = store.create_run([name], "deploy", [])
        if name != "waiting":
            store.try_lock(name, run_id, ttl=30)
            store.save_environment(
                EnvironmentRecord(name=name, origin="file", status="deploying", last_run=run_id)
            )
    store.query("UPDATE runs SET holder = ? WHERE id = 1", (dead_holder(),))
    store.query("UPDATE runs SET holder = 'another-host:7' WHERE id > 1")
    store.query("UPDATE locks SET holder = 'another-host:7', expires_at = ? WHERE run_id = 2", (0,))
    clock.now += 10
    assert store.abandon_dead_runs() == 2
    statuses = store.query("SELECT id, status FROM runs ORDER BY id")
    assert statuses == [(1, "abandoned"), (2, "abandoned"), (3, "running"), (4, "running")]
    envs = store.environments()
    assert [envs[n].status for n in ("dead", "expired", "alive")] == [
        "failed",
        "failed",
        "deploying",
    ]


def test_backend_state_is_kept_per_target(stores: Stores) -> None:
    """A target's memory is separate from another target's, is overwritten by a new value and
    can be cleared key by key."""
    store = stores.open()
    eu, us = store.backend_state("eu"), store.backend_state("us")
    eu.put("staging/api", "deploying")
    eu.put("staging/api", "running")
    assert eu.get("staging/api") == "running"
    assert us.get("staging/api") is None
    eu.put("staging/api", None)
    assert eu.get("staging/api") is None


def test_without_a_database_url_the_store_is_the_sqlite_file(tmp_path: Path) -> None:
    """open_store with no DEPLOY_PIPELINE_DATABASE_URL opens the file DEPLOY_PIPELINE_STATE names,
    and store_exists is false until it has been made."""
    environ = {"DEPLOY_PIPELINE_STATE": str(tmp_path / "s" / "state.db")}
    config = tmp_path / ".deploy-pipeline.yml"
    assert not store_exists(config, environ)
    store = open_store(config, environ=environ)
    assert (store.database.kind, store.path) == ("sqlite", tmp_path / "s" / "state.db")
    store.close()
    assert store_exists(config, environ)


def test_with_a_database_url_the_store_is_postgresql_and_no_file_is_made(
    database_url: str, tmp_path: Path
) -> None:
    """open_store with DEPLOY_PIPELINE_DATABASE_URL opens that PostgreSQL; the state path is only
    where run logs go, and no SQLite file appears."""
    environ = {
        "DEPLOY_PIPELINE_DATABASE_URL": database_url,
        "DEPLOY_PIPELINE_STATE": str(tmp_path / "s" / "state.db"),
    }
    config = tmp_path / ".deploy-pipeline.yml"
    assert store_exists(config, environ)
    store = open_store(config, environ=environ)
    try:
        assert store.database.kind == "postgresql"
        store.save_environment(EnvironmentRecord("demo", "clone", "staging", frozenset()))
        assert list(store.environments()) == ["demo"]
    finally:
        store.close()
    assert not (tmp_path / "s").exists()


def test_an_unreachable_postgresql_is_said_without_its_password(tmp_path: Path) -> None:
    """Nothing listens at the URL's port: the error names the server with the password hidden
    and says what to check; the password is nowhere in it or its cause."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    url = f"postgresql://deploy:pa55-w0rd-x@127.0.0.1:{port}/state?password=pa55-w0rd-x"
    with pytest.raises(StoreError) as caught:
        Store(tmp_path / "state.db", url=url)
    message = str(caught.value)
    assert message.startswith(
        f"cannot reach the PostgreSQL at postgresql://deploy:***@127.0.0.1:{port}/state"
        "?password=***: "
    )
    assert message.endswith("— is it running, and is DEPLOY_PIPELINE_DATABASE_URL right?")
    assert "Connection refused" in message
    assert "pa55-w0rd-x" not in message + repr(caught.value.__cause__)


def test_a_wrong_password_is_said_without_the_password(postgres: str, tmp_path: Path) -> None:
    """The real server refuses a wrong password: the error says so, and shows neither password."""
    wrong = postgres.replace(f":{urllib.parse.urlsplit(postgres).password}@", ":not-it-42x@")
    with pytest.raises(StoreError, match="password authentication failed") as caught:
        Store(tmp_path / "state.db", url=wrong)
    assert "not-it-42x" not in str(caught.value) + repr(caught.value.__cause__)
    assert "postgresql://postgres:***@127.0.0.1" in str(caught.value)


def test_a_failing_statement_names_the_database_without_its_password(
    database_url: str, tmp_path: Path
) -> None:
    """An SQL error on PostgreSQL becomes a StoreError naming the database, password hidden."""
    store = Store(tmp_path / "state.db", url=database_url)
    password = urllib.parse.urlsplit(database_url).password
    assert password
    try:
        with pytest.raises(StoreError, match='relation "nothing_here" does not exist') as caught:
            store.query("SELECT * FROM nothing_here")
    finally:
        store.close()
    assert str(caught.value).startswith("state database the PostgreSQL database at postgresql://")
    assert password not in str(caught.value)


def test_a_database_url_that_is_not_postgresql_is_refused(tmp_path: Path) -> None:
    """Another kind of URL is refused with what the variable should hold, password hidden."""
    with pytest.raises(
        StoreError,
        match=r"DEPLOY_PIPELINE_DATABASE_URL must be a postgresql://user:password@host:port/"
        r"database URL, not 'mysql://root:\*\*\*@db/state'; unset it to keep the state in a "
        r"SQLite file",
    ):
        Store(tmp_path / "state.db", url="mysql://root:hunter2@db/state")


def test_runs_past_the_retention_are_forgotten_with_their_events_and_logs(
    stores: Stores,
) -> None:
    """`prune_runs` forgets runs that finished before the cut-off, their events and log folder;
    a newer run, one still running and an environment's last run (however old) stay."""
    clock = Clock(now=1000.0)
    store = stores.open(clock=clock)
    old, last = store.create_run(["a"], "deploy", []), store.create_run(["b"], "deploy", [])
    running = store.create_run(["c"], "deploy", [])
    event = Event(0, "a", "eu", "s", "api", "deploy", "started")
    for run in (old, last, running):
        store.add_events(run, [event], 0)
    store.finish_run(old, "succeeded")
    store.finish_run(last, "succeeded")
    store.save_environment(EnvironmentRecord("b", "file", None, frozenset(), last_run=last))
    logs = store.path.parent / "logs" / f"run-{old}"
    logs.mkdir(parents=True)
    (logs / "api.log").write_text("deployed\n")
    clock.now = 5000.0
    recent = store.create_run(["a"], "deploy", [])
    store.finish_run(recent, "failed")

    assert store.prune_runs(before=4000.0) == 1
    assert store.run(old) is None and store.events(old) == []
    assert not logs.exists()
    assert [store.run(r) is not None for r in (last, running, recent)] == [True, True, True]
    assert len(store.events(last)) == 1


def test_run_ids_and_events_after_read_an_environments_runs_and_a_runs_later_events(
    stores: Stores,
) -> None:
    """The status page's reads: an environment's run ids up to one, newest first and no more
    than asked (another environment's runs left out), and a run's events after a sequence."""
    store = stores.open()
    ids = [store.create_run([name], "deploy", []) for name in ("pr-1", "pr-10", "pr-1", "pr-1")]
    assert store.run_ids("pr-1", ids[3], 10) == [ids[3], ids[2], ids[0]]
    assert store.run_ids("pr-1", ids[2], 1) == [ids[2]]
    events = [Event(i, "pr-1", "eu", "s", "api", "deploy", "started") for i in range(3)]
    store.add_events(ids[0], events, 0)
    later = store.events_after(ids[0], 0)
    assert [seq for seq, _ in later] == [1, 2]
    assert [json.loads(body)["ts"] for _, body in later] == [1, 2]
    assert store.events_after(ids[1], -1) == []
