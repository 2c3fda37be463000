"""What the JSON API does to environments, through the same Workspace as the CLI: list them
(`GET /api/environments`), clone one (`POST …/{name}/clone`), and order an action on one or some
of its services (`POST …/{name}/{action}`), queued like a delivery and run by the workers."""

from __future__ import annotations

from collections.abc import Sequence

from deploy_pipeline.execution import Workspace
from deploy_pipeline.model import Action
from deploy_pipeline.plan import check_services
from deploy_pipeline.receiver.service import Conflict, NotFound, Receiver


def clone(receiver: Receiver, source: str, new: str) -> dict[str, object]:
    """`POST /api/environments/{source}/clone`: the new environment as the listing shows it."""
    workspace = Workspace(receiver.config)
    try:
        envs = workspace.environments()
        if source not in envs:
            raise NotFound(f"no environment named '{source}' (known: {', '.join(envs)})")
        if new in envs:
            raise Conflict(f"environment '{new}' already exists; pick another name")
        workspace.clone(source, new)
        return next(e for e in workspace.listing() if e["name"] == new)
    finally:
        workspace.close()


def order(receiver: Receiver, name: str, action: Action, services: Sequence[str]) -> str:
    """`POST /api/environments/{name}/{action}`: queued like a delivery; its id."""
    config = receiver.config_of(name)
    workspace = Workspace(
        config, write=False, state=receiver.state, trusted=receiver.trusted_for(config)
    )
    try:
        envs = workspace.environments()
        if name not in envs:
            raise NotFound(f"no environment named '{name}' (known: {', '.join(envs)})")
        check_services(workspace.pipeline, services)
        record = workspace.records.get(name)
    finally:
        workspace.close()
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
    workspace = Workspace(receiver.config, write=False)
    try:
        return workspace.listing()
    finally:
        workspace.close()
