"""Sizing keys of a service (DESIGN.md §11) as a user meets them through `load_config` and
`deploy-pipeline schema`: requests and limits, storage, autoscale, probes and security, each
bad value located at its line and key path, and each overridable per environment (§8)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from deploy_pipeline.cli import main
from deploy_pipeline.config import load_config, parse_config
from deploy_pipeline.errors import ConfigErrors
from deploy_pipeline.model import Autoscale, Probes, Security, Service, Storage
from deploy_pipeline.plan import environments, in_environment, plan_run, plan_text

WriteConfig = Callable[..., Path]
BYTES = (
    "expected a Kubernetes quantity of bytes like 512Mi, 1Gi or 500M (Ki, Mi, Gi, Ti: powers of "
    "1024; k, M, G, T: of 1000), got"
)


def problems(path: Path) -> list[str]:
    """The lines a user reads for a file that does not load, without the file's name."""
    with pytest.raises(ConfigErrors) as caught:
        load_config(path)
    return [str(error).removeprefix(f"{path}:") for error in caught.value.errors]


def services(text: str) -> str:
    return "version: 1\nservices:\n" + text


# --- resources: requests and limits -----------------------------------------------------------


def test_limits_sit_beside_the_requests(write_config: WriteConfig) -> None:
    """`resources.limits` reads cpu and memory limits; the requests stay as they were."""
    path = write_config(
        services("""\
          api:
            type: container
            image: x
            resources: {cpu: 250m, memory: 256Mi, limits: {cpu: "1", memory: 512Mi}}
        """)
    )
    api = load_config(path).services["api"]
    assert api.resources == (("cpu", "250m"), ("memory", "256Mi"))
    assert api.limits == (("cpu", "1"), ("memory", "512Mi"))


def test_a_limit_below_its_request_names_both(write_config: WriteConfig) -> None:
    """A limit under the request is refused at the limit's line, naming the request too, and
    comparing quantities by value (1Gi is above 1000Mi, 0.5 is 500m)."""
    path = write_config(
        services("""\
          api:
            type: container
            image: x
            resources:
              cpu: "0.5"
              memory: 1Gi
              limits: {cpu: 500m, memory: 1000Mi}
        """)
    )
    assert problems(path) == [
        "9: services.api.resources.limits.memory: the limit 1000Mi is below the request 1Gi "
        "(resources.memory); a limit is at least its request: raise resources.limits.memory "
        "or lower resources.memory"
    ]


@pytest.mark.parametrize(
    ("memory", "hint"),
    [
        ("512K", " (K is no Kubernetes suffix: write 512Ki for 1024 bytes or 512k)"),
        ("512m", " (512m is a fraction of a byte: did you mean 512Mi?)"),
        ("lots", ""),
        ("-1Gi", ""),
    ],
)
def test_memory_is_a_kubernetes_quantity_of_bytes(
    write_config: WriteConfig, memory: str, hint: str
) -> None:
    """A memory quantity the API server would refuse (`512K`, which was let through before) or
    take as a fraction of a byte (`512m`) is a config error that says what one looks like."""
    path = write_config(
        services(f"""\
          api: {{type: container, image: x, resources: {{limits: {{memory: "{memory}"}}}}}}
        """)
    )
    assert problems(path) == [f"3: services.api.resources.limits.memory: {BYTES} '{memory}'{hint}"]


@pytest.mark.parametrize("memory", ["512Mi", "1.5Gi", "500M", "1e9", "128974848", "1k"])
def test_memory_takes_every_form_the_api_server_takes(
    write_config: WriteConfig, memory: str
) -> None:
    """Binary and decimal suffixes, decimals, exponents and plain bytes all load."""
    path = write_config(
        services(f"""\
          api: {{type: container, image: x, resources: {{memory: "{memory}"}}}}
        """)
    )
    assert load_config(path).services["api"].resources == (("memory", memory),)


# --- storage ----------------------------------------------------------------------------------


