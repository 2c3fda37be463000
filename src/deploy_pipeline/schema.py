"""The shape of `.deploy-pipeline.yml` version 1 as pydantic models: types, ranges, known keys.

Only `config` uses these; what the keys mean together (stages, targets, skip names) is checked
there, so every message can name its key path and line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from deploy_pipeline import quantities

# `(?![\s\S])` ends a schema pattern in every regex dialect (`$` may match before a final line
# break, and `\Z` is Python's only).
END = r"(?![\s\S])"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """`250ms`, `2s`, `10m`, `1h`, `1m30s`, or a number of seconds → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            return float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION.findall(text)
        if text and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNITS[u] for n, u in parts)
    got = "nothing (null)" if value is None else repr(value)
    raise ValueError(f"expected a duration like 250ms, 2s, 10m, 1h or 3d, got {got}")


def _scalar_text(value: object) -> object:
    """YAML reads `10` and `true` as numbers and booleans; commands and env values want text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _text_list(value: object) -> object:
    return [_scalar_text(v) for v in value] if isinstance(value, list) else value


def _text_map(value: object) -> object:
    if isinstance(value, dict):
        return {k: _scalar_text(v) for k, v in value.items()}
    return value


def _test_command(value: object) -> object:
    """`test:` is a command: a list of arguments, or one string that `/bin/sh -c` runs."""
    if isinstance(value, list) and value:
        return _text_list(value)
    if isinstance(value, str) and value.strip():
        return value
    got = "nothing (null)" if value is None else repr(value)
    raise ValueError(
        "expected a command: a list like [pytest, -q], or a line that /bin/sh -c runs like "
        f"'pytest -q && ruff check', got {got if len(got) <= 60 else got[:57] + '...'}"
    )


TestCommand = Annotated[
    list[str] | str,
    BeforeValidator(_test_command),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                {"type": "string", "minLength": 1},
            ],
            "description": "a command run in the image just built, before it is pushed or "
            "deployed: a list of arguments, or a line run by /bin/sh -c; exit code 0 passes",
        }
    ),
]


def _context_only(value: object) -> object:
    return {"context": value} if isinstance(value, str) else value


DAY = 86400.0
MAX_DURATION = 365 * DAY  # any duration: longer is a typo, and would overflow the clocks' waits
MAX_TIMEOUT = 7 * DAY  # a step's timeout


def _at_most(limit: float, what: str) -> Callable[[object], float]:
    """A duration's parser that refuses more than `limit` seconds: every wait the runner and the
    receiver make with it then fits the platform's clocks (200000d overflowed a queue's wait)."""

    def check(value: object) -> float:
        seconds = parse_duration(value)
        if seconds > limit:
            got = repr(value)
            raise ValueError(
                f"expected {what} from 0 to {limit / DAY:g}d (like 30s, 10m, 2h or 1d), got "
                + (got if len(got) <= 60 else got[:57] + "...'")
            )
        return seconds

    return check


def _duration_schema(limit: float) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+" + END},
                {"type": "number", "minimum": 0, "maximum": limit},
            ],
            "description": f"250ms, 2s, 10m, 1h, 3d, or seconds; at most {limit / DAY:g}d",
        }
    )


Duration = Annotated[
    float, BeforeValidator(_at_most(MAX_DURATION, "a duration")), _duration_schema(MAX_DURATION)
]
Timeout = Annotated[
    float, BeforeValidator(_at_most(MAX_TIMEOUT, "a timeout")), _duration_schema(MAX_TIMEOUT)
]
# For editors, the rules `config` checks with its own messages.
# control characters, line and paragraph separators, and invisible format characters
_HIDDEN = r"\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
ONE_LINE = rf"^[^{_HIDDEN}]*[^\s{_HIDDEN}][^{_HIDDEN}]*{END}"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?" + END
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*" + END
# previews.name: an environment name around {number}
TEMPLATE = r"^([a-z0-9][-a-z0-9]*)?\{number\}([-a-z0-9]*[a-z0-9])?" + END
Line = Annotated[str, WithJsonSchema({"type": "string", "pattern": ONE_LINE})]
Variable = Annotated[str, WithJsonSchema({"type": "string", "pattern": VARIABLE_PATTERN})]
StageName = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 100,
            "pattern": ONE_LINE,
            "description": "single-line printable text",
        }
    ),
]


def _names(pattern: str) -> Any:
    """A mapping whose keys must match `pattern` (JSON Schema's propertyNames)."""
    return Field(default={}, json_schema_extra={"propertyNames": {"pattern": pattern}})


Scalar = str | int | float | bool
TextList = Annotated[list[str], BeforeValidator(_text_list, json_schema_input_type=list[Scalar])]
TextMap = Annotated[
    dict[str, str], BeforeValidator(_text_map, json_schema_input_type=dict[str, Scalar])
]
Phase = Literal["build", "test", "deploy", "restart", "stop", "delete"]
Order = Literal["parallel", "sequential"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuildModel(Strict):
    context: Line = Field(min_length=1)
    dockerfile: Line = "Dockerfile"
    args: TextMap = _names(ONE_LINE)
    target: Line | None = None


Quantity = Annotated[str | None, BeforeValidator(_scalar_text)]


def _bytes(value: object) -> object:
    """A memory or storage quantity, in Kubernetes' own syntax (`512K` is none: `512Ki` is)."""
    text = _scalar_text(value)
    if isinstance(text, str) and (problem := quantities.bytes_problem(text)) is not None:
        raise ValueError(problem)
    return text


Bytes = Annotated[
    str,
    BeforeValidator(_bytes, json_schema_input_type=str | int),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": quantities.BYTES_PATTERN + END},
                {"type": "integer", "minimum": 0},
            ],
            "description": "bytes as a Kubernetes quantity: 512Mi, 1Gi, 500M",
        }
    ),
]


