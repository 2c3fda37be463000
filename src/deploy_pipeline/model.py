"""The concepts of deploy-pipeline as frozen dataclasses: pipeline, service, target, environment,
plan and event. No I/O and no SDK types: every other layer passes these around.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ServiceType = Literal["database", "job", "container", "application"]
Action = Literal["deploy", "restart", "stop", "delete", "promote", "rollback"]
Phase = Literal["build", "test", "deploy", "restart", "stop", "delete", "run"]
Status = Literal["started", "succeeded", "failed", "cancelled", "skipped", "reused"]
TargetKind = Literal["docker", "kubernetes", "simulated"]
Order = Literal["parallel", "sequential"]
KeyPath = tuple[str | int, ...]  # ("services", "api", "secrets", 0): a key of the file

SERVICE_TYPES: tuple[ServiceType, ...] = ("database", "job", "container", "application")
# the actions of `deploy|restart|stop|delete` and `plan --action`; promote and rollback (§10)
# move releases' images and are asked for by their own commands
ACTIONS: tuple[Action, ...] = ("deploy", "restart", "stop", "delete")
RELEASE_MOVES: tuple[Action, ...] = ("promote", "rollback")
STEP_PHASES: tuple[Phase, ...] = ("build", "test", "deploy", "restart", "stop", "delete")
# The steps that make a service's image before its own step: its build, then its test (§9).
IMAGE_PHASES: frozenset[Phase] = frozenset({"build", "test"})
TARGET_KINDS: tuple[TargetKind, ...] = ("docker", "kubernetes", "simulated")

DEFAULT_STAGES: tuple[str, ...] = (
    "0.DEFAULT DATABASE",
    "1.DEFAULT JOB",
    "2.DEFAULT CONTAINER",
    "3.DEFAULT APPLICATION",
)
DEFAULT_STAGE_OF: Mapping[ServiceType, str] = dict(zip(SERVICE_TYPES, DEFAULT_STAGES, strict=True))
LONG_RUNNING: frozenset[ServiceType] = frozenset({"container", "application"})
BUILT: frozenset[ServiceType] = frozenset({"job", "application"})
# Stop and delete take the environment down in the reverse order it came up.
REVERSED_ACTIONS: frozenset[Action] = frozenset({"stop", "delete"})


def step_phase(action: Action) -> Phase:
    """The phase of an action's steps: a promotion's or a rollback's are `deploy` steps (§9)."""
    match action:
        case "promote" | "rollback":
            return "deploy"
        case _:
            return action


@dataclass(frozen=True)
class BuildSpec:
    context: str
    dockerfile: str = "Dockerfile"
    args: tuple[tuple[str, str], ...] = ()
    target: str | None = None


@dataclass(frozen=True)
class RegistryAuth:
    """The credentials a prebuilt image's own private registry takes (DESIGN.md §11): the names
    of the environment variables holding them, read as `secrets:` are, never values."""

    username: str
    password: str


@dataclass(frozen=True)
class Patch:
    """One of a service's `kubernetes.patches` (DESIGN.md §11), on one object made for it: a
    strategic merge patch (a mapping) or a JSON patch (RFC 6902: a list of operations). Kept as
    JSON text, so the service stays immutable and hashable."""

    kind: str  # the object's kind: Deployment, Service, Ingress, StatefulSet, Job, CronJob…
    name: str | None  # only when the service makes several objects of that kind
    document: str  # the patch as JSON: an object (strategic merge) or an array (JSON patch)
    origin: str  # its key path in the file, for messages: services.api.kubernetes.patches[0]

    @property
    def value(self) -> object:
        return json.loads(self.document)

    @property
    def is_json_patch(self) -> bool:
        return self.document.startswith("[")


@dataclass(frozen=True)
class Storage:
    """A volume of its own for a service: `size` a Kubernetes quantity (20Gi), mounted at `path`
    (None: a database image's data folder, /data for any other service)."""

    size: str
    path: str | None = None


@dataclass(frozen=True)
class Autoscale:
    """Replicas between `min` and `max`, aiming at `cpu` percent of the CPU request (an HPA)."""

    min: int
    max: int
    cpu: int