def test_storage_is_a_size_or_a_size_and_a_path(write_config: WriteConfig) -> None:
    """`storage: 20Gi` as written, and {size, path} for where a volume is mounted."""
    path = write_config(
        services("""\
          db: {type: database, image: postgres:16, storage: 20Gi}
          cache: {type: container, image: c, storage: {size: 5Gi, path: /var/cache/app}}
        """)
    )
    pipeline = load_config(path)
    assert pipeline.services["db"].storage == Storage("20Gi")
    assert pipeline.services["cache"].storage == Storage("5Gi", "/var/cache/app")


def test_bad_storage_is_located(write_config: WriteConfig) -> None:
    """A size that is no quantity of bytes, a size of 0, a relative path, an unknown key, and a
    volume under several replicas (one replica mounts it) are each reported at their key."""
    path = write_config(
        services("""\
          a: {type: database, image: postgres:16, storage: 20GB}
          b: {type: database, image: postgres:16, storage: "0"}
          c: {type: container, image: c, storage: {size: 1Gi, path: data}}
          d: {type: container, image: c, storage: {size: 1Gi, mount: /data}}
          e: {type: container, image: c, replicas: 2, storage: 1Gi}
        """)
    )
    assert problems(path) == [
        f"3: services.a.storage.size: {BYTES} '20GB'",
        "4: services.b.storage.size: expected a size above 0 like 20Gi, got '0'",
        "5: services.c.storage.path: expected an absolute path in the container like /data, "
        "got 'data'",
        "6: services.d.storage.mount: unknown key 'mount' (known keys: size, path)",
        "7: services.e.storage: a volume of 'e''s own is mounted by one replica "
        "(ReadWriteOnce), and it runs with replicas: 2: keep replicas: 1 without autoscale, "
        "or keep its data in a database",
    ]


# --- autoscale --------------------------------------------------------------------------------


def test_autoscale_starts_at_its_minimum(write_config: WriteConfig) -> None:
    """min, max and the CPU target (80 when not given) are read; the service's replicas are the
    minimum; a CPU limit alone is enough to aim at (Kubernetes requests what is limited)."""
    path = write_config(
        services("""\
          api:
            type: container
            image: x
            resources: {cpu: 250m}
            autoscale: {min: 2, max: 10, cpu: 70}
          web:
            type: container
            image: x
            resources: {limits: {cpu: 500m}}
            autoscale: {min: 1, max: 3}
        """)
    )
    pipeline = load_config(path)
    api = pipeline.services["api"]
    assert (api.autoscale, api.replicas) == (Autoscale(2, 10, 70), 2)
    assert pipeline.services["web"].autoscale == Autoscale(1, 3, 80)  # requested as limited


def test_bad_autoscale_is_located(write_config: WriteConfig) -> None:
    """min above max, a CPU target outside 1–100, autoscaling a job or a database, with
    `replicas:` beside it, or with no CPU request to aim at: each at its line and key."""
    path = write_config(
        services("""\
          a: {type: container, image: x, resources: {cpu: 1}, autoscale: {min: 5, max: 2}}
          b: {type: container, image: x, resources: {cpu: 1}, autoscale: {min: 1, max: 2, cpu: 101}}
          c: {type: job, image: x, resources: {cpu: 1}, autoscale: {min: 1, max: 2}}
          d: {type: database, image: x, resources: {cpu: 1}, autoscale: {min: 1, max: 2}}
          e: {type: container, image: x, replicas: 3, resources: {cpu: 1},
             autoscale: {min: 1, max: 2}}
          f: {type: container, image: x, autoscale: {min: 1, max: 2, cpu: 60}}
        """)
    )
    assert problems(path) == [
        "3: services.a.autoscale.min: min 5 is above max 2; the replicas go from min up to max",
        "4: services.b.autoscale.cpu: expected a number ≤ 100, got 101",
        "5: services.c.autoscale: only containers and applications autoscale; a job runs to "
        "completion",
        "6: services.d.autoscale: only containers and applications autoscale; a database runs "
        "one replica",
        "7: services.e.replicas: give `replicas:` or `autoscale:`, not both: autoscale sets the "
        "replicas between its min and max",
        "9: services.f.autoscale: autoscale aims at 60% of the CPU request, and 'f' requests "
        "none: add `resources: {cpu: 250m}` (what one replica needs)",
    ]


