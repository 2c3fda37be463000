"""The receiver's durable queue of deliveries, kept in the state database: a delivery is written
before it is acknowledged, a repeated one is recognised by its id, and each runs once — also when
several receivers share one PostgreSQL (claims skip rows and environments another one holds).

Runs of one environment never overlap, and only the newest delivery for it matters: claiming takes
the newest queued one and marks the older ones superseded, and a worker asks `newer_than` while it
runs. A running delivery holds a lease its receiver renews; one left by a receiver that died is
queued again (deploys are idempotent): at once when it was a process of this machine, else once
its lease has run out.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deploy_pipeline.model import ACTIONS
from deploy_pipeline.settings import seconds
from deploy_pipeline.store.holders import dead_here, holder_id
from deploy_pipeline.store.state import Store

JOB_ACTIONS = (*ACTIONS, "ignore")  # a job may also record a delivery that asked for nothing
LEASE = 30.0  # seconds a running delivery stays its receiver's without a renewal
LEASE_ENV = "DEPLOY_PIPELINE_LEASE"  # another number of seconds (tests shorten it)
CANDIDATES = 20  # environments looked at per claim (others may be held by other receivers)
TAKEN_KEPT = 256  # environments whose newest pull_request payload the writer remembers (SQLite)


def lease_of(environ: Mapping[str, str]) -> float:
    """DEPLOY_PIPELINE_LEASE, checked (UsageError naming it when it is not a sane number)."""
    return seconds(environ, LEASE_ENV, LEASE, 1, 86400)


@dataclass(frozen=True)
class Job:
    delivery: str
    event: str
    action: str  # deploy | restart | stop | delete
    environment: str
    pull_request: int | None
    sha: str | None
    payload: Mapping[str, Any]
    services: tuple[str, ...] = ()  # none: the whole environment

    @property
    def repository(self) -> str | None:
        """The owner/name of the repository a webhook delivery came from (None for the API's)."""
        return repository_of(self.payload)


def repository_of(payload: Mapping[str, Any]) -> str | None:
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, Mapping) else None
    return name if isinstance(name, str) and name else None


