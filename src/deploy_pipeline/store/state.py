"""The state database: environments beyond the file (clones, skip changes), runs with their
events, the one-run-per-environment lock, and the simulated target's memory.

SQLite (stdlib, WAL) in `.deploy-pipeline/state.db` next to the config, or `DEPLOY_PIPELINE_STATE`;
PostgreSQL when `DEPLOY_PIPELINE_DATABASE_URL` names one, so several receivers share the state and
the queue (store/database.py holds what differs). The schema is versioned; older databases are
migrated forward on open and one from a newer version is refused rather than misread.

Who holds a run or a lock is `store/holders.py`'s; the sink that writes a run's events here as
they happen is `store/recording.py`'s (both still importable from here); the SQL of releases is
`store/releases.py`'s, which the Store inherits.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from deploy_pipeline.model import EnvironmentRecord, Event
from deploy_pipeline.settings import seconds
from deploy_pipeline.store.database import (
    DATABASE_URL_ENV,
    Database,
    Migration,
    PostgreSQL,
    Row,
    SQLite,
    Transaction,
)
from deploy_pipeline.store.holders import dead_here, holder_id, run_holder
from deploy_pipeline.store.migrations import MIGRATIONS
from deploy_pipeline.store.recording import EventRecorder
from deploy_pipeline.store.releases import ReleaseQueries

__all__ = [
    "BUSY",
    "LOCK_TTL",
    "LOCK_TTL_ENV",
    "MIGRATIONS",
    "STATE_ENV",
    "EventRecorder",
    "Store",
    "TargetState",
    "dead_here",
    "holder_id",
    "lock_ttl",
    "open_store",
    "state_path",
    "store_exists",
]

STATE_ENV = "DEPLOY_PIPELINE_STATE"
LOCK_TTL = 30.0  # a crashed run's lock is free again after this long without a heartbeat
LOCK_TTL_ENV = "DEPLOY_PIPELINE_LOCK_TTL"  # another number of seconds (tests shorten it)


def lock_ttl(environ: Mapping[str, str] = os.environ) -> float:
    """DEPLOY_PIPELINE_LOCK_TTL, checked (UsageError naming it when it is not a sane number)."""
    return seconds(environ, LOCK_TTL_ENV, LOCK_TTL, 0.5, 86400)


def state_path(config_path: str | Path, environ: Mapping[str, str] = os.environ) -> Path:
    override = environ.get(STATE_ENV)
    if override:
        path = Path(override)
        return path / "state.db" if path.is_dir() else path
    return Path(config_path).resolve().parent / ".deploy-pipeline" / "state.db"


def open_store(
    config: str | Path, *, state: Path | None = None, environ: Mapping[str, str] = os.environ
) -> Store:
    """The PostgreSQL store when DEPLOY_PIPELINE_DATABASE_URL is set, else the SQLite file."""
    return Store(state or state_path(config, environ), url=environ.get(DATABASE_URL_ENV) or None)


def store_exists(config: str | Path, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether there is a store to read (opening a SQLite store would create its file)."""
    return bool(environ.get(DATABASE_URL_ENV)) or state_path(config, environ).exists()


BUSY = ("deploying", "stopping", "deleting")  # an environment's status while a run works on it


