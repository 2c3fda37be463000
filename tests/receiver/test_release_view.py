"""What the status page shows of an environment's releases (receiver/views.py `release_view`),
read from a real state database, SQLite and PostgreSQL: the current release on each target and
the last five."""

from __future__ import annotations

import pytest

from deploy_pipeline.model import Environment, Release
from deploy_pipeline.receiver.views import release_view
from deploy_pipeline.store.state import Store
from tests.support.postgres_testbed import Stores

pytest_plugins = ["tests.support.postgres_testbed"]

PROD = Environment(name="prod", targets=("eu", "us"))


@pytest.fixture
def store(stores: Stores) -> Store:
    return stores.open()


def add(store: Store, target: str, count: int = 1, environment: str = "prod") -> None:
    """`count` releases of the environment on `target`, numbered on."""
    for _ in range(count):
        number = store.next_release(environment)
        image = f"registry/api@sha256:{number:064x}"
        services = {"api": {"image": image, "target": target, "env": {}, "replicas": 1}}
        store.add_release(
            Release(
                environment=environment,
                id=number,
                run=number,
                action="deploy",
                target=target,
                finished=1_800_000_000.0 + number,
                commit=f"{number:040x}",
                services=services,
            )
        )


def ids(view: dict[str, object], key: str) -> list[object]:
    entries = view[key]
    assert isinstance(entries, list)
    return [entry["id"] for entry in entries]


def test_each_target_shows_its_own_current_release_even_one_older_than_the_last_five(
    store: Store,
) -> None:
    """With v1 on eu and v2–v7 on us, the current releases are v7 (us) then v1 (eu), found
    although v1 is not among the last five; a target the environment no longer has (v8 on
    asia) is in the list but is no current one."""
    add(store, "eu")
    add(store, "us", 6)
    add(store, "asia")
    view = release_view(store, PROD)
    assert ids(view, "current") == [7, 1]
    assert ids(view, "recent") == [8, 7, 6, 5, 4]
    current = view["current"]
    assert isinstance(current, list)
    assert current[1] == {
        "id": 1,
        "action": "deploy",
        "source": None,
        "rolled_back_to": None,
        "finished": "2027-01-15T08:00:01Z",
        "commit": f"{1:040x}",
        "target": "eu",
        "images": {"api": f"registry/api@sha256:{1:064x}"},
    }


def test_an_environment_with_no_release_has_none_and_sees_no_other_ones(store: Store) -> None:
    """An environment never released shows none, however many other environments have."""
    add(store, "eu", 2, environment="staging")
    assert release_view(store, PROD) == {"current": [], "recent": []}
