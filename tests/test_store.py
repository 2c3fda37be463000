"""The state database: versioned schema with forward migrations, environments, runs and events,
and the one-run-per-environment lock with expiry and supersede."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_pipeline.errors import StoreError
from deploy_pipeline.model import EnvironmentRecord, Event
from deploy_pipeline.store import MIGRATIONS, Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_new_database_is_at_the_current_schema_version(tmp_path: Path) -> None:
    """Opening a new file creates every table and records the schema version."""
    Store(tmp_path / "state.db").close()
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_older_database_is_migrated_forward_keeping_its_data(tmp_path: Path) -> None:
    """A file written by the previous schema is upgraded on open and its rows survive."""
    path = tmp_path / "state.db"
    old = Store(path)
    old.save_environment(EnvironmentRecord("demo", "clone", "staging", frozenset({"report"})))
    old.close()
    newer = [*MIGRATIONS, "ALTER TABLE environments ADD COLUMN url TEXT"]
    store = Store(path, migrations=newer)
    assert store.query("PRAGMA user_version")[0][0] == len(MIGRATIONS) + 1
    assert store.environments()["demo"].skipped == {"report"}
    assert store.query("SELECT url FROM environments") == [(None,)]


def test_a_database_from_a_newer_version_is_refused_not_misread(tmp_path: Path) -> None:
    """A file at schema 9 makes this version stop and say to upgrade."""
    path = tmp_path / "state.db"
    sqlite3.connect(path).execute("PRAGMA user_version = 9")
    with pytest.raises(
        StoreError,
        match=rf"newer deploy-pipeline \(schema 9; this one reads up "
        rf"to {len(MIGRATIONS)}\): upgrade deploy-pipeline",
    ):
        Store(path)


def test_environment_records_round_trip(tmp_path: Path) -> None:
    """What is saved of an environment is read back the same."""
    store = Store(tmp_path / "s.db")
    rec = EnvironmentRecord(
        "pr-7",
        "preview",
        "staging",
        frozenset({"a", "b"}),
        pull_request=7,
        status="deployed",
        last_run=3,
    )
    store.save_environment(rec)
    assert store.environments() == {"pr-7": rec}
    store.forget_environment("pr-7")
    assert store.environments() == {}


def test_events_are_kept_per_run_in_order(tmp_path: Path) -> None:
    """A run's events come back in the order they were added, as their JSON form."""
    store = Store(tmp_path / "s.db")
    run = store.create_run(["staging"], "deploy", [])
    events = [Event(i, "staging", "eu", "s", "api", "deploy", "started") for i in range(3)]
    store.add_events(run, events[:2], 0)
    store.add_events(run, events[2:], 2)
    assert [e["ts"] for e in store.events(run)] == [0, 1, 2]
    store.finish_run(run, "succeeded")
    assert store.run(run) is not None and store.run(run)["status"] == "succeeded"  # type: ignore[index]


def test_a_second_run_finds_the_environment_locked_by_the_first(tmp_path: Path) -> None:
    """While run 1 holds staging, run 2 is told run 1 holds it; other environments are free."""
    store = Store(tmp_path / "s.db")
    assert store.try_lock("staging", 1) is None
    assert store.try_lock("staging", 2) == 1
    assert store.try_lock("production", 2) is None
    store.release_lock("staging", 1)
    assert store.try_lock("staging", 2) is None


def test_a_crashed_runs_lock_expires(tmp_path: Path) -> None:
    """A lock whose holder stopped renewing it is free once its lease has run out."""
    clock = Clock()
    store = Store(tmp_path / "s.db", clock=clock)
    store.try_lock("staging", 1, ttl=30)
    store.query("UPDATE locks SET holder = 'another-host:1'")
    clock.now += 29
    assert store.try_lock("staging", 2, ttl=30) == 1
    clock.now += 2
    assert store.try_lock("staging", 2, ttl=30) is None


def test_a_lock_of_a_dead_process_on_this_machine_is_free_at_once(tmp_path: Path) -> None:
    """A lock held by a process of this host that has exited does not make anyone wait."""
    store = Store(tmp_path / "s.db")
    store.try_lock("staging", 1)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    store.query("UPDATE locks SET holder = ? ", (f"{__import__('socket').gethostname()}:{dead}",))
    assert store.try_lock("staging", 2) is None


def test_supersede_is_seen_by_the_holder_at_its_next_heartbeat(tmp_path: Path) -> None:
    """Run 2 asks run 1 to stop; run 1's next renewal returns 2."""
    store = Store(tmp_path / "s.db")
    store.try_lock("staging", 1)
    assert store.renew_lock("staging", 1) is None
    store.supersede("staging", 2)
    assert store.renew_lock("staging", 1) == 2


def test_backend_state_is_kept_per_target(tmp_path: Path) -> None:
    """A target's memory is separate from another target's and can be cleared key by key."""
    store = Store(tmp_path / "s.db")
    eu, us = store.backend_state("eu"), store.backend_state("us")
    eu.put("staging/api", "running")
    assert eu.get("staging/api") == "running"
    assert us.get("staging/api") is None
    eu.put("staging/api", None)
    assert eu.get("staging/api") is None
