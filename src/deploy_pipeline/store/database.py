"""The two SQL databases the store runs on: SQLite (a file, the embedded default) and PostgreSQL
(shared by several receivers). Both take the same SQL, written with `?` placeholders and standard
upserts; what differs (transactions, where the schema version is kept, locks between processes,
the DDL's types) lives here. psycopg is imported by this module only, and only when it is used.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from deploy_pipeline.errors import StoreError

if TYPE_CHECKING:
    import psycopg

DATABASE_URL_ENV = "DEPLOY_PIPELINE_DATABASE_URL"
SCHEMES = ("postgresql://", "postgres://")


class Dialects(NamedTuple):
    """One migration written for each database, where their DDL differs (types, identities)."""

    sqlite: str
    postgresql: str


Migration = str | Dialects
Row = tuple[Any, ...]


@dataclass(frozen=True)
class Result:
    """A statement's rows (read at once) and how many rows it changed."""

    rows: list[Row]
    rowcount: int

    def fetchone(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Row]:
        return self.rows


class Transaction:
    """Statements run in one transaction; `serialize` takes a lock between processes, held to
    the end of it. On SQLite, whose writers are serialized by BEGIN IMMEDIATE, locks are free."""

    skip_locked = ""  # the clause that locks selected rows and passes over rows others hold

    def execute(self, sql: str, args: Sequence[object] = ()) -> Result:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        raise NotImplementedError

    def serialize(self, key: str) -> None:
        """Wait until no other transaction holds `key`, then hold it until this one ends."""

    def try_serialize(self, key: str) -> bool:
        """Hold `key` until this transaction ends; False (at once) when another holds it."""
        return True