# --- probes and security ----------------------------------------------------------------------


def test_probes_tune_the_checks_made_from_health(write_config: WriteConfig) -> None:
    """Durations in the project's format; what is not given keeps its default."""
    path = write_config(
        services("""\
          api:
            type: container
            image: x
            port: 80
            health: /healthz
            probes: {period: 5s, startup_timeout: 2m, failure_threshold: 4}
          web: {type: container, image: y, port: 80, health: /}
        """)
    )
    pipeline = load_config(path)
    assert pipeline.services["api"].probes == Probes(0.0, 5.0, 1.0, 4, 120.0)
    assert pipeline.services["web"].probes == Probes()


def test_bad_probes_are_located(write_config: WriteConfig) -> None:
    """Probes count in whole seconds; they need `health:`; a job is not probed."""
    path = write_config(
        services("""\
          a: {type: container, image: x, port: 80, health: /, probes: {period: 500ms}}
          b: {type: container, image: x, probes: {period: 5s}}
          c: {type: job, image: x, probes: {period: 5s}}
          d: {type: container, image: x, port: 80, health: /, probes: {failure_threshold: 0}}
        """)
    )
    assert problems(path) == [
        "3: services.a.probes.period: expected whole seconds from 1s to 1h, like 10s or 2m "
        "(Kubernetes probes count in seconds), got '500ms'",
        "4: services.b.probes: probes tune the checks made from `health:`: add `health: /path` "
        "(and `port:`)",
        "5: services.c.probes: a job runs to completion: it is not probed",
        "6: services.d.probes.failure_threshold: expected a number ≥ 1, got 0",
    ]


def test_security_reads_its_opt_out_and_opt_in(write_config: WriteConfig) -> None:
    """`run_as_root` (left to the type's default when not given) and `read_only`."""
    path = write_config(
        services("""\
          api: {type: container, image: x, security: {run_as_root: true}}
          web: {type: container, image: x, security: {read_only: true}}
          db: {type: database, image: postgres:16}
        """)
    )
    pipeline = load_config(path)
    assert pipeline.services["api"].security == Security(run_as_root=True)
    assert pipeline.services["web"].security == Security(read_only=True)
    assert pipeline.services["db"].security == Security()


# --- per environment (DESIGN.md §8) -----------------------------------------------------------

PER_ENVIRONMENT = """\
version: 1
targets: {sim: {kind: simulated}}
services:
  db: {type: database, image: postgres:16, storage: 20Gi}
  cache: {type: container, image: c, storage: {size: 1Gi, path: /cache}}
  api:
    type: container
    image: x
    resources: {cpu: 250m, memory: 256Mi, limits: {memory: 512Mi}}
    autoscale: {min: 2, max: 10, cpu: 70}
  web: {type: container, image: y, replicas: 2, resources: {cpu: 100m}}
environments:
  staging:
    target: sim
    services:
      db: {storage: 5Gi}
      cache: {storage: 2Gi}
      api: {replicas: 1, resources: {limits: {cpu: "1"}}}
      web: {autoscale: {min: 3, max: 6}}
  production:
    target: sim
    services:
      api: {autoscale: {min: 4, max: 20, cpu: 60}, resources: {memory: 512Mi}}
"""


def sized(environment: str, name: str) -> Service:
    pipeline = parse_config(PER_ENVIRONMENT)
    env = environments(pipeline, {})[environment]
    return in_environment(env, pipeline.services[name])


