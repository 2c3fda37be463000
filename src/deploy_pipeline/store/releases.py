"""The releases in the state database (DESIGN.md §9), on SQLite and PostgreSQL alike: numbered
per environment, each the whole picture of what runs on a target; and the deploys that failed
beside them, for `history`. The Store has these as its methods."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace

from deploy_pipeline.model import Release
from deploy_pipeline.store.database import Row, Transaction

FailedRun = dict[str, object]


class ReleaseQueries:
    """The SQL of releases, for a store that can query and open a transaction."""

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[Transaction]:
        raise NotImplementedError

    def next_release(self, environment: str) -> int:
        """The number the environment's next release gets (1 for its first)."""
        rows = self.query("SELECT MAX(id) FROM releases WHERE environment = ?", (environment,))
        return int(str(rows[0][0])) + 1 if rows and rows[0][0] is not None else 1

    def add_release(self, release: Release) -> Release:
        """Record a release under its number, or the environment's next one if that is taken
        or lower (two targets, or a number read back from a target); the release as kept."""
        with self.transaction() as db:
            db.serialize(f"release:{release.environment}")
            row = db.execute(
                "SELECT MAX(id) FROM releases WHERE environment = ?", (release.environment,)
            ).fetchone()
            latest = int(str(row[0])) if row and row[0] is not None else 0
            number = max(release.id, latest + 1)
            db.execute(
                "INSERT INTO releases (environment, id, run_id, action, target, finished_at, "
                "git_commit, source, rolled_back_to, services) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    release.environment,
                    number,
                    release.run,
                    release.action,
                    release.target,
                    release.finished,
                    release.commit,
                    release.source,
                    release.rolled_back_to,
                    json.dumps({k: dict(v) for k, v in release.services.items()}),
                ),
            )
        return replace(release, id=number)

    def releases(
        self, environment: str, *, target: str | None = None, limit: int | None = None
    ) -> list[Release]:
        """The environment's releases (on one target, when given), newest first."""
        where, args = "environment = ?", [environment]
        if target is not None:
            where, args = where + " AND target = ?", [*args, target]
        limit_sql = "" if limit is None else f" LIMIT {int(limit)}"
        rows = self.query(
            "SELECT environment, id, run_id, action, target, finished_at, git_commit, source, "
            f"rolled_back_to, services FROM releases WHERE {where} ORDER BY id DESC{limit_sql}",
            args,
        )
        return [_release(r) for r in rows]

    def latest_release(self, environment: str, target: str | None = None) -> Release | None:
        found = self.releases(environment, target=target, limit=1)
        return found[0] if found else None

    def unreleased_runs(self, environment: str, limit: int | None = None) -> list[FailedRun]:
        """The environment's deploys that ended without succeeding (failed, cancelled,
        abandoned) and made no release of it, newest first: what `history` lists besides the
        releases (`deploy -e dev -e prod` that fails in prod did not fail dev)."""
        limit_sql = "" if limit is None else f" LIMIT {int(limit)}"
        rows = self.query(
            "SELECT id, action, status, finished_at, git_commit FROM runs "
            "WHERE environments LIKE ? AND action IN ('deploy', 'promote', 'rollback') "
            "AND status NOT IN ('running', 'succeeded') AND id NOT IN (SELECT run_id FROM "
            "releases WHERE environment = ? AND run_id IS NOT NULL) "
            f"ORDER BY id DESC{limit_sql}",
            (f'%"{environment}"%', environment),
        )
        return [
            {
                "run": int(str(r[0])),
                "action": str(r[1]),
                "status": str(r[2]),
                "finished": float(str(r[3])) if r[3] is not None else None,
                "commit": str(r[4]) if r[4] is not None else None,
            }
            for r in rows
        ]


def _release(row: tuple[object, ...]) -> Release:
    services = json.loads(str(row[9]))
    return Release(
        environment=str(row[0]),
        id=int(str(row[1])),
        run=int(str(row[2])) if row[2] is not None else None,
        action=str(row[3]),
        target=str(row[4]),
        finished=float(str(row[5])),
        commit=str(row[6]) if row[6] is not None else None,
        source=str(row[7]) if row[7] is not None else None,
        rolled_back_to=int(str(row[8])) if row[8] is not None else None,
        services=services if isinstance(services, dict) else {},
    )