class Database:
    """One connection, used by one thread at a time; what the store needs and nothing more."""

    kind = ""
    where = ""  # for messages: the file, or the URL with its password hidden

    def transaction(self) -> AbstractContextManager[Transaction]:
        raise NotImplementedError

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        with self.transaction() as tx:
            return tx.execute(sql, args).rows

    def version(self) -> int:
        raise NotImplementedError

    def set_version(self, tx: Transaction, version: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def checkpoint_apart(self, every: float) -> None:
        """Keep the database's upkeep out of this connection's commits (SQLite: the WAL's)."""

    def migrate(self, migrations: Sequence[Migration]) -> None:
        """Take the schema forward to len(migrations); refuse a newer one rather than misread it.
        Two processes starting at once: one migrates, the other waits and finds it done."""
        if self.version() == len(migrations):
            return
        with self.transaction() as tx:
            tx.serialize("migrate")
            version = self.version()
            if version > len(migrations):
                raise StoreError(
                    f"{self.where} was written by a newer deploy-pipeline (schema {version}; "
                    f"this one reads up to {len(migrations)}): upgrade deploy-pipeline"
                )
            for migration in migrations[version:]:
                text = (
                    getattr(migration, self.kind) if isinstance(migration, Dialects) else migration
                )
                for statement in text.split(";"):
                    if statement.strip():
                        tx.execute(statement)
            self.set_version(tx, len(migrations))


# --- SQLite ------------------------------------------------------------------------------------


class SQLiteTransaction(Transaction):
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, args: Sequence[object] = ()) -> Result:
        cursor = self.db.execute(sql, args)
        rows = cursor.fetchall()  # RETURNING's rowcount is known once its rows are read
        return Result(rows, cursor.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self.db.executemany(sql, rows)


def _wal(db: sqlite3.Connection, wait: float = 30.0) -> None:
    """Turn on WAL. Switching a new file's journal needs it to itself, and SQLite does not wait
    for that through its busy timeout: several processes opening one new file retry here."""
    deadline = time.monotonic() + wait
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
        else:
            return


class SQLite(Database):
    """A file in WAL mode; its schema version is `PRAGMA user_version`."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.where = str(path)
        self.lock = threading.RLock()
        self.closing = threading.Event()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            _wal(self.db)
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the state database {path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield SQLiteTransaction(self.db)
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"state database {self.where}: {exc}") from exc

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        with self.lock:
            try:
                return self.db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"state database {self.where}: {exc}") from exc

    def checkpoint_apart(self, every: float) -> None:
        """SQLite copies the WAL back into the file in the commit that takes it past 1,000
        pages, ~10 ms with its fsync, holding this connection's lock: the receiver's 202s waited
        for it. Here a thread does it every `every` seconds, on a connection of its own."""
        self.db.execute("PRAGMA wal_autocheckpoint=0")

        def checkpoints() -> None:
            db = sqlite3.connect(self.where, timeout=30, isolation_level=None)
            try:
                while not self.closing.wait(every):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # the other connections' own checkpoints go on
            finally:
                db.close()

        threading.Thread(target=checkpoints, name="wal-checkpoints", daemon=True).start()

    def version(self) -> int:
        return int(self.query("PRAGMA user_version")[0][0])

    def set_version(self, tx: Transaction, version: int) -> None:
        tx.execute(f"PRAGMA user_version = {int(version)}")

    def close(self) -> None:
        self.closing.set()
        with self.lock:
            self.db.close()


# --- PostgreSQL --------------------------------------------------------------------------------


class PostgresTransaction(Transaction):
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, db: psycopg.Connection[Row]) -> None:
        self.db = db

    def execute(self, sql: str, args: Sequence[object] = ()) -> Result:
        cursor = self.db.execute(_placeholders(sql), args)
        rows = cursor.fetchall() if cursor.description is not None else []
        return Result(rows, cursor.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        with self.db.cursor() as cursor:
            cursor.executemany(_placeholders(sql), rows)

    def serialize(self, key: str) -> None:
        self.db.execute(_ADVISORY.format(fn="pg_advisory_xact_lock"), (key,))

    def try_serialize(self, key: str) -> bool:
        row = self.db.execute(_ADVISORY.format(fn="pg_try_advisory_xact_lock"), (key,)).fetchone()
        return bool(row and row[0])


# an advisory lock per key and schema: tests (and tenants) in other schemas never wait on ours
_ADVISORY = "SELECT {fn}(hashtext(coalesce(current_schema(), '')), hashtext(%s))"


class PostgreSQL(Database):
    """A database (or a schema of one: `?options=-csearch_path%3DNAME`) shared by receivers;
    its schema version is the one row of `deploy_pipeline_schema`. A connection lost (the
    server restarted) is opened again at the next use."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        if not url.startswith(SCHEMES):
            raise StoreError(
                f"{DATABASE_URL_ENV} must be a postgresql://user:password@host:port/database "
                f"URL, not {redact_url(url)!r}; unset it to keep the state in a SQLite file"
            )
        self.url, self.where = url, f"the PostgreSQL database at {redact_url(url)}"
        self.secrets = _secrets(url)
        self.lock = threading.RLock()
        self.db: psycopg.Connection[Row] | None = None
        self.connection()

    def connection(self) -> psycopg.Connection[Row]:
        if self.db is not None and not self.db.closed and not self.db.broken:
            return self.db
        try:
            import psycopg
        except ImportError as exc:  # e.g. the Action's image, which leaves it out
            raise StoreError(
                f"{DATABASE_URL_ENV} is set but this installation has no PostgreSQL client: "
                "pip install 'psycopg[binary]', or unset it to keep the state in a SQLite file"
            ) from exc
        try:
            self.db = psycopg.connect(
                self.url, autocommit=True, connect_timeout=10, application_name="deploy-pipeline"
            )
        except psycopg.Error as exc:
            # libpq's first line says what failed; the next ones are hints the message gives
            reason = self.mask(" ".join(str(exc).strip().split("\n")[0].split()))
            raise StoreError(
                f"cannot reach the PostgreSQL at {redact_url(self.url)}: {reason} — is it "
                f"running, and is {DATABASE_URL_ENV} right?"
            ) from (None if self.leaks(exc) else exc)
        return self.db

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self.lock, self.errors():
            db = self.connection()
            with db.transaction():
                yield PostgresTransaction(db)

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        with self.lock, self.errors():  # autocommit: one round trip, no BEGIN/COMMIT
            return PostgresTransaction(self.connection()).execute(sql, args).rows

    @contextmanager
    def errors(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            message = self.mask(" ".join(str(exc).split()))
            raise StoreError(f"state database {self.where}: {message}") from (
                None if self.leaks(exc) else exc
            )

    def version(self) -> int:
        with self.transaction() as tx:
            # the catalog read as a table (to_regclass may answer from a stale cache just after
            # another receiver's migration committed)
            found = tx.execute(
                "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() "
                "AND tablename = 'deploy_pipeline_schema'"
            ).fetchone()
            if found is None:
                return 0
            row = tx.execute("SELECT version FROM deploy_pipeline_schema").fetchone()
            return int(row[0]) if row else 0

    def set_version(self, tx: Transaction, version: int) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS deploy_pipeline_schema (version INTEGER NOT NULL)")
        tx.execute("DELETE FROM deploy_pipeline_schema")
        tx.execute("INSERT INTO deploy_pipeline_schema (version) VALUES (?)", (version,))

    def close(self) -> None:
        with self.lock:
            if self.db is not None:
                self.db.close()

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def leaks(self, exc: BaseException) -> bool:
        """Whether the error's own text shows the password (then it is not kept as the cause)."""
        return any(secret in str(exc) for secret in self.secrets)


def redact_url(url: str) -> str:
    """The URL with its password, in the authority or as `?password=`, shown as ***."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if colon else netloc
    query = re.sub(r"(?i)(^|&)password=[^&]*", r"\1password=***", parts.query)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _secrets(url: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    found = [parts.password or ""]
    found += [v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() == "password"]
    found += [urllib.parse.unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (our SQL has no `?` in its literals)."""
    return sql.replace("%", "%%").replace("?", "%s")