class LimitsModel(Strict):
    """The most one replica may use (Kubernetes limits): {cpu: "1", memory: 512Mi}."""

    cpu: Quantity = Field(default=None, pattern=r"^\d+(\.\d+)?m?$")
    memory: Bytes | None = None


class ResourcesModel(Strict):
    """What one replica asks the scheduler for (Kubernetes requests): {cpu: 250m, memory: 256Mi},
    and with `limits:` the most it may use."""

    cpu: Quantity = Field(default=None, pattern=r"^\d+(\.\d+)?m?$")
    memory: Bytes | None = None
    limits: LimitsModel | None = None


def _size_only(value: object) -> object:
    return (
        {"size": value} if isinstance(value, str | int) and not isinstance(value, bool) else value
    )


class StorageModel(Strict):
    """A volume of the service's own: `storage: 20Gi`, or {size: 20Gi, path: /var/lib/app}."""

    size: Bytes
    path: Line | None = None  # a database's data folder, /data for other services


Storage = Annotated[
    StorageModel, BeforeValidator(_size_only, json_schema_input_type=str | int | StorageModel)
]


class AutoscaleModel(Strict):
    """Replicas between `min` and `max`, aiming at `cpu` percent of the CPU request (an HPA)."""

    min: int = Field(ge=1, le=1000)
    max: int = Field(ge=1, le=1000)
    cpu: int = Field(default=80, ge=1, le=100)


def _seconds(least: int) -> Callable[[object], float]:
    """A probe's duration: Kubernetes counts those in whole seconds, up to an hour."""

    def check(value: object) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = -1.0
        if seconds != int(seconds) or not least <= seconds <= 3600:
            got = "nothing (null)" if value is None else repr(value)
            raise ValueError(
                f"expected whole seconds from {least}s to 1h, like 10s or 2m (Kubernetes "
                f"probes count in seconds), got {got if len(got) <= 60 else got[:57] + '...'}"
            )
        return seconds

    return check


def _seconds_schema(least: int) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+(s|m|h))+" + END},
                {"type": "integer", "minimum": least, "maximum": 3600},
            ],
            "description": f"whole seconds from {least}s to 1h: 10s, 2m, 1m30s",
        }
    )


Delay = Annotated[float, BeforeValidator(_seconds(0)), _seconds_schema(0)]
Period = Annotated[float, BeforeValidator(_seconds(1)), _seconds_schema(1)]


class ProbesModel(Strict):
    """How the probes made from `health:` run: the startup probe gives the container
    `startup_timeout` to answer; then the liveness probe asks every `period` and restarts it
    after `failure_threshold` failures in a row."""

    initial_delay: Delay = 0.0
    period: Period = 10.0
    timeout: Period = 1.0
    failure_threshold: int = Field(default=3, ge=1, le=100)
    startup_timeout: Period = 300.0


class SecurityModel(Strict):
    """The container's security context: restricted unless `run_as_root: true` (the default
    for databases); `read_only: true` for an image that writes only to its volumes."""

    run_as_root: bool | None = None
    read_only: bool = False


class RegistryAuthModel(Strict):
    """A prebuilt image's own registry login (DESIGN.md §11): the names of the environment
    variables that hold the username and the password (or token), as `secrets:` names them."""

    username: Variable
    password: Variable


# The kinds a patch may name (config checks which of them a service's type makes).
PATCH_KINDS = [
    "Deployment",
    "StatefulSet",
    "Job",
    "CronJob",
    "Service",
    "Ingress",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
]
JSON_PATCH_OPERATION = {
    "type": "object",
    "properties": {
        "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
        "path": {"type": "string", "pattern": "^(/([^~/]|~[01])*)+" + END},
        "from": {"type": "string", "pattern": "^(/([^~/]|~[01])*)+" + END},
        "value": {},
    },
    "required": ["op", "path"],
    "additionalProperties": False,
}


class PatchModel(Strict):
    """One patch on one object made for the service (DESIGN.md §11), as kustomize's `patches:`:
    `patch:` a mapping is a strategic merge patch, a list is a JSON patch (RFC 6902)."""

    kind: Annotated[str, WithJsonSchema({"enum": PATCH_KINDS})]
    name: Line | None = None  # only when the service makes several objects of that kind
    patch: Annotated[
        Any,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "object", "description": "a strategic merge patch"},
                    {
                        "type": "array",
                        "items": JSON_PATCH_OPERATION,
                        "minItems": 1,
                        "description": "a JSON patch (RFC 6902)",
                    },
                ]
            }
        ),
    ]