@dataclass(frozen=True)
class Probes:
    """How the checks made from `health:` run (seconds): the startup probe allows
    `startup_timeout` to start, then the liveness probe restarts the container after
    `failure_threshold` failures in a row, one every `period`."""

    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3
    startup_timeout: float = 300.0


@dataclass(frozen=True)
class Security:
    """The container's security context: restricted (non-root, no privilege escalation, no
    capabilities) unless `run_as_root` (None: the type's default, root for databases);
    `read_only` adds a read-only root filesystem."""

    run_as_root: bool | None = None
    read_only: bool = False


@dataclass(frozen=True)
class Service:
    name: str
    type: ServiceType
    stage: str
    image: str | None = None
    build: BuildSpec | None = None
    command: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    port: int | None = None
    replicas: int = 1
    health: str | None = None
    secrets: tuple[str, ...] = ()
    schedule: str | None = None
    public: bool = False
    timeout: float | None = None
    resources: tuple[tuple[str, str], ...] = ()  # (cpu|memory, quantity): Kubernetes requests
    test: tuple[str, ...] | None = None  # run in the built image before it is pushed (§9)
    registry_auth: RegistryAuth | None = None  # a prebuilt image's registry login (§11)
    patches: tuple[Patch, ...] = ()  # kubernetes: applied to its objects before they are applied
    timezone: str | None = None  # a cron job's schedule's time zone (IANA name; CronJob timeZone)
    limits: tuple[tuple[str, str], ...] = ()  # (cpu|memory, quantity): Kubernetes limits
    storage: Storage | None = None
    autoscale: Autoscale | None = None  # replicas then start at autoscale.min
    probes: Probes = Probes()
    security: Security = Security()

    @property
    def needs_build(self) -> bool:
        return self.build is not None

    @property
    def secret_names(self) -> tuple[str, ...]:
        """Every environment variable a deploy reads for this service: its `secrets:`, then its
        registry login's username and password (for the image pull Secret, not its env)."""
        auth = (
            (self.registry_auth.username, self.registry_auth.password) if self.registry_auth else ()
        )
        return tuple(dict.fromkeys((*self.secrets, *auth)))


@dataclass(frozen=True)
class Tls:
    """TLS on a kubernetes target's Ingresses (DESIGN.md §11): a cert-manager ClusterIssuer
    that issues each public service's certificate, or an existing TLS Secret; one of the two."""

    issuer: str | None = None
    secret: str | None = None


@dataclass(frozen=True)
class Target:
    name: str
    kind: TargetKind
    context: str | None = None
    domain: str | None = None  # kubernetes: the host pattern of public services' Ingress
    # simulated only: seconds per service and phase, and the phase each named service fails in
    durations: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    fail: Mapping[str, str] = field(default_factory=dict)
    tls: Tls | None = None  # kubernetes: public services' Ingress serves https


@dataclass(frozen=True)
class Strategy:
    services: Order = "parallel"
    targets: Order = "sequential"


@dataclass(frozen=True)
class ServiceSettings:
    """What an environment changes of one service (DESIGN.md §8); None keeps the service's."""

    env: tuple[tuple[str, str], ...] = ()
    replicas: int | None = None
    image: str | None = None
    resources: tuple[tuple[str, str], ...] | None = None
    timeout: float | None = None
    patches: tuple[Patch, ...] | None = None  # replaces the service's kubernetes.patches
    limits: tuple[tuple[str, str], ...] | None = None
    autoscale: Autoscale | None = None
    storage: Storage | None = None


@dataclass(frozen=True)
class Environment:
    name: str
    targets: tuple[str, ...]
    skipped: frozenset[str] = frozenset()
    strategy: Strategy = Strategy()
    source: str | None = None
    pull_request: int | None = None
    production: bool = False
    # DESIGN.md §8: added to every service's env, then each service's own settings here
    env: tuple[tuple[str, str], ...] = ()
    settings: tuple[tuple[str, ServiceSettings], ...] = ()


