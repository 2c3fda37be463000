"""The receiver's durable queue of webhook deliveries, kept in the state database: a delivery is
written before it is acknowledged, a repeated one is recognised by its id, and each runs once.

Runs of one preview never overlap, and only the newest delivery for it matters: claiming takes
the newest queued one and marks the older ones superseded. A delivery left `running` by a
receiver that died is queued again on the next start (deploys are idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploy_pipeline.store import Store, dead_here, holder_id


@dataclass(frozen=True)
class Job:
    delivery: str
    event: str
    action: str  # deploy | delete
    environment: str
    pull_request: int | None
    sha: str | None
    payload: Mapping[str, Any]


class Queue:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(
        self,
        delivery: str,
        event: str,
        payload: Mapping[str, Any],
        *,
        action: str,
        environment: str | None,
        pull_request: int | None,
        sha: str | None,
        reason: str,
    ) -> bool:
        """Keep a delivery (queued, or `ignored` with its reason); False if it was seen before."""
        state = "ignored" if action == "ignore" else "queued"
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO deliveries (id, event, received_at, body, action, "
                "environment, pull_request, sha, reason, state) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    delivery,
                    event,
                    self.store.clock(),
                    json.dumps(payload),
                    action,
                    environment,
                    pull_request,
                    sha,
                    reason,
                    state,
                ),
            )
            return cursor.rowcount == 1

    def claim(self) -> Job | None:
        """The newest queued delivery of the oldest-waiting environment that has nothing running;
        older queued deliveries of that environment are marked superseded."""
        with self.store.transaction() as db:
            rows = db.execute(
                "SELECT environment FROM deliveries WHERE state = 'queued' "
                "AND environment NOT IN (SELECT environment FROM deliveries "
                "WHERE state = 'running') GROUP BY environment ORDER BY MIN(received_at) LIMIT 1"
            ).fetchall()
            if not rows:
                return None
            environment = str(rows[0][0])
            queued = db.execute(
                "SELECT id, event, action, pull_request, sha, body FROM deliveries "
                "WHERE state = 'queued' AND environment = ? ORDER BY received_at, rowid",
                (environment,),
            ).fetchall()
            newest = queued[-1]
            for older in queued[:-1]:
                db.execute(
                    "UPDATE deliveries SET state = 'superseded', result = ?, finished_at = ? "
                    "WHERE id = ?",
                    (f"superseded by delivery {newest[0]}", self.store.clock(), older[0]),
                )
            db.execute(
                "UPDATE deliveries SET state = 'running', worker = ? WHERE id = ?",
                (holder_id(), newest[0]),
            )
        return Job(
            delivery=str(newest[0]),
            event=str(newest[1]),
            action=str(newest[2]),
            environment=environment,
            pull_request=int(str(newest[3])) if newest[3] is not None else None,
            sha=str(newest[4]) if newest[4] is not None else None,
            payload=json.loads(str(newest[5])),
        )

    def attach_run(self, delivery: str, run_id: int | None) -> None:
        self.store.query("UPDATE deliveries SET run_id = ? WHERE id = ?", (run_id, delivery))

    def finish(self, delivery: str, state: str, result: str) -> None:
        self.store.query(
            "UPDATE deliveries SET state = ?, result = ?, finished_at = ? WHERE id = ?",
            (state, result, self.store.clock(), delivery),
        )

    def requeue_abandoned(self) -> int:
        """Deliveries a dead receiver of this machine left running go back to the queue."""
        rows = self.store.query("SELECT id, worker FROM deliveries WHERE state = 'running'")
        dead = [str(r[0]) for r in rows if r[1] is None or dead_here(str(r[1]))]
        for delivery in dead:
            self.store.query(
                "UPDATE deliveries SET state = 'queued', worker = NULL WHERE id = ?", (delivery,)
            )
        return len(dead)

    def depth(self) -> int:
        rows = self.store.query("SELECT COUNT(*) FROM deliveries WHERE state = 'queued'")
        return int(str(rows[0][0]))

    def delivery(self, delivery: str) -> dict[str, object] | None:
        rows = self.store.query(
            "SELECT id, event, action, environment, pull_request, sha, reason, state, run_id, "
            "result FROM deliveries WHERE id = ?",
            (delivery,),
        )
        if not rows:
            return None
        keys = ["id", "event", "action", "environment", "pull_request", "sha", "reason"]
        keys += ["state", "run_id", "result"]
        return dict(zip(keys, rows[0], strict=True))
