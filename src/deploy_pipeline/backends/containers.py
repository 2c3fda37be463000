"""The engine's containers as the project sees them: plain data, never SDK objects. What to
start (ContainerSpec), what runs (Container, read from the engine's inspect answer), and the
label that marks what deploy-pipeline made. No SDK here: `engine` is the one module that talks
to the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MANAGED = {"app.kubernetes.io/managed-by": "deploy-pipeline"}


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    status: str  # created, running, restarting, exited, dead, paused
    exit_code: int
    health: str | None  # starting, healthy, unhealthy, or None without a HEALTHCHECK
    labels: Mapping[str, str]
    ports: Mapping[int, int]  # container port → host port on 127.0.0.1
    started_at: str = ""
    restarts: int = 0
    image: str = ""  # the name it was started from (a tag, REPO@sha256:…, or an image id)
    image_id: str = ""  # the image it runs, by the engine's id (sha256:…)


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    labels: Mapping[str, str]
    network: str | None  # None: the engine's default bridge (a test's container)
    alias: str
    command: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    volumes: Mapping[str, str] = field(default_factory=dict)  # volume name → path inside
    restart: bool = True
    memory: int | None = None  # the most bytes it may use (`resources.limits.memory`)
    nano_cpus: int | None = None  # the most CPU it may use, in billionths (`limits.cpu`)


def label_filters(labels: Mapping[str, str]) -> list[str]:
    """The engine's `label` filters for what deploy-pipeline made with these labels."""
    return [f"{k}={v}" for k, v in {**MANAGED, **labels}.items()]


def container_of(attrs: Mapping[str, object]) -> Container:
    """A container as the engine's inspect answer describes it."""
    state = attrs.get("State") or {}
    assert isinstance(state, dict)
    config = attrs.get("Config") or {}
    assert isinstance(config, dict)
    settings = attrs.get("NetworkSettings") or {}
    assert isinstance(settings, dict)
    ports: dict[int, int] = {}
    for key, bindings in (settings.get("Ports") or {}).items():
        if bindings:
            ports[int(str(key).split("/")[0])] = int(bindings[0]["HostPort"])
    health = state.get("Health")
    return Container(
        id=str(attrs.get("Id")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        status=str(state.get("Status", "unknown")),
        exit_code=int(state.get("ExitCode", 0) or 0),
        health=str(health.get("Status")) if isinstance(health, dict) else None,
        labels=dict(config.get("Labels") or {}),
        ports=ports,
        started_at=str(state.get("StartedAt", "")),
        restarts=int(str(attrs.get("RestartCount", 0) or 0)),
        image=str(config.get("Image") or ""),
        image_id=str(attrs.get("Image") or ""),
    )
