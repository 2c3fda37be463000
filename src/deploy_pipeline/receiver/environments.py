"""What the JSON API does to environments, through the same Workspace as the CLI: list them
(`GET /api/environments`), read one's releases (`GET …/{name}/releases`), clone one
(`POST …/{name}/clone`), and order an action on one or some of its services
(`POST …/{name}/{action}`), queued like a delivery and run by the workers."""

from __future__ import annotations

from collections.abc import Sequence

from deploy_pipeline.errors import Conflict, NotFound
from deploy_pipeline.model import Action
from deploy_pipeline.plan import check_services
from deploy_pipeline.receiver.service import Receiver
from deploy_pipeline.releases import history
from deploy_pipeline.workspace import Workspace

RELEASES = 20  # releases listed when no `limit` is given, as `history` lists them


def clone(receiver: Receiver, source: str, new: str) -> dict[str, object]:
    """`POST /api/environments/{source}/clone`: the new environment as the listing shows it."""
    with Workspace(receiver.config) as workspace:
        envs = workspace.environments()
        if source not in envs:
            raise NotFound(f"no environment named '{source}' (known: {', '.join(envs)})")
        if new in envs:
            raise Conflict(f"environment '{new}' already exists; pick another name")
        workspace.clone(source, new)
        return next(e for e in workspace.listing() if e["name"] == new)


def order(receiver: Receiver, name: str, action: Action, services: Sequence[str]) -> str:
    """`POST /api/environments/{name}/{action}`: queued like a delivery; its id."""
    config = receiver.sources.config_of(name)
    trusted = receiver.sources.trusted_for(config)
    with Workspace(config, write=False, state=receiver.state, trusted=trusted) as workspace:
        envs = workspace.environments()
        if name not in envs:
            raise NotFound(f"no environment named '{name}' (known: {', '.join(envs)})")
        check_services(workspace.pipeline, services)
        record = workspace.records.get(name)
    what = f" of {', '.join(services)}" if services else ""
    return receiver.submit(
        name,
        action,
        services=services,
        reason=f"{action}{what} asked through the API",
        pull_request=record.pull_request if record else None,
    )


def listing(receiver: Receiver) -> list[dict[str, object]]:
    """`GET /api/environments`: every environment, as the listing shows it."""
    with Workspace(receiver.config, write=False) as workspace:
        return workspace.listing()


def releases(receiver: Receiver, name: str, limit: int = RELEASES) -> dict[str, object]:
    """`GET /api/environments/{name}/releases`: `history --format json` of the environment
    (DESIGN.md §10), newest first."""
    with Workspace(receiver.config, write=False) as workspace:
        if name not in workspace.environments():
            raise NotFound(f"no environment named '{name}' (GET /api/environments lists them)")
    return history(receiver.store, name, limit)
