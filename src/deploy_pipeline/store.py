"""The state database: environments beyond the file (clones, skip changes), runs with their
events, the one-run-per-environment lock, and the simulated target's memory.

SQLite (stdlib, WAL) in `.deploy-pipeline/state.db` next to the config, or `DEPLOY_PIPELINE_STATE`.
The schema is versioned with `PRAGMA user_version`; older files are migrated forward on open and
a file from a newer version is refused rather than misread.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from deploy_pipeline.errors import StoreError
from deploy_pipeline.model import EnvironmentRecord, Event

STATE_ENV = "DEPLOY_PIPELINE_STATE"
LOCK_TTL = 30.0  # a crashed run's lock is free again after this long without a heartbeat

# Migration N takes a database from version N-1 to N. Append; never edit a released one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE environments (
        name TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        source TEXT,
        skipped TEXT NOT NULL DEFAULT '[]',
        skip_added TEXT NOT NULL DEFAULT '[]',
        skip_removed TEXT NOT NULL DEFAULT '[]',
        pull_request INTEGER,
        status TEXT NOT NULL DEFAULT 'not deployed',
        last_run INTEGER,
        updated_at REAL NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        environments TEXT NOT NULL,
        action TEXT NOT NULL,
        services TEXT NOT NULL DEFAULT '[]',
        status TEXT NOT NULL DEFAULT 'running',
        started_at REAL NOT NULL,
        finished_at REAL,
        holder TEXT NOT NULL
    );
    CREATE TABLE events (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE locks (
        environment TEXT PRIMARY KEY,
        run_id INTEGER NOT NULL,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL,
        superseded_by INTEGER
    );
    CREATE TABLE backend_state (
        target TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (target, key)
    );
    """,
    # 2: the receiver's webhook deliveries, a durable queue (see queue.py)
    """
    CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        event TEXT NOT NULL,
        received_at REAL NOT NULL,
        body TEXT NOT NULL,
        action TEXT NOT NULL,
        environment TEXT,
        pull_request INTEGER,
        sha TEXT,
        reason TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        worker TEXT,
        run_id INTEGER,
        result TEXT,
        finished_at REAL
    );
    CREATE INDEX deliveries_by_state ON deliveries(state, received_at);
    """,
]


def state_path(config_path: str | Path) -> Path:
    override = os.environ.get(STATE_ENV)
    if override:
        path = Path(override)
        return path / "state.db" if path.is_dir() else path
    return Path(config_path).resolve().parent / ".deploy-pipeline" / "state.db"


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Store:
    def __init__(
        self,
        path: Path,
        *,
        migrations: Sequence[str] = MIGRATIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path, self.clock = path, clock
        self.lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.migrate(migrations)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the state database {path}: {exc}") from exc

    def migrate(self, migrations: Sequence[str]) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(migrations):
            raise StoreError(
                f"{self.path} was written by a newer deploy-pipeline (schema {version}; this one "
                f"reads up to {len(migrations)}): upgrade deploy-pipeline"
            )
        for number in range(version + 1, len(migrations) + 1):
            with self.transaction():
                for statement in migrations[number - 1].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self.lock:
            try:
                return self.db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"state database {self.path}: {exc}") from exc

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
                "INSERT OR REPLACE INTO environments VALUES (?,?,?,?,?,?,?,?,?,?)",
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

    def create_run(self, environments: Sequence[str], action: str, services: Sequence[str]) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (environments, action, services, started_at, holder) "
                "VALUES (?,?,?,?,?)",
                (
                    json.dumps(list(environments)),
                    action,
                    json.dumps(list(services)),
                    self.clock(),
                    holder_id(),
                ),
            )
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str) -> None:
        self.query(
            "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
            (status, self.clock(), run_id),
        )

    def abandon_dead_runs(self) -> int:
        """Runs a process of this machine left `running` when it died are `abandoned`."""
        rows = self.query("SELECT id, holder FROM runs WHERE status = 'running'")
        dead = [int(str(r[0])) for r in rows if dead_here(str(r[1]))]
        for run_id in dead:
            self.finish_run(run_id, "abandoned")
        return len(dead)

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
                "INSERT INTO events VALUES (?,?,?)",
                [(run_id, first_seq + i, json.dumps(e.to_json())) for i, e in enumerate(events)],
            )

    def events(self, run_id: int) -> list[dict[str, object]]:
        rows = self.query("SELECT body FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        return [json.loads(str(r[0])) for r in rows]

    # --- the one-run-per-environment lock ------------------------------------------------------

    def try_lock(self, environment: str, run_id: int, ttl: float = LOCK_TTL) -> int | None:
        """Take the environment's lock for run_id; return the run holding it if that is not free."""
        now = self.clock()
        with self.transaction() as db:
            row = db.execute(
                "SELECT run_id, holder, expires_at FROM locks WHERE environment = ?", (environment,)
            ).fetchone()
            if row and row[0] != run_id and row[2] > now and not dead_here(str(row[1])):
                return int(row[0])
            db.execute(
                "INSERT OR REPLACE INTO locks VALUES (?,?,?,?,NULL)",
                (environment, run_id, holder_id(), now + ttl),
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

    def supersede(self, environment: str, by_run: int) -> None:
        self.query(
            "UPDATE locks SET superseded_by = ? WHERE environment = ? AND run_id != ?",
            (by_run, environment, by_run),
        )

    def release_lock(self, environment: str, run_id: int) -> None:
        self.query("DELETE FROM locks WHERE environment = ? AND run_id = ?", (environment, run_id))

    # --- a backend's memory --------------------------------------------------------------------

    def backend_state(self, target: str) -> TargetState:
        return TargetState(self, target)


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
                "INSERT OR REPLACE INTO backend_state VALUES (?,?,?)", (self.target, key, value)
            )


class EventRecorder:
    """An event sink that keeps a run's events in the store, written in batches."""

    def __init__(self, store: Store, run_id: int, batch: int = 200, every: float = 0.5) -> None:
        self.store, self.run_id, self.batch, self.every = store, run_id, batch, every
        self.pending: list[Event] = []
        self.seq = 0
        self.last = time.monotonic()

    def __call__(self, event: Event) -> None:
        self.pending.append(event)
        if len(self.pending) >= self.batch or time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.store.add_events(self.run_id, self.pending, self.seq)
            self.seq += len(self.pending)
            self.pending = []
        self.last = time.monotonic()


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


def dead_here(holder: str) -> bool:
    """A lock held by a process of this machine that no longer exists is free at once."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