def test_an_environment_overrides_resources_autoscale_and_storage() -> None:
    """Limits merge key by key; the most specific of replicas and autoscale wins; storage takes
    the environment's size and keeps the service's path."""
    assert sized("staging", "db").storage == Storage("5Gi")
    assert sized("staging", "cache").storage == Storage("2Gi", "/cache")
    api = sized("staging", "api")
    assert (api.autoscale, api.replicas) == (None, 1)
    assert dict(api.limits) == {"memory": "512Mi", "cpu": "1"}
    web = sized("staging", "web")
    assert (web.autoscale, web.replicas) == (Autoscale(3, 6, 80), 3)
    prod = sized("production", "api")
    assert (prod.autoscale, prod.replicas) == (Autoscale(4, 20, 60), 4)
    assert dict(prod.resources) == {"cpu": "250m", "memory": "512Mi"}


def test_plan_shows_an_autoscaled_services_range() -> None:
    """`plan` says between which replicas a service autoscales there, and at what CPU."""
    pipeline = parse_config(PER_ENVIRONMENT)
    envs = environments(pipeline, {})
    text = plan_text(plan_run(pipeline, envs["production"], "deploy"))
    assert "replicas 4–20 (autoscaled at 60% CPU) · env -" in [
        line.strip() for line in text.splitlines()
    ]
    text = plan_text(plan_run(pipeline, envs["staging"], "deploy"))
    assert "replicas 1 · env -" in [line.strip() for line in text.splitlines()]


def test_an_environments_sizing_is_checked_as_the_service_runs_there(
    write_config: WriteConfig,
) -> None:
    """A request an environment raises above the service's limit, autoscaling a database or a
    service with no CPU request there, and min above max are located at the environment."""
    path = write_config("""\
        version: 1
        targets: {sim: {kind: simulated}}
        services:
          db: {type: database, image: postgres:16}
          api: {type: container, image: x, resources: {memory: 256Mi, limits: {memory: 512Mi}}}
        environments:
          production:
            target: sim
            services:
              db: {autoscale: {min: 1, max: 2}}
              api: {resources: {memory: 1Gi}, autoscale: {min: 3, max: 2}}
        """)
    assert problems(path) == [
        "10: environments.production.services.db.autoscale: only containers and applications "
        "autoscale",
        "11: environments.production.services.api.autoscale.min: min 3 is above max 2; the "
        "replicas go from min up to max",
        "11: environments.production.services.api.resources.limits.memory: the limit 512Mi is "
        "below the request 1Gi (resources.memory); a limit is at least its request: raise "
        "resources.limits.memory or lower resources.memory",
        "11: environments.production.services.api.autoscale: autoscale aims at 80% of the CPU "
        "request, and 'api' requests none: add `resources: {cpu: 250m}` (what one replica needs)",
    ]


def test_the_schema_describes_the_sizing_keys() -> None:
    """`deploy-pipeline schema` has the keys, per service and per environment."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["schema"]) == 0
    schema = json.loads(out.getvalue())
    defs = schema["$defs"]
    assert {"storage", "autoscale", "probes", "security"} <= set(defs["ServiceModel"]["properties"])
    assert {"autoscale", "storage", "resources"} <= set(defs["ServiceSettingsModel"]["properties"])
    assert set(defs["ResourcesModel"]["properties"]) == {"cpu", "memory", "limits"}
    assert set(defs["AutoscaleModel"]["required"]) == {"min", "max"}


def test_the_designs_keys_load_as_written(write_config: WriteConfig) -> None:
    """DESIGN.md §11's `resources`, `autoscale` and `storage`, verbatim."""
    path = write_config("""\
        version: 1
        services:
          api:
            type: container
            image: api:1
            resources: {cpu: 250m, memory: 256Mi, limits: {cpu: "1", memory: 512Mi}}
            autoscale: {min: 2, max: 10, cpu: 70}      # HPA on CPU utilisation, percent
          db: {type: database, image: postgres:16, storage: 20Gi}
        """)
    pipeline = load_config(path)
    api = pipeline.services["api"]
    assert (api.resources, api.limits) == (
        (("cpu", "250m"), ("memory", "256Mi")),
        (("cpu", "1"), ("memory", "512Mi")),
    )
    assert api.autoscale == Autoscale(2, 10, 70)
    assert pipeline.services["db"].storage == Storage("20Gi")