class KubernetesModel(Strict):
    """What only the kubernetes target reads of a service: the escape hatch."""

    patches: list[PatchModel] = []


class ServiceModel(Strict):
    type: Literal["database", "job", "container", "application"]
    image: Line | None = None
    build: Annotated[
        BuildModel | None,
        BeforeValidator(_context_only, json_schema_input_type=str | BuildModel | None),
    ] = None
    command: TextList | None = None
    env: TextMap = _names(ONE_LINE)
    port: int | None = Field(default=None, ge=1, le=65535)
    replicas: int | None = Field(default=None, ge=0, le=1000)
    health: Line | None = None
    secrets: list[Variable] = []
    stage: StageName | None = None
    schedule: Line | None = None
    public: bool = False
    timeout: Timeout | None = None
    resources: ResourcesModel | None = None
    test: TestCommand | None = None
    registry_auth: RegistryAuthModel | None = None
    kubernetes: KubernetesModel | None = None
    timezone: Line | None = None  # a cron job's time zone: an IANA name like Europe/Paris
    storage: Storage | None = None
    autoscale: AutoscaleModel | None = None
    probes: ProbesModel | None = None
    security: SecurityModel | None = None


# a Kubernetes object's name (a DNS subdomain): a ClusterIssuer's, a Secret's
OBJECT_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*" + END
ObjectName = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": OBJECT_NAME, "maxLength": 253})
]


class TlsModel(Strict):
    """TLS on a kubernetes target's Ingresses: `{issuer: NAME}` (a cert-manager ClusterIssuer)
    or `{secret: NAME}` (an existing TLS Secret in each environment's namespace), one of them."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"oneOf": [{"required": ["issuer"]}, {"required": ["secret"]}]},
    )
    issuer: ObjectName | None = None
    secret: ObjectName | None = None


class TargetModel(Strict):
    kind: Literal["docker", "kubernetes", "simulated"]
    context: Line | None = None
    domain: Line | None = (
        None  # kubernetes: public services' host, e.g. {service}.{environment}.example.com
    )
    durations: dict[str, dict[Phase, Duration]] = {}
    fail: dict[str, Phase] = {}
    tls: TlsModel | None = None  # kubernetes: https on public services' Ingress


class StrategyModel(Strict):
    services: Order = "parallel"
    targets: Order = "sequential"
    environments: Order | None = None


class ServiceSettingsModel(Strict):
    """What an environment changes of one service (DESIGN.md §8)."""

    env: TextMap = _names(ONE_LINE)
    replicas: int | None = Field(default=None, ge=0, le=1000)
    image: Line | None = None  # prebuilt services only
    resources: ResourcesModel | None = None
    timeout: Timeout | None = None
    kubernetes: KubernetesModel | None = None  # its patches replace the service's
    autoscale: AutoscaleModel | None = None
    storage: Storage | None = None


class EnvironmentModel(Strict):
    target: str | None = None
    targets: list[str] | None = None
    skip: list[str] = []
    strategy: StrategyModel | None = None
    production: bool = False
    env: TextMap = _names(ONE_LINE)  # added to every service of this environment
    services: dict[str, ServiceSettingsModel] = {}  # per-service settings in this environment


class DefaultsModel(Strict):
    parallelism: int = Field(default=7, ge=1, le=256)
    timeout: Timeout = 600.0
    build_ahead: bool = True
    retries: int = Field(default=3, ge=0, le=20)


class PreviewsModel(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_: str = Field(alias="from")
    name: Annotated[str, WithJsonSchema({"type": "string", "pattern": TEMPLATE})] = "pr-{number}"
    label: Line | None = None  # previews only for pull requests carrying this label
    drafts: bool = False  # draft pull requests get previews too
    forks: bool = False  # pull requests from forks get previews (and the secrets) too
    ttl: Duration | None = None  # a preview is deleted this long after its last push
    # at most this many (20 unless said; null: no cap); the longest untouched is evicted
    max: int | None = Field(default=20, ge=1)
    env: TextMap = _names(ONE_LINE)  # added to the source environment's settings


class PipelineModel(Strict):
    """`.deploy-pipeline.yml`, version 1."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, title="deploy-pipeline configuration (version 1)"
    )
    version: Literal[1]
    registry: Line | None = None
    defaults: DefaultsModel = DefaultsModel()
    stages: list[StageName] | None = None
    strategy: StrategyModel | None = None
    targets: dict[str, TargetModel] = _names(NAME_PATTERN)
    services: dict[str, ServiceModel] = Field(
        json_schema_extra={"propertyNames": {"pattern": NAME_PATTERN}}
    )
    environments: dict[str, EnvironmentModel] = _names(NAME_PATTERN)
    previews: PreviewsModel | None = None


def json_schema() -> dict[str, Any]:
    schema = PipelineModel.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
