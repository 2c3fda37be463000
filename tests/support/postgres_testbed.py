"""The PostgreSQL test bed as pytest sees it: a server found from DEPLOY_PIPELINE_TEST_DATABASE_URL
(or the env file `scripts/postgres-testenv start` writes), and a fresh schema per test, so tests
never see each other's rows. Without a server a test skips when run by hand and fails under CI=true.

A plugin (`pytest_plugins = ["tests.support.postgres_testbed"]`): `stores` runs a test on SQLite
and on PostgreSQL; `database_url` is a fresh schema's URL for tests that need PostgreSQL only.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from deploy_pipeline.store.database import Migration, redact_url
from deploy_pipeline.store.state import MIGRATIONS, Store
from tests.support.docker_testbed import unavailable

URL_ENV = "DEPLOY_PIPELINE_TEST_DATABASE_URL"
START = 'run `scripts/postgres-testenv start` and `eval "$(scripts/postgres-testenv env)"`'


def find_database() -> str | None:
    """The test server's URL: the variable, else the env file of a running test bed."""
    url = os.environ.get(URL_ENV)
    folder = os.environ.get("DP_POSTGRES_DIR") or Path(tempfile.gettempdir()) / "dp-postgres"
    env_file = Path(folder) / "env"
    if not url and env_file.is_file():
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            if key == URL_ENV:
                url = value
    return url


def require_database() -> str:
    url = find_database()
    if not url:
        unavailable(f"no PostgreSQL test bed ({URL_ENV} is not set): {START}")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        unavailable(f"the PostgreSQL at {redact_url(url)} does not answer ({reason}): {START}")
    return url


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A new schema, and the URL whose connections use it; dropped (with its tables) after."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    options = urllib.parse.urlencode({"options": f"-csearch_path={schema}"})
    try:
        yield f"{url}{'&' if '?' in url else '?'}{options}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SET lock_timeout = '10s'")
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def postgres() -> str:
    """The test server's URL (skip by hand, fail under CI=true, when it is missing)."""
    return require_database()


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema of the test server, as a URL a store can open."""
    url = request.getfixturevalue("postgres")
    with fresh_schema(url) as schema_url:
        yield schema_url


class Stores:
    """Opens stores on one database (every one this test opens shares it) and closes them."""

    def __init__(self, kind: str, path: Path, url: str | None) -> None:
        self.kind, self.path, self.url = kind, path, url
        self.opened: list[Store] = []

    def open(
        self,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        clock: Callable[[], float] = time.time,
    ) -> Store:
        store = Store(self.path, url=self.url, migrations=migrations, clock=clock)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Each store test runs twice: on a SQLite file, and on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        opener = Stores("sqlite", tmp_path / "state.db", None)
        yield opener
        opener.close()
        return
    url = request.getfixturevalue("database_url")
    opener = Stores("postgresql", tmp_path / "state.db", url)
    yield opener
    opener.close()