class Store(ReleaseQueries):
    """The state, in the SQLite file at `path` or, given `url`, in that PostgreSQL database
    (then `path` is only where run logs are kept beside: no file is made)."""

    def __init__(
        self,
        path: Path,
        *,
        url: str | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path, self.clock = path, clock
        self.database: Database = PostgreSQL(url) if url else SQLite(path)
        try:
            self.database.migrate(migrations)
        except BaseException:
            self.database.close()
            raise

    def close(self) -> None:
        self.database.close()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self.database.transaction() as tx:
            yield tx

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        return self.database.query(sql, args)

    # --- environments --------------------------------------------------------------------------

    def environments(self) -> dict[str, EnvironmentRecord]:
        rows = self.query(
            "SELECT name, origin, source, skipped, skip_added, skip_removed, "
            "pull_request, status, last_run FROM environments ORDER BY name"
        )
        return {str(r[0]): _record(r) for r in rows}

    def save_environment(self, rec: EnvironmentRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO environments (name, origin, source, skipped, skip_added, "
                "skip_removed, pull_request, status, last_run, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET "
                "origin = excluded.origin, source = excluded.source, "
                "skipped = excluded.skipped, skip_added = excluded.skip_added, "
                "skip_removed = excluded.skip_removed, pull_request = excluded.pull_request, "
                "status = excluded.status, last_run = excluded.last_run, "
                "updated_at = excluded.updated_at",
                (
                    rec.name,
                    rec.origin,
                    rec.source,
                    _names(rec.skipped),
                    _names(rec.skip_added),
                    _names(rec.skip_removed),
                    rec.pull_request,
                    rec.status,
                    rec.last_run,
                    self.clock(),
                ),
            )

    def forget_environment(self, name: str) -> None:
        self.query("DELETE FROM environments WHERE name = ?", (name,))

    # --- runs and events -----------------------------------------------------------------------

    def create_run(
        self,
        environments: Sequence[str],
        action: str,
        services: Sequence[str],
        commit: str | None = None,
    ) -> int:
        with self.transaction() as db:
            row = db.execute(
                "INSERT INTO runs (environments, action, services, started_at, holder, "
                "git_commit) VALUES (?,?,?,?,?,?) RETURNING id",
                (
                    json.dumps(list(environments)),
                    action,
                    json.dumps(list(services)),
                    self.clock(),
                    run_holder(),
                    commit,
                ),
            ).fetchone()
            assert row is not None
            return int(row[0])

    def finish_run(self, run_id: int, status: str) -> None:
        self.query(
            "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
            (status, self.clock(), run_id),
        )

    def abandon_dead_runs(self) -> int:
        """Runs left `running` by a process that is gone are `abandoned`: one of this machine
        that no longer exists, or one (of any machine) that held its environments and stopped
        renewing their locks. Their environments, left deploying (stopping, deleting), read
        `failed`: what the run left behind is not known."""
        rows = self.query("SELECT id, holder FROM runs WHERE status = 'running'")
        if not rows:
            return 0
        live = {
            int(str(r[0]))
            for r in self.query("SELECT run_id FROM locks WHERE expires_at > ?", (self.clock(),))
        }
        holding = {rec.last_run for rec in self.environments().values() if rec.status in BUSY}
        dead = [
            run_id
            for run_id, holder in ((int(str(r[0])), str(r[1])) for r in rows)
            if dead_here(holder) or (run_id in holding and run_id not in live)
        ]
        for run_id in dead:
            with self.transaction() as db:
                db.execute(
                    "UPDATE runs SET status = 'abandoned', finished_at = ? "
                    "WHERE id = ? AND status = 'running'",
                    (self.clock(), run_id),
                )
                db.execute(
                    "UPDATE environments SET status = 'failed', updated_at = ? "
                    f"WHERE last_run = ? AND status IN ({', '.join('?' * len(BUSY))})",
                    (self.clock(), run_id, *BUSY),
                )
        return len(dead)

    def prune_runs(self, before: float) -> int:
        """Forget runs that finished before `before` (seconds since the epoch), their events and
        their log folders; an environment's last run is kept however old. How many went."""
        old_runs = (
            "FROM runs WHERE status <> 'running' AND finished_at < ? AND id NOT IN "
            "(SELECT last_run FROM environments WHERE last_run IS NOT NULL)"
        )
        with self.transaction() as db:
            old = [int(str(r[0])) for r in db.execute(f"SELECT id {old_runs}", (before,)).rows]
            db.execute(f"DELETE FROM events WHERE run_id IN (SELECT id {old_runs})", (before,))
            db.execute(f"DELETE {old_runs}", (before,))
        for run_id in old:
            shutil.rmtree(self.path.parent / "logs" / f"run-{run_id}", ignore_errors=True)
        return len(old)

    def ended_badly(self, run_id: int) -> bool:
        """Whether this database saw the run end without succeeding (failed, cancelled,
        abandoned): such a run made no release, whatever it left on a target (§10)."""
        rows = self.query("SELECT status FROM runs WHERE id = ?", (run_id,))
        return bool(rows) and str(rows[0][0]) not in ("running", "succeeded")

    def run(self, run_id: int) -> dict[str, object] | None:
        rows = self.query(
            "SELECT id, environments, action, services, status, started_at, "
            "finished_at FROM runs WHERE id = ?",
            (run_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return {
            "id": r[0],
            "environments": json.loads(str(r[1])),
            "action": r[2],
            "services": json.loads(str(r[3])),
            "status": r[4],
            "started_at": r[5],
            "finished_at": r[6],
        }

    def add_events(self, run_id: int, events: Sequence[Event], first_seq: int) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO events (run_id, seq, body) VALUES (?,?,?)",
                [(run_id, first_seq + i, json.dumps(e.to_json())) for i, e in enumerate(events)],
            )

    def events(self, run_id: int) -> list[dict[str, object]]:
        rows = self.query("SELECT body FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        return [json.loads(str(r[0])) for r in rows]

    def measured_durations(self, target: str, runs: int = 20) -> dict[tuple[str, str, str], float]:
        """How long each step last took on a target, from the events of the latest recorded
        runs: (service, phase, status) → seconds, status `succeeded` or `reused` (a build that
        found its image takes less than one that builds it). What a rehearsal waits."""
        rows = self.query(
            "SELECT body FROM events WHERE run_id IN "
            "(SELECT id FROM runs ORDER BY id DESC LIMIT ?) ORDER BY run_id DESC, seq DESC",
            (runs,),
        )
        found: dict[tuple[str, str, str], float] = {}
        for row in rows:
            event = json.loads(str(row[0]))
            seconds, status = event.get("duration"), event.get("status")
            if (
                event.get("target") == target
                and isinstance(seconds, int | float)
                and status in ("succeeded", "reused")
            ):
                found.setdefault((str(event["service"]), str(event["phase"]), status), seconds)
        return found

    # --- the one-run-per-environment lock ------------------------------------------------------

    def try_lock(self, environment: str, run_id: int, ttl: float = LOCK_TTL) -> int | None:
        """Take the environment's lock for run_id; return the run holding it if that is not free."""
        now = self.clock()
        with self.transaction() as db:
            db.serialize(f"lock:{environment}")  # PostgreSQL: two takers, one at a time
            row = db.execute(
                "SELECT run_id, holder, expires_at FROM locks WHERE environment = ?", (environment,)
            ).fetchone()
            if row and row[0] != run_id and row[2] > now and not dead_here(str(row[1])):
                return int(row[0])
            db.execute(
                "INSERT INTO locks (environment, run_id, holder, expires_at, superseded_by) "
                "VALUES (?,?,?,?,NULL) ON CONFLICT (environment) DO UPDATE SET "
                "run_id = excluded.run_id, holder = excluded.holder, "
                "expires_at = excluded.expires_at, superseded_by = NULL",
                (environment, run_id, run_holder(), now + ttl),
            )
            return None

    def renew_lock(self, environment: str, run_id: int, ttl: float = LOCK_TTL) -> int | None:
        """Extend the lease; return the run that asked to supersede this one, if any."""
        with self.transaction() as db:
            db.execute(
                "UPDATE locks SET expires_at = ? WHERE environment = ? AND run_id = ?",
                (self.clock() + ttl, environment, run_id),
            )
            row = db.execute(
                "SELECT superseded_by FROM locks WHERE environment = ? AND run_id = ?",
                (environment, run_id),
            ).fetchone()
            return int(row[0]) if row and row[0] is not None else None

    def superseded_by(self, environment: str, run_id: int) -> int | None:
        """The run that asked run_id to give the environment up, if any (nothing is renewed)."""
        rows = self.query(
            "SELECT superseded_by FROM locks WHERE environment = ? AND run_id = ?",
            (environment, run_id),
        )
        return int(str(rows[0][0])) if rows and rows[0][0] is not None else None

    def supersede(self, environment: str, by_run: int, holder: int | None = None) -> None:
        """Ask the run holding the environment (only if it is still `holder`, when given) to
        stop; it sees it within SUPERSEDE_POLL."""
        if holder is None:
            self.query(
                "UPDATE locks SET superseded_by = ? WHERE environment = ? AND run_id != ?",
                (by_run, environment, by_run),
            )
        else:
            self.query(
                "UPDATE locks SET superseded_by = ? WHERE environment = ? AND run_id = ?",
                (by_run, environment, holder),
            )

    def release_lock(self, environment: str, run_id: int) -> None:
        self.query("DELETE FROM locks WHERE environment = ? AND run_id = ?", (environment, run_id))

    # --- a backend's memory --------------------------------------------------------------------

    def backend_state(self, target: str) -> TargetState:
        return TargetState(self, target)

    # --- what the receiver's views read --------------------------------------------------------

    def run_ids(self, environment: str, last: int, limit: int) -> list[int]:
        """The ids of the environment's runs up to `last`, newest first, `limit` at most (its
        names are [a-z0-9-]: no LIKE wildcard in them)."""
        rows = self.query(
            "SELECT id FROM runs WHERE id <= ? AND environments LIKE ? ORDER BY id DESC LIMIT ?",
            (last, f'%"{environment}"%', limit),
        )
        return [int(str(r[0])) for r in rows]

    def events_after(self, run_id: int, after: int) -> list[tuple[int, str]]:
        """The run's events after sequence number `after`, as (seq, JSON text) in order."""
        rows = self.query(
            "SELECT seq, body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
            (run_id, after),
        )
        return [(int(str(seq)), str(body)) for seq, body in rows]


class TargetState:
    """The BackendState of one target, kept in the store."""

    def __init__(self, store: Store, target: str) -> None:
        self.store, self.target = store, target

    def get(self, key: str) -> str | None:
        rows = self.store.query(
            "SELECT value FROM backend_state WHERE target = ? AND key = ?", (self.target, key)
        )
        return str(rows[0][0]) if rows else None

    def put(self, key: str, value: str | None) -> None:
        if value is None:
            self.store.query(
                "DELETE FROM backend_state WHERE target = ? AND key = ?", (self.target, key)
            )
        else:
            self.store.query(
                "INSERT INTO backend_state (target, key, value) VALUES (?,?,?) "
                "ON CONFLICT (target, key) DO UPDATE SET value = excluded.value",
                (self.target, key, value),
            )


def _names(values: frozenset[str]) -> str:
    return json.dumps(sorted(values))


def _record(row: tuple[object, ...]) -> EnvironmentRecord:
    origin = str(row[1])
    assert origin in ("file", "clone", "preview")
    return EnvironmentRecord(
        name=str(row[0]),
        origin=origin,  # type: ignore[arg-type]
        source=str(row[2]) if row[2] is not None else None,
        skipped=frozenset(json.loads(str(row[3]))),
        skip_added=frozenset(json.loads(str(row[4]))),
        skip_removed=frozenset(json.loads(str(row[5]))),
        pull_request=int(str(row[6])) if row[6] is not None else None,
        status=str(row[7]),
        last_run=int(str(row[8])) if row[8] is not None else None,
    )
