"""Releases in the state database, on SQLite and on PostgreSQL alike (DESIGN.md §9): numbered
per environment, read back newest first, per target, and the deploys that failed beside them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploy_pipeline.model import Release
from tests.support.clock import Clock

if TYPE_CHECKING:  # imported only as the plugin: a plain import comes before pytest can rewrite it
    from tests.support.postgres_testbed import Stores

pytest_plugins = ["tests.support.postgres_testbed"]

API = {"image": "r/api@sha256:" + "a" * 64, "target": "eu", "env": {"A": "1"}, "replicas": 2}


def release(env: str = "staging", number: int = 0, **fields: object) -> Release:
    values: dict[str, object] = {
        "run": 1,
        "action": "deploy",
        "target": "eu",
        "finished": 1000.0,
        "services": {"api": API},
        **fields,
    }
    return Release(environment=env, id=number, **values)  # type: ignore[arg-type]


def test_releases_are_numbered_per_environment_from_one(stores: Stores) -> None:
    """Each environment's releases count 1, 2, 3… on their own, whatever number was asked."""
    store = stores.open()
    assert store.next_release("staging") == 1
    assert [store.add_release(release()).id for _ in range(3)] == [1, 2, 3]
    assert store.add_release(release("production")).id == 1
    assert store.next_release("staging") == 4
    assert store.add_release(release(number=2)).id == 4  # taken: the next one
    assert store.add_release(release(number=9)).id == 9  # read back from a target: kept


def test_a_release_reads_back_as_it_was_recorded_newest_first(stores: Stores) -> None:
    """Every field of a release survives the database, services' settings included; the
    latest release is per target when one is named."""
    store = stores.open()
    first = store.add_release(release(commit="c" * 40, finished=1000.5))
    second = store.add_release(
        release(run=2, action="rollback", target="us", rolled_back_to=1, source=None)
    )
    assert [r.id for r in store.releases("staging")] == [2, 1]
    assert store.releases("staging", limit=1) == [second]
    assert store.releases("staging")[1] == first
    assert first.services["api"] == API and first.commit == "c" * 40
    assert store.latest_release("staging", "eu") == first
    assert store.latest_release("staging") == second
    assert store.latest_release("nowhere") is None


def test_deploys_that_failed_are_listed_with_their_commit(stores: Stores) -> None:
    """A deploy that failed (or was cancelled) is found with its commit; one that succeeded, one
    still running, another environment's, a stop, and one that failed elsewhere after making
    this environment's release are not."""
    clock = Clock(step=1.0)
    store = stores.open(clock=clock)
    failed = store.create_run(["staging"], "deploy", [], "f" * 40)
    store.finish_run(failed, "failed")
    ok = store.create_run(["staging"], "deploy", [])
    store.finish_run(ok, "succeeded")
    store.create_run(["staging"], "deploy", [])  # still running
    other = store.create_run(["staging-2"], "deploy", [])
    store.finish_run(other, "failed")
    stop = store.create_run(["staging"], "stop", [])
    store.finish_run(stop, "failed")
    cancelled = store.create_run(["staging"], "deploy", ["api"])
    store.finish_run(cancelled, "cancelled")
    both = store.create_run(["staging", "production"], "deploy", [])  # failed in production
    store.add_release(release(run=both))
    store.finish_run(both, "failed")
    found = store.unreleased_runs("staging")
    assert [(r["run"], r["status"], r["commit"]) for r in found] == [
        (cancelled, "cancelled", None),
        (failed, "failed", "f" * 40),
    ]
    assert isinstance(found[0]["finished"], float)
