"""The contract every target kind implements: build / test / deploy / restart / stop / delete /
status.

A backend gets a StepContext for each step, honours its deadline and cancel flag, raises
TransientError for what is worth retrying and PermanentError for what is not, and returns a
StepResult. It never sees GitHub, HTTP or the runner's internals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from deploy_pipeline.errors import Cancelled, NoLogs, PermanentError, StepTimeout
from deploy_pipeline.model import Phase, Service, Target


@dataclass
class StepContext:
    environment: str
    target: Target
    service: Service
    phase: Phase
    deadline: float  # time.monotonic() by which the step must be done
    cancel: threading.Event
    reason: Callable[[], str] = lambda: "cancelled"
    artifact: str | None = None  # the image a build produced, for the test and deploy after it
    secrets: Mapping[str, str] = field(default_factory=dict)
    log: Callable[[str], None] = lambda line: None
    started: float = 0.0  # time.monotonic() when the runner started the step (its `started` event)
    run: str = ""  # the run's label (its number in the store), e.g. to name a lifecycle Job
    record: Mapping[str, object] = field(default_factory=dict)  # source, skipped, pull_request
    # the release this deploy makes (id, run, action, commit…), for a target that keeps it
    release: Mapping[str, object] = field(default_factory=dict)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def service_secrets(self) -> dict[str, str]:
        """The values of the service's own `secrets:`, what its containers get: not those of
        its `registry_auth:` login, which only the image pull Secret holds (DESIGN.md §11)."""
        return {k: v for k, v in self.secrets.items() if k in self.service.secrets}

    def sleep(self, seconds: float) -> None:
        """Wait, but wake for a cancel or the deadline: the safe point every backend uses."""
        if seconds > self.remaining():
            if self.cancel.wait(max(self.remaining(), 0)):
                raise Cancelled(self.reason())
            raise StepTimeout("timed out")
        if self.cancel.wait(seconds):
            raise Cancelled(self.reason())


@dataclass(frozen=True)
class StepResult:
    status: Literal["succeeded", "reused", "skipped"] = "succeeded"
    message: str = ""
    url: str | None = None
    artifact: str | None = None
    image: str | None = None  # what a deploy runs, by digest (REPO@sha256:…, or sha256:… local)


@dataclass(frozen=True)
class LogStream:
    """One replica's output (`deploy-pipeline logs`): its name as the prefix shows it, and its
    lines, read from the target as they are iterated (opening the stream may raise NoLogs)."""

    source: str
    lines: Iterator[str]


def gone_image(ctx: StepContext, image: str) -> PermanentError | None:
    """What to say when a promotion's or a rollback's image can no longer be had (removed from
    the engine, gone from the registry); None for other runs, whose own message says enough."""
    note, short = ctx.release, image.rsplit("@", maxsplit=1)[-1][:19] + "…"
    where = "is no longer on this engine or in a registry it can reach, so it cannot run again"
    if note.get("action") == "rollback":
        return PermanentError(
            f"{ctx.service.name}: the image of release v{note.get('rolled_back_to')} ({short}) "
            f"{where}: deploy {ctx.environment} to build it anew, or roll back to a later release"
        )
    if note.get("action") == "promote":
        source = note.get("source")
        return PermanentError(
            f"{ctx.service.name}: the image of {source}'s latest release ({short}) {where}: "
            f"deploy {source} again to build it anew, then promote"
        )
    return None


def replica_names(service: str, count: int) -> list[str]:
    """`api` for one replica, `api-1`, `api-2`… for several (as the prefix of a log line)."""
    return [service] if count == 1 else [f"{service}-{i}" for i in range(1, count + 1)]


class Backend(Protocol):
    target: Target

    def build(self, ctx: StepContext) -> StepResult: ...
    def test(self, ctx: StepContext) -> StepResult: ...
    def deploy(self, ctx: StepContext) -> StepResult: ...
    def restart(self, ctx: StepContext) -> StepResult: ...
    def stop(self, ctx: StepContext) -> StepResult: ...
    def delete(self, ctx: StepContext) -> StepResult: ...
    def status(self, environment: str, service: Service) -> str: ...
    def close(self) -> None: ...

    def service_logs(
        self,
        environment: str,
        service: Service,
        *,
        tail: int | None,
        follow: bool,
        stop: threading.Event,
    ) -> list[LogStream]:
        """Each replica's own output on this target: its last `tail` lines (all when None), then,
        with `follow`, what it writes until `stop` is set. A target that runs nothing has none,
        and says so (NoLogs) rather than showing nothing."""
        raise NoLogs(
            f"target {self.target.name} ({self.target.kind}) runs nothing: "
            f"{service.name} has no output there"
        )


class BackendState(Protocol):
    """A little durable memory for a backend (what it deployed), kept by the store."""

    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str | None) -> None: ...


class MemoryState:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self.lock:
            return self.values.get(key)

    def put(self, key: str, value: str | None) -> None:
        with self.lock:
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value


@runtime_checkable
class ImageChecker(Protocol):
    """A backend that builds images can tell, before a run, which builds would be reused."""

    def image_status(self, service: Service) -> str: ...


@runtime_checkable
class RecordReader(Protocol):
    """A target that keeps each environment's record (source, skipped, preview PR) beside what it
    deployed, so the environments can be read back when the state database is gone."""

    def environment_records(self) -> dict[str, Mapping[str, object]]: ...


@runtime_checkable
class UrlReader(Protocol):
    """A target that can say which URL a service deployed earlier has, for `${url:SERVICE}` in a
    run that does not deploy SERVICE itself (DESIGN.md §8); None when it has none."""

    def service_url(self, environment: str, service: Service) -> str | None: ...


@runtime_checkable
class ReleaseReader(Protocol):
    """A target that keeps each environment's latest release beside what it deployed (container
    labels, a namespace annotation), so `env recover` can restore it into a new state database:
    environment → {"id", "run", "action", "commit", "source", "rolled_back_to", "finished",
    "target", "services": {name: {"image", "target", "env", "replicas"}}}."""

    def environment_releases(
        self, environments: Collection[str] | None = None
    ) -> dict[str, Mapping[str, object]]: ...


@runtime_checkable
class ReleaseKeeper(Protocol):
    """A target that writes a release, once recorded, on what it deployed (Kubernetes: an
    annotation of the environment's namespace), in the form `ReleaseReader` reads."""

    def keep_release(self, environment: str, release: Mapping[str, object]) -> None: ...


DATA = "/data"  # where a volume is mounted in a service that is no database, unless `path:`
DATA_PATHS = {
    "postgres": "/var/lib/postgresql/data",
    "mysql": "/var/lib/mysql",
    "mariadb": "/var/lib/mysql",
    "redis": "/data",
    "mongo": "/data/db",
}


def data_path(image: str) -> str:
    """Where a database image keeps its data, by the image's name (`/data` when unknown)."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return DATA_PATHS.get(name, "/data")
