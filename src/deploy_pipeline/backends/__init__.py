"""Backends: one module per target kind behind the Protocol in `base`. Each SDK is imported by its
own module only, and only when a target of that kind is used (the CLI starts without them).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from deploy_pipeline.backends.base import Backend, BackendState, MemoryState
from deploy_pipeline.errors import UsageError
from deploy_pipeline.model import Target

# kind → "module:class"; a module is imported only when a target of its kind is used.
KINDS: dict[str, str] = {
    "simulated": "deploy_pipeline.backends.simulated:SimulatedBackend",
    "docker": "deploy_pipeline.backends.docker:DockerBackend",
    "kubernetes": "deploy_pipeline.backends.kubernetes:KubernetesBackend",
}


def create_backend(
    target: Target,
    state: BackendState | None = None,
    *,
    dry_run: bool = False,
    root: Path | None = None,
    registry: str | None = None,
    force_conflicts: bool = False,
) -> Backend:
    """The backend for a target; with dry_run, a simulated one that touches nothing. `root` is
    the pipeline file's folder (build contexts are relative to it)."""
    kind = "simulated" if dry_run else target.kind
    if kind not in KINDS:
        raise UsageError(
            f"target '{target.name}' is {target.kind}, which this version cannot deploy to yet; "
            "rehearse it with --dry-run, or deploy to a simulated target"
        )
    backend: Backend = backend_class(kind)(
        target,
        state if state is not None else MemoryState(),
        rehearsal=dry_run,
        root=root or Path.cwd(),
        registry=registry,
        force_conflicts=force_conflicts,
    )
    return backend


def backend_class(kind: str) -> type[Any]:
    """The class serving a kind of target (its module imported now)."""
    module, _, name = KINDS[kind].partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


__all__ = ["KINDS", "Backend", "BackendState", "MemoryState", "backend_class", "create_backend"]