class Queue:
    def __init__(self, store: Store, *, lease: float | None = None) -> None:
        self.store = store
        self.lease = lease or lease_of(os.environ)
        # On SQLite this process is the one receiver adding deliveries: the payload of each
        # environment's newest pull_request delivery taken is remembered as it is added, not
        # read back before every 202 (each query gives up the GIL, and the writer thread then
        # waits behind the workers for it). PostgreSQL's receivers share the table: read it.
        self.taken: OrderedDict[str, Mapping[str, Any] | None] | None = (
            OrderedDict() if store.database.kind == "sqlite" else None
        )

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
        services: Sequence[str] = (),
        body: str | None = None,
    ) -> bool:
        """Keep a delivery (queued, or `ignored` with its reason); False if it was seen before.
        `body`: the payload as received, kept as it is rather than serialised again."""
        if action not in JOB_ACTIONS:
            raise ValueError(f"a job's action is one of {', '.join(JOB_ACTIONS)}, not {action!r}")
        state = "ignored" if action == "ignore" else "queued"
        with self.store.transaction() as db:
            result = db.execute(
                "INSERT INTO deliveries (id, event, received_at, body, action, environment, "
                "pull_request, sha, reason, state, services) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (id) DO NOTHING",
                (
                    delivery,
                    event,
                    self.store.clock(),
                    json.dumps(payload) if body is None else body,
                    action,
                    environment,
                    pull_request,
                    sha,
                    reason,
                    state,
                    json.dumps(list(services)),
                ),
            )
            added = result.rowcount == 1
        taken = added and state != "ignored" and event == "pull_request"
        if taken and self.taken is not None and environment:
            self._remember(environment, payload)
        return added

    def _remember(self, environment: str, payload: Mapping[str, Any] | None) -> None:
        assert self.taken is not None
        self.taken[environment] = payload
        self.taken.move_to_end(environment)
        while len(self.taken) > TAKEN_KEPT:  # the least recent are read back when asked
            self.taken.popitem(last=False)

    def claim(self) -> Job | None:
        """The newest queued delivery of the oldest-waiting environment that has nothing running;
        older queued deliveries of that environment are marked superseded. Deliveries whose lease
        ran out (their receiver died) are queued again first."""
        now = self.store.clock()
        with self.store.transaction() as db:
            db.execute(
                "UPDATE deliveries SET state = 'queued', worker = NULL, lease_until = NULL "
                "WHERE state = 'running' AND lease_until < ?",
                (now,),
            )
            waiting = db.execute(
                "SELECT environment FROM deliveries WHERE state = 'queued' "
                "AND environment IS NOT NULL AND environment NOT IN (SELECT environment "
                "FROM deliveries WHERE state = 'running' AND environment IS NOT NULL) "
                "GROUP BY environment ORDER BY MIN(received_at) LIMIT ?",
                (CANDIDATES,),
            ).fetchall()
            for (environment,) in waiting:
                # PostgreSQL: another receiver claiming this environment has not committed yet;
                # once it has, the check below (a new statement, so a new snapshot) sees it
                if not db.try_serialize(f"queue:{environment}"):
                    continue
                running = db.execute(
                    "SELECT id FROM deliveries WHERE environment = ? AND state = 'running'",
                    (environment,),
                ).fetchone()
                if running is not None:
                    continue
                queued = db.execute(
                    "SELECT id, event, action, pull_request, sha, body, services FROM deliveries "
                    "WHERE state = 'queued' AND environment = ? ORDER BY received_at, rowid"
                    + db.skip_locked,
                    (environment,),
                ).fetchall()
                if not queued:
                    continue
                newest = queued[-1]
                for older in queued[:-1]:
                    db.execute(
                        "UPDATE deliveries SET state = 'superseded', result = ?, finished_at = ? "
                        "WHERE id = ?",
                        (f"superseded by delivery {newest[0]}", now, older[0]),
                    )
                db.execute(
                    "UPDATE deliveries SET state = 'running', worker = ?, lease_until = ? "
                    "WHERE id = ?",
                    (holder_id(), now + self.lease, newest[0]),
                )
                return Job(
                    delivery=str(newest[0]),
                    event=str(newest[1]),
                    action=str(newest[2]),
                    environment=str(environment),
                    pull_request=int(newest[3]) if newest[3] is not None else None,
                    sha=str(newest[4]) if newest[4] is not None else None,
                    payload=json.loads(str(newest[5])),
                    services=tuple(json.loads(str(newest[6]))),
                )
        return None

    def renew(self, delivery: str) -> bool:
        """Extend a running delivery's lease; False when it is no longer this receiver's (its
        lease ran out and it was queued again, or it was finished)."""
        with self.store.transaction() as db:
            changed = db.execute(
                "UPDATE deliveries SET lease_until = ? WHERE id = ? AND state = 'running' "
                "AND worker = ?",
                (self.store.clock() + self.lease, delivery, holder_id()),
            )
            return changed.rowcount == 1

    def newer_than(self, job: Job) -> str | None:
        """The commit (or, with none, the delivery id) of a delivery for the job's environment
        queued after it, in any receiver: the job is superseded. None while it is the newest."""
        rows = self.store.query(
            "SELECT id, sha FROM deliveries WHERE environment = ? AND state = 'queued' "
            "AND (received_at, rowid) > (SELECT received_at, rowid FROM deliveries WHERE id = ?) "
            "ORDER BY received_at DESC, rowid DESC LIMIT 1",
            (job.environment, job.delivery),
        )
        return str(rows[0][1] or rows[0][0]) if rows else None

    def attach_run(self, delivery: str, run_id: int | None) -> None:
        self.store.query("UPDATE deliveries SET run_id = ? WHERE id = ?", (run_id, delivery))

    def finish(self, delivery: str, state: str, result: str) -> None:
        """Record how a delivery ended, unless another receiver has it running by now."""
        self.store.query(
            "UPDATE deliveries SET state = ?, result = ?, finished_at = ?, lease_until = NULL "
            "WHERE id = ? AND NOT (state = 'running' AND worker IS NOT NULL AND worker != ?)",
            (state, result, self.store.clock(), delivery, holder_id()),
        )

    def release(self, delivery: str) -> None:
        """Put a delivery this receiver runs back in the queue (it is stopping): the next
        receiver to start runs it again, as it would a lease that ran out."""
        self.store.query(
            "UPDATE deliveries SET state = 'queued', worker = NULL, lease_until = NULL, "
            "run_id = NULL WHERE id = ? AND state = 'running' AND worker = ?",
            (delivery, holder_id()),
        )

    def requeue_abandoned(self) -> int:
        """Running deliveries whose receiver is a dead process of this machine, or whose lease
        ran out (a receiver elsewhere stopped renewing it), go back to the queue."""
        now = self.store.clock()
        rows = self.store.query(
            "SELECT id, worker, lease_until FROM deliveries WHERE state = 'running'"
        )
        dead = [
            str(r[0])
            for r in rows
            if r[1] is None or dead_here(str(r[1])) or (r[2] is not None and r[2] < now)
        ]
        for delivery in dead:
            self.store.query(
                "UPDATE deliveries SET state = 'queued', worker = NULL, lease_until = NULL "
                "WHERE id = ? AND state = 'running'",
                (delivery,),
            )
        return len(dead)

    def prune(self, before: float) -> int:
        """Forget deliveries that ended (or were ignored) before `before`, seconds since the
        epoch; queued and running ones stay, and so do each environment's newest deploy and
        newest pull_request delivery (its last push and its repository, for housekeeping).
        How many went."""
        if self.taken is not None:
            self.taken.clear()  # read back from what is left
        with self.store.transaction() as db:
            gone = db.execute(
                "DELETE FROM deliveries WHERE state NOT IN ('queued', 'running') "
                "AND COALESCE(finished_at, received_at) < ? AND id NOT IN (SELECT kept FROM ("
                "SELECT (SELECT d.id FROM deliveries d WHERE d.environment = e.name "
                "AND d.action = 'deploy' ORDER BY d.received_at DESC LIMIT 1) AS kept "
                "FROM environments e UNION SELECT (SELECT d.id FROM deliveries d "
                "WHERE d.environment = e.name AND d.event = 'pull_request' "
                "AND d.state <> 'ignored' ORDER BY d.received_at DESC LIMIT 1) AS kept "
                "FROM environments e) AS newest WHERE kept IS NOT NULL)",
                (before,),
            )
            return max(gone.rowcount, 0)

    def depth(self) -> int:
        rows = self.store.query("SELECT COUNT(*) FROM deliveries WHERE state = 'queued'")
        return int(rows[0][0])

    def latest_pull_request(self, environment: str) -> tuple[str | None, Mapping[str, Any]]:
        """The commit and payload of the environment's newest pull_request delivery, one that
        ran (or runs) before one still queued; (None, {}) when it has none (not a preview)."""
        rows = self.store.query(
            "SELECT sha, body FROM deliveries WHERE id = (SELECT id FROM deliveries "
            "WHERE environment = ? AND event = 'pull_request' AND state <> 'ignored' "
            "ORDER BY CASE WHEN state IN ('running', 'done', 'failed') THEN 0 ELSE 1 END, "
            "received_at DESC LIMIT 1)",
            (environment,),
        )
        if not rows:
            return None, {}
        try:
            payload = json.loads(str(rows[0][1]))
        except ValueError:
            payload = {}
        sha = rows[0][0]
        return (str(sha) if sha is not None else None), (
            payload if isinstance(payload, dict) else {}
        )

    def last_taken(self, environment: str) -> Mapping[str, Any] | None:
        """The payload of the environment's newest pull_request delivery taken (queued, run
        or superseded: not ignored); None when it has none."""
        if self.taken is not None and environment in self.taken:
            self.taken.move_to_end(environment)
            return self.taken[environment]
        # The body (tens of KiB) is read for the newest row only: selected in the sorted query,
        # SQLite's sorter would carry every candidate's body, on the path of every webhook's 202.
        rows = self.store.query(
            "SELECT body FROM deliveries WHERE id = (SELECT id FROM deliveries "
            "WHERE environment = ? AND event = 'pull_request' AND state <> 'ignored' "
            "ORDER BY received_at DESC, rowid DESC LIMIT 1)",
            (environment,),
        )
        try:
            payload = json.loads(str(rows[0][0])) if rows else None
        except ValueError:
            payload = None
        found = payload if isinstance(payload, dict) else None
        if self.taken is not None:
            self._remember(environment, found)
        return found

    def delivery(self, delivery: str) -> dict[str, object] | None:
        rows = self.store.query(
            "SELECT id, event, action, environment, pull_request, sha, reason, state, run_id, "
            "result, services, worker FROM deliveries WHERE id = ?",
            (delivery,),
        )
        if not rows:
            return None
        keys = ["id", "event", "action", "environment", "pull_request", "sha", "reason"]
        keys += ["state", "run_id", "result", "services", "worker"]
        found = dict(zip(keys, rows[0], strict=True))
        found["services"] = json.loads(str(found["services"]))
        return found

    # --- what housekeeping reads -----------------------------------------------------------------

    def last_pushes(self) -> dict[str, float]:
        """Environment → when its newest deploying delivery arrived (seconds since the epoch)."""
        rows = self.store.query(
            "SELECT environment, MAX(received_at) FROM deliveries WHERE action = 'deploy' "
            "AND environment IS NOT NULL GROUP BY environment"
        )
        return {str(r[0]): float(str(r[1])) for r in rows}

    def leaving(self) -> set[str]:
        """The environments with a delete queued or running already."""
        rows = self.store.query(
            "SELECT DISTINCT environment FROM deliveries WHERE action = 'delete' "
            "AND state IN ('queued', 'running') AND environment IS NOT NULL"
        )
        return {str(r[0]) for r in rows}