@dataclass(frozen=True)
class Defaults:
    parallelism: int = 7
    timeout: float = 600.0
    build_ahead: bool = True
    retries: int = 3


@dataclass(frozen=True)
class Previews:
    source: str
    name: str = "pr-{number}"
    label: str | None = None
    drafts: bool = False
    forks: bool = False
    ttl: float | None = None  # seconds after the last push
    max: int | None = 20  # previews at most (null: no cap); the longest untouched is evicted
    env: tuple[tuple[str, str], ...] = ()  # added to the source environment's env


@dataclass(frozen=True)
class Pipeline:
    path: str
    stages: tuple[str, ...]
    services: Mapping[str, Service]  # in file order
    targets: Mapping[str, Target]
    environments: Mapping[str, Environment]
    defaults: Defaults = Defaults()
    registry: str | None = None
    previews: Previews | None = None
    environment_order: Order = "sequential"
    # the line of every key and item of the file, for messages about it after it is read
    lines: Mapping[KeyPath, int] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class EnvironmentRecord:
    """What the store remembers of an environment beyond the file: clones and skip changes."""

    name: str
    origin: Literal["file", "clone", "preview"]
    source: str | None = None
    skipped: frozenset[str] = frozenset()  # the whole set, for clones and previews
    skip_added: frozenset[str] = frozenset()  # changes to the file's set, for file environments
    skip_removed: frozenset[str] = frozenset()
    pull_request: int | None = None
    status: str = "not deployed"
    last_run: int | None = None


@dataclass(frozen=True)
class PlannedService:
    service: Service
    build: bool


@dataclass(frozen=True)
class StagePlan:
    name: str
    index: int  # position in the pipeline's stage list
    services: tuple[PlannedService, ...]


@dataclass(frozen=True)
class TargetPlan:
    target: Target
    stages: tuple[StagePlan, ...]


@dataclass(frozen=True)
class Plan:
    environment: Environment
    action: Action
    targets: tuple[TargetPlan, ...]
    skipped: tuple[Service, ...]  # left out of this run because the environment skips them
    parallelism: int
    build_ahead: bool
    timeout: float
    retries: int = 3
    commit: str | None = None  # the git commit deployed, for ${commit} (DESIGN.md §8)
    # the environment's services as they run there, for ${url:SERVICE} of one this run leaves out
    services: tuple[Service, ...] = ()
    # why a skipped service is left out, when not because the environment skips it (a service
    # a promotion's release does not have keeps what it runs)
    notes: tuple[tuple[str, str], ...] = ()
    source: str | None = None  # promote: the environment whose images this run moves
    rolled_back_to: tuple[tuple[str, int], ...] = ()  # rollback: per target, the release restored

    def skip_reason(self, service: str) -> str:
        return dict(self.notes).get(service, f"skipped in {self.environment.name}")


@dataclass(frozen=True)
class RunPlan:
    plans: tuple[Plan, ...]
    environment_order: Order = "sequential"


@dataclass(frozen=True)
class Event:
    ts: float  # seconds since the run started
    environment: str | None
    target: str | None
    stage: str | None
    service: str | None
    phase: Phase
    status: Status
    message: str = ""
    url: str | None = None
    duration: float | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "ts": round(self.ts, 3),
            "environment": self.environment,
            "target": self.target,
            "stage": self.stage,
            "service": self.service,
            "phase": self.phase,
            "status": self.status,
            "message": self.message,
        }
        if self.url:
            data["url"] = self.url
        if self.duration is not None:
            data["duration"] = round(self.duration, 3)
        return data


@dataclass(frozen=True)
class Release:
    """What runs in an environment on a target after a deploy, promote or rollback that
    succeeded (DESIGN.md §9): numbered per environment, every service's image by digest and
    settings (`services`: name → {"image", "target", "env", "replicas"}), carried-over ones too."""

    environment: str
    id: int
    run: int | None
    action: str
    target: str
    finished: float  # seconds since the epoch
    commit: str | None = None
    source: str | None = None  # the environment a promotion took the images from
    rolled_back_to: int | None = None  # the release a rollback restored
    services: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
