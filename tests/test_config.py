"""`.deploy-pipeline.yml` → model: DESIGN.md §2, §3 and §5 as a user meets them, through
`load_config` and `deploy-pipeline validate|schema`, every failure checked by its exact message.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from deploy_pipeline.cli import main
from deploy_pipeline.config import load_config, quote
from deploy_pipeline.errors import ConfigErrors
from deploy_pipeline.model import (
    BuildSpec,
    Defaults,
    Environment,
    Pipeline,
    Previews,
    Service,
    Strategy,
    Target,
)
from deploy_pipeline.trust import merge_pull_request

try:
    import jsonschema
except ImportError:  # optional: without it, the schema's structure is checked instead
    jsonschema = None

WriteConfig = Callable[..., Path]

SHOP = Path(__file__).resolve().parents[1] / "examples" / "shop" / ".deploy-pipeline.yml"
OFFLINE_SHOP = SHOP.parent / "offline" / ".deploy-pipeline.yml"

# DESIGN.md §3, verbatim.
DESIGN_EXAMPLE = """\
version: 1
registry: registry.example.com/acme        # where built images go; optional for docker targets
defaults: {parallelism: 7, timeout: 10m, build_ahead: true}
stages: [databases, migrations, backend, frontend]   # optional
targets:
  laptop:  {kind: docker}                               # the local engine (DOCKER_HOST honoured)
  eu:      {kind: kubernetes, context: eu-1}            # a kubeconfig context
  rehearse: {kind: simulated, durations: {api: {build: 2s, deploy: 1s}}, fail: {web: deploy}}
services:
  db:      {type: database, image: postgres:16, port: 5432, stage: databases}
  migrate: {type: job, build: ./api, command: [python, -m, api.migrate], stage: migrations}
  report:  {type: job, build: ./api, schedule: "0 3 * * *"}
  api:     {type: application, build: {context: ./api, dockerfile: Dockerfile}, port: 8000,
            health: /healthz, replicas: 2, env: {LOG_LEVEL: info}, secrets: [DATABASE_URL]}
  web:     {type: container, image: nginx:1.27, port: 80, public: true}
environments:
  staging:    {target: eu, skip: [report]}
  production: {targets: [eu], strategy: {services: parallel, targets: sequential}}
previews: {from: staging, name: "pr-{number}"}
"""

DEFAULT_STAGES = (
    "0.DEFAULT DATABASE",
    "1.DEFAULT JOB",
    "2.DEFAULT CONTAINER",
    "3.DEFAULT APPLICATION",
)
DURATION_HINT = "expected a duration like 250ms, 2s, 10m, 1h or 3d, got"
SUMMARY = re.compile(r"^\d+ problems? found; nothing was run$")


def problems(path: Path) -> list[str]:
    """The lines a user reads for a file that does not load (fails if it loads)."""
    with pytest.raises(ConfigErrors) as caught:
        load_config(path)
    return [str(error) for error in caught.value.errors]


def validate(path: Path | str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `deploy-pipeline validate -f PATH`; return the exit code, stdout and stderr."""
    code = main(["validate", "-f", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def one_service(write_config: WriteConfig, service: str, *, extra: str = "") -> Path:
    """A file whose only service `api` is the given flow mapping (on line 3)."""
    return write_config(f"version: 1\nservices:\n  api: {service}\n{extra}")


# --- everything in DESIGN §3 parses into the model --------------------------------------------


def test_design_example_parses_into_the_model(write_config: WriteConfig) -> None:
    """The DESIGN §3 example, verbatim, becomes exactly the pipeline it describes."""
    path = write_config(DESIGN_EXAMPLE)
    built = BuildSpec(context="./api", dockerfile="Dockerfile")
    pipeline = load_config(path)
    assert pipeline == Pipeline(
        path=str(path),
        stages=("databases", "migrations", "backend", "frontend"),
        services={
            "db": Service(
                name="db", type="database", stage="databases", image="postgres:16", port=5432
            ),
            "migrate": Service(
                name="migrate",
                type="job",
                stage="migrations",
                build=built,
                command=("python", "-m", "api.migrate"),
            ),
            "report": Service(
                name="report", type="job", stage="frontend", build=built, schedule="0 3 * * *"
            ),
            "api": Service(
                name="api",
                type="application",
                stage="frontend",
                build=built,
                port=8000,
                health="/healthz",
                replicas=2,
                env=(("LOG_LEVEL", "info"),),
                secrets=("DATABASE_URL",),
            ),
            "web": Service(
                name="web",
                type="container",
                stage="frontend",
                image="nginx:1.27",
                port=80,
                public=True,
            ),
        },
        targets={
            "laptop": Target(name="laptop", kind="docker"),
            "eu": Target(name="eu", kind="kubernetes", context="eu-1"),
            "rehearse": Target(
                name="rehearse",
                kind="simulated",
                durations={"api": {"build": 2.0, "deploy": 1.0}},
                fail={"web": "deploy"},
            ),
        },
        environments={
            "staging": Environment(name="staging", targets=("eu",), skipped=frozenset({"report"})),
            "production": Environment(
                name="production",
                targets=("eu",),
                strategy=Strategy(services="parallel", targets="sequential"),
            ),
        },
        defaults=Defaults(parallelism=7, timeout=600.0, build_ahead=True),
        registry="registry.example.com/acme",
        previews=Previews(source="staging", name="pr-{number}"),
    )


def test_services_targets_and_environments_keep_file_order(write_config: WriteConfig) -> None:
    """Services, targets and environments come out in the order the file lists them."""
    pipeline = load_config(write_config(DESIGN_EXAMPLE))
    assert list(pipeline.services) == ["db", "migrate", "report", "api", "web"]
    assert list(pipeline.targets) == ["laptop", "eu", "rehearse"]
    assert list(pipeline.environments) == ["staging", "production"]


def test_shop_example_loads() -> None:
    """The shipped shop example is a valid pipeline with its six services in four stages."""
    pipeline = load_config(SHOP)
    assert pipeline.stages == ("databases", "migrations", "backend", "frontend")
    assert {name: s.stage for name, s in pipeline.services.items()} == {
        "db": "databases",
        "migrate": "migrations",
        "report": "backend",
        "api": "backend",
        "worker": "backend",
        "web": "frontend",
    }
    assert pipeline.services["worker"].build == BuildSpec(context="./worker")
    assert pipeline.defaults.timeout == 300.0
    assert pipeline.targets["rehearse"].durations["db"] == {"deploy": 0.4}
    assert pipeline.environments["production"].production is True
    assert pipeline.environments["rehearsal"].skipped == frozenset({"report"})
    assert pipeline.previews == Previews(
        source="staging",
        name="pr-{number}",
        env=(("SHOP_BANNER", "preview of pull request ${pull_request}"),),
    )


def test_shop_example_tests_its_api_and_runs_production_with_its_own_settings() -> None:
    """The shop tests its API in the image it built, and staging and production set their own
    log level, production its own replicas and cache, and web the URL of the API (issue 13)."""
    pipeline = load_config(SHOP)
    assert pipeline.services["api"].test == ("python", "-m", "unittest", "-v", "shop.test_api")
    assert pipeline.targets["rehearse"].durations["api"]["test"] == 0.4
    staging, production = pipeline.environments["staging"], pipeline.environments["production"]
    assert staging.env == (("LOG_LEVEL", "debug"),)
    assert production.env == (("LOG_LEVEL", "warning"),)
    assert dict(staging.settings)["web"].env == (("API_URL", "${url:api}"),)
    api = dict(production.settings)["api"]
    assert (api.replicas, api.env) == (3, (("SHOP_CACHE_SECONDS", "300"),))


def test_the_offline_shop_has_the_shops_services_and_settings() -> None:
    """The offline shop (what `scripts/demo` deploys where nothing can be pulled) has the same
    services, stages, environments and settings as the shop, its rehearsal aside, and a test on
    its API too."""
    shop, offline = load_config(SHOP), load_config(OFFLINE_SHOP)
    assert offline.stages == shop.stages
    shape = {n: (s.type, s.stage, s.replicas) for n, s in shop.services.items()}
    assert {n: (s.type, s.stage, s.replicas) for n, s in offline.services.items()} == shape
    for name in ("migrate", "report", "api", "worker", "web"):  # (db stands in for postgres)
        assert offline.services[name].env == shop.services[name].env
    assert offline.services["api"].test is not None
    assert set(offline.environments) == set(shop.environments) - {"rehearsal"}
    for name, env in offline.environments.items():
        assert (env.skipped, env.env, env.settings) == (
            shop.environments[name].skipped,
            shop.environments[name].env,
            shop.environments[name].settings,
        )
    assert offline.previews == shop.previews


def test_build_mapping_keeps_dockerfile_args_and_target(write_config: WriteConfig) -> None:
    """`build:` as a mapping keeps its Dockerfile, build args (as text) and build target."""
    path = one_service(
        write_config,
        "{type: application, build: {context: ./api, dockerfile: api.Dockerfile, "
        "args: {PY: 3.12, DEBUG: true}, target: runtime}}",
    )
    assert load_config(path).services["api"].build == BuildSpec(
        context="./api",
        dockerfile="api.Dockerfile",
        args=(("PY", "3.12"), ("DEBUG", "true")),
        target="runtime",
    )


def test_env_and_command_values_are_text(write_config: WriteConfig) -> None:
    """Numbers and booleans in `env:` and `command:` reach the service as the text written."""
    path = one_service(
        write_config,
        "{type: container, image: x, env: {PORT: 8080, DEBUG: true}, command: [sleep, 10]}",
    )
    service = load_config(path).services["api"]
    assert service.env == (("PORT", "8080"), ("DEBUG", "true"))
    assert service.command == ("sleep", "10")


def test_file_without_targets_deploys_to_the_local_docker_engine(
    write_config: WriteConfig,
) -> None:
    """With no `targets:`, an environment without `target:` deploys to the local Docker engine."""
    path = one_service(write_config, "{type: container, image: x}", extra="environments: {dev: {}}")
    pipeline = load_config(path)
    assert pipeline.targets == {"local": Target(name="local", kind="docker")}
    assert pipeline.environments["dev"].targets == ("local",)


def test_environment_strategies_and_environment_order(write_config: WriteConfig) -> None:
    """A top-level strategy sets the environment order and the default for every environment."""
    path = write_config("""\
        version: 1
        strategy: {services: sequential, targets: parallel, environments: parallel}
        targets: {a: {kind: docker}, b: {kind: docker}}
        services: {api: {type: container, image: x}}
        environments:
          dev: {targets: [a, b]}
          prod: {target: b, strategy: {services: parallel}, production: true}
        """)
    pipeline = load_config(path)
    assert pipeline.environment_order == "parallel"
    assert pipeline.environments["dev"] == Environment(
        name="dev", targets=("a", "b"), strategy=Strategy("sequential", "parallel")
    )
    assert pipeline.environments["prod"] == Environment(
        name="prod", targets=("b",), strategy=Strategy("parallel", "sequential"), production=True
    )


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("45", 45.0),
        ("0.5", 0.5),
        ("0", 0.0),
    ],
)
def test_durations_are_read_as_seconds(
    write_config: WriteConfig, written: str, seconds: float
) -> None:
    """Durations with ms/s/m/h units, combined or not, and plain numbers are read as seconds."""
    path = write_config(f"""\
        version: 1
        defaults: {{timeout: {written}}}
        targets: {{sim: {{kind: simulated, durations: {{api: {{deploy: {written}}}}}}}}}
        services: {{api: {{type: container, image: x, timeout: {written}}}}}
        """)
    pipeline = load_config(path)
    assert pipeline.defaults.timeout == seconds
    assert pipeline.services["api"].timeout == seconds
    assert pipeline.targets["sim"].durations == {"api": {"deploy": seconds}}


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("ten", "'ten'"),
        ("5 parsecs", "'5 parsecs'"),
        ("-1", "-1"),
        ("true", "True"),
        (".nan", "nan"),
    ],
)
def test_bad_durations_say_what_a_duration_looks_like(
    write_config: WriteConfig, written: str, shown: str
) -> None:
    """A value that is not a duration is reported with examples of what a duration looks like."""
    path = write_config(f"""\
        version: 1
        services:
          api: {{type: container, image: x}}
        defaults:
          timeout: {written}
        """)
    assert problems(path) == [f"{path}:5: defaults.timeout: {DURATION_HINT} {shown}"]


def test_bad_durations_are_reported_wherever_they_appear(write_config: WriteConfig) -> None:
    """Service timeouts and simulated durations are checked like the default timeout."""
    path = write_config("""\
        version: 1
        targets:
          sim: {kind: simulated, durations: {api: {build: soon}}}
        services:
          api: {type: application, build: ./api, timeout: 5 parsecs}
        """)
    assert problems(path) == [
        f"{path}:3: targets.sim.durations.api.build: {DURATION_HINT} 'soon'",
        f"{path}:5: services.api.timeout: {DURATION_HINT} '5 parsecs'",
    ]


def test_a_timeout_past_a_week_is_refused_with_the_range(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """`defaults.timeout: 200000d` is refused by `validate` (it crashed a run) with the range."""
    path = write_config("""\
        version: 1
        defaults: {timeout: 200000d}
        services:
          api: {type: container, image: x, timeout: 8d}
          web: {type: container, image: x, timeout: 7d}
        """)
    code, out, err = validate(path, capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{path}:2: defaults.timeout: expected a timeout from 0 to 7d (like 30s, 10m, 2h or 1d), "
        "got '200000d'",
        f"{path}:4: services.api.timeout: expected a timeout from 0 to 7d (like 30s, 10m, 2h or "
        "1d), got '8d'",
        "2 problems found; nothing was run",
    ]


@pytest.mark.parametrize(
    ("written", "shown"),
    [("366d", "'366d'"), ("1.0e+300", "1e+300"), ("9" * 400 + "d", "'" + "9" * 56 + "...'")],
    ids=["366d", "1e300", "400-digits"],
)
def test_any_duration_past_a_year_is_refused(
    write_config: WriteConfig, written: str, shown: str
) -> None:
    """Simulated durations and previews.ttl, however written, stay within a year."""
    path = write_config(f"""\
        version: 1
        targets: {{sim: {{kind: simulated, durations: {{api: {{deploy: {written}}}}}}}}}
        services: {{api: {{type: container, image: x}}}}
        environments: {{dev: {{}}}}
        previews: {{from: dev, ttl: {written}}}
        """)
    range_ = "expected a duration from 0 to 365d (like 30s, 10m, 2h or 1d), got"
    assert problems(path) == [
        f"{path}:2: targets.sim.durations.api.deploy: {range_} {shown}",
        f"{path}:5: previews.ttl: {range_} {shown}",
    ]


# --- version is checked first ----------------------------------------------------------------


def test_other_version_is_the_only_problem_reported(write_config: WriteConfig) -> None:
    """A file of another version reports only that, however many other problems it has."""
    path = write_config("""\
        # from the future
        version: 2
        services:
          api: {type: nonsense, replics: two}
        environments: {dev: {target: nowhere}}
        """)
    assert problems(path) == [
        f"{path}:2: version: this deploy-pipeline reads version 1 files, got 2; "
        "write `version: 1` or upgrade deploy-pipeline"
    ]


def test_missing_version_says_to_add_version_1(write_config: WriteConfig) -> None:
    """A file without `version:` is told to add `version: 1`, before anything else."""
    path = write_config("""\
        services:
          api: {type: nonsense}
        """)
    assert problems(path) == [
        f"{path}:1: the file has no `version:`; add `version: 1` at the top",
    ]


@pytest.mark.parametrize(("written", "shown"), [('"1"', "'1'"), ("true", "True")])
def test_version_must_be_the_number_1(write_config: WriteConfig, written: str, shown: str) -> None:
    """`version:` is the number 1: neither the text "1" nor `true` passes for it."""
    path = write_config(f"version: {written}\nservices: {{api: {{type: container, image: x}}}}\n")
    assert problems(path) == [
        f"{path}:1: version: this deploy-pipeline reads version 1 files, got {shown}; "
        "write `version: 1` or upgrade deploy-pipeline"
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here yet\n"])
def test_empty_file_says_to_start_with_version(write_config: WriteConfig, text: str) -> None:
    """An empty file (or only comments) is told how to start."""
    path = write_config(text)
    assert problems(path) == [f"{path}:1: the file is empty; start with `version: 1`"]


# --- every error names file, line, key path and what would be right --------------------------


def test_design_error_example_is_reported_as_designed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """DESIGN §3's own error example comes out word for word, on the line of the bad value."""
    text = DESIGN_EXAMPLE.replace("replicas: 2,", "replicas: two,")
    (tmp_path / ".deploy-pipeline.yml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, out, err = validate(".deploy-pipeline.yml", capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        ".deploy-pipeline.yml:14: services.api.replicas: expected an integer, got 'two'",
        "1 problem found; nothing was run",
    ]


def test_unknown_key_suggests_the_closest_known_key(write_config: WriteConfig) -> None:
    """A misspelt key is reported with the known key it most likely meant."""
    path = write_config("""\
        version: 1
        services:
          api:
            type: container
            image: nginx
            replics: 2
        """)
    assert problems(path) == [
        f"{path}:6: services.api.replics: unknown key 'replics' (did you mean 'replicas'?)"
    ]


def test_unknown_key_far_from_any_lists_the_known_keys(write_config: WriteConfig) -> None:
    """A key like no known key is reported with the list of keys allowed there."""
    path = write_config("""\
        version: 1
        services:
          api:
            type: container
            image: nginx
            flavour: vanilla
        """)
    assert problems(path) == [
        f"{path}:6: services.api.flavour: unknown key 'flavour' (known keys: type, image, "
        "build, command, env, port, replicas, health, secrets, stage, schedule, public, timeout, "
        "resources, test, registry_auth, kubernetes, timezone, storage, autoscale, probes, "
        "security)"
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("registy: r.example.com", "registy: unknown key 'registy' (did you mean 'registry'?)"),
        (
            "defaults: {paralelism: 3}",
            "defaults.paralelism: unknown key 'paralelism' (did you mean 'parallelism'?)",
        ),
        (
            "targets: {k: {kind: kubernetes, contxt: eu}}",
            "targets.k.contxt: unknown key 'contxt' (did you mean 'context'?)",
        ),
        (
            "environments: {dev: {skp: [api]}}",
            "environments.dev.skp: unknown key 'skp' (did you mean 'skip'?)",
        ),
        (
            "previews: {from: dev, nme: 'pr-{number}'}",
            "previews.nme: unknown key 'nme' (did you mean 'name'?)",
        ),
        (
            "previews: {from: dev, colour: blue}",
            "previews.colour: unknown key 'colour' "
            "(known keys: from, name, label, drafts, forks, ttl, max, env)",
        ),
    ],
)
def test_unknown_keys_are_found_at_every_level(
    write_config: WriteConfig, line: str, expected: str
) -> None:
    """Unknown keys are reported at the top level and inside every section, with a hint."""
    path = write_config(f"version: 1\nservices: {{api: {{type: container, image: x}}}}\n{line}\n")
    assert problems(path) == [f"{path}:3: {expected}"]


def test_misspelt_services_key_also_reports_services_missing(write_config: WriteConfig) -> None:
    """A misspelt `services:` is pointed out along with the missing `services:` it leaves."""
    path = write_config("version: 1\nservces:\n  api: {type: container, image: x}\n")
    assert problems(path) == [
        f"{path}:1: services: required, but missing",
        f"{path}:2: servces: unknown key 'servces' (did you mean 'services'?)",
    ]


def test_stage_naming_no_stage_suggests_and_lists_the_stages(write_config: WriteConfig) -> None:
    """A `stage:` naming no stage lists the stages there are, with the closest one first."""
    path = write_config("""\
        version: 1
        stages: [databases, backend, frontend]
        services:
          api: {type: container, image: x, stage: backnd}
          web: {type: container, image: x, stage: edge}
        """)
    assert problems(path) == [
        f"{path}:4: services.api.stage: no stage named 'backnd'; did you mean 'backend'? "
        "The stages are: databases, backend, frontend",
        f"{path}:5: services.web.stage: no stage named 'edge'; "
        "the stages are: databases, backend, frontend",
    ]


def test_stage_naming_no_default_stage_lists_the_default_stages(
    write_config: WriteConfig,
) -> None:
    """Without `stages:`, a `stage:` naming no stage lists the four default stages."""
    path = one_service(write_config, "{type: container, image: x, stage: backend}")
    assert problems(path) == [
        f"{path}:3: services.api.stage: no stage named 'backend'; the stages are: "
        "0.DEFAULT DATABASE, 1.DEFAULT JOB, 2.DEFAULT CONTAINER, 3.DEFAULT APPLICATION"
    ]


def test_skip_naming_no_service_lists_the_services(write_config: WriteConfig) -> None:
    """A skipped name that is no service is reported with the services there are."""
    path = write_config("""\
        version: 1
        services:
          api: {type: container, image: x}
          web: {type: container, image: y}
        environments:
          dev:
            skip:
              - wbe
              - cache
        """)
    assert problems(path) == [
        f"{path}:8: environments.dev.skip[0]: no service named 'wbe'; did you mean 'web'? "
        "The services are: api, web",
        f"{path}:9: environments.dev.skip[1]: no service named 'cache'; the services are: api, web",
    ]


def test_unknown_target_in_an_environment_lists_the_targets(write_config: WriteConfig) -> None:
    """An environment deploying to no known target lists the targets, for `target:` and
    `targets:` alike."""
    path = write_config("""\
        version: 1
        targets: {laptop: {kind: docker}, eu: {kind: kubernetes, context: eu-1}}
        services: {api: {type: container, image: x}}
        environments:
          staging: {target: us}
          production:
            targets: [eu, laptp]
        """)
    assert problems(path) == [
        f"{path}:5: environments.staging.target: no target named 'us'; the targets are: laptop, eu",
        f"{path}:7: environments.production.targets[1]: no target named 'laptp'; "
        "did you mean 'laptop'? The targets are: laptop, eu",
    ]


def test_environment_without_target_among_several_lists_them(write_config: WriteConfig) -> None:
    """With several targets, an environment that names none is told to pick one of them."""
    path = write_config("""\
        version: 1
        targets: {laptop: {kind: docker}, eu: {kind: kubernetes}}
        services: {api: {type: container, image: x}}
        environments:
          staging: {skip: []}
        """)
    assert problems(path) == [
        f"{path}:5: environments.staging: say where it deploys with `target:`; "
        "the targets are: laptop, eu"
    ]


def test_previews_from_naming_no_environment_lists_them(write_config: WriteConfig) -> None:
    """`previews.from` naming no environment lists the environments there are."""
    path = write_config("""\
        version: 1
        services: {api: {type: container, image: x}}
        environments: {staging: {}, production: {}}
        previews:
          from: stagin
        """)
    assert problems(path) == [
        f"{path}:5: previews.from: no environment named 'stagin'; did you mean 'staging'? "
        "The environments are: staging, production"
    ]


def test_preview_housekeeping_reads_ttl_in_days_and_a_positive_max(
    write_config: WriteConfig,
) -> None:
    """`previews.ttl` takes a duration in days and `previews.max` a count of at least one."""
    good = write_config("""\
        version: 1
        services: {api: {type: container, image: x}}
        environments: {staging: {}}
        previews: {from: staging, ttl: 3d, max: 5}
        """)
    previews = load_config(good).previews
    assert previews is not None and (previews.ttl, previews.max) == (3 * 86400.0, 5)
    bad = write_config("""\
        version: 1
        services: {api: {type: container, image: x}}
        environments: {staging: {}}
        previews: {from: staging, ttl: soon, max: 0}
        """)
    assert problems(bad) == [
        f"{bad}:4: previews.ttl: expected a duration like 250ms, 2s, 10m, 1h or 3d, got 'soon'",
        f"{bad}:4: previews.max: expected a number ≥ 1, got 0",
    ]


@pytest.mark.parametrize(
    ("template", "shown"),
    [
        ("Preview_{number}", "gives 'Preview_1' for pull request #1"),
        ("{number}-", "gives '1-' for pull request #1"),
        ("pr-{number}-" + "x" * 50, "gives 'pr-9999999999-" + "x" * 50 + "' for pull request "),
        ("pr-{number}\\n", "gives 'pr-1\\n' for pull request #1"),
    ],
    ids=["underscore-capitals", "ends-with-dash", "too-long", "line-break"],
)
def test_previews_name_must_give_an_environment_name(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str], template: str, shown: str
) -> None:
    """A previews.name that gives no valid environment name for some PR fails `validate`."""
    path = write_config(f"""\
        version: 1
        services: {{api: {{type: container, image: x}}}}
        environments: {{staging: {{}}}}
        previews: {{from: staging, name: "{template}"}}
        """)
    code, out, err = validate(path, capsys)
    assert (code, out) == (2, "")
    [located, _] = err.splitlines()
    written = yaml.safe_load(f'"{template}"')  # as YAML reads it: \\n is a line break
    assert located.startswith(f"{path}:4: previews.name: {shown}")
    assert located.endswith(
        ", which is no environment name (lowercase letters, digits and '-', at most 63, starting "
        f"and ending with a letter or digit); write it like pr-{{number}}, got {quote(written)}"
    )


def test_previews_are_capped_at_20_unless_the_file_says_otherwise(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without `previews.max` at most 20 previews exist (`null` lifts the cap), and the schema
    shows that default."""
    path = write_config("""\
        version: 1
        services: {api: {type: container, image: x}}
        environments: {staging: {}}
        previews: {from: staging}
        """)
    previews = load_config(path).previews
    assert previews is not None and previews.max == 20
    uncapped = write_config("""\
        version: 1
        services: {api: {type: container, image: x}}
        environments: {staging: {}}
        previews: {from: staging, max: null}
        """)
    previews = load_config(uncapped).previews
    assert previews is not None and previews.max is None
    definitions = schema_document(capsys)["$defs"]
    assert isinstance(definitions, dict)
    assert definitions["PreviewsModel"]["properties"]["max"]["default"] == 20


def test_simulated_durations_and_failures_name_services(write_config: WriteConfig) -> None:
    """A simulated target's durations and failures must name services of the file."""
    path = write_config("""\
        version: 1
        targets:
          sim:
            kind: simulated
            durations: {apx: {build: 1s}}
            fail: {cache: deploy}
        services: {api: {type: application, build: ./api}}
        """)
    assert problems(path) == [
        f"{path}:5: targets.sim.durations.apx: no service named 'apx'; "
        "did you mean 'api'? The services are: api",
        f"{path}:6: targets.sim.fail.cache: no service named 'cache'; the services are: api",
    ]


def test_unknown_phase_is_reported_at_its_key(write_config: WriteConfig) -> None:
    """A simulated duration for an unknown phase names the phase's key path and the phases."""
    path = write_config("""\
        version: 1
        targets:
          sim: {kind: simulated, durations: {api: {boot: 1s}}}
        services: {api: {type: application, build: ./api}}
        """)
    assert problems(path) == [
        f"{path}:3: targets.sim.durations.api.boot: "
        "expected 'build', 'test', 'deploy', 'restart', 'stop' or 'delete', got 'boot'"
    ]


def test_duplicate_key_names_both_lines(write_config: WriteConfig) -> None:
    """A key set twice is reported where it is repeated, with the line it was first set."""
    path = write_config("""\
        version: 1
        services:
          api: {type: container, image: x}
          web: {type: container, image: y}
          api: {type: application, build: ./api}
        """)
    assert problems(path) == [
        f"{path}:5: services.api: duplicate key (first set at line 3); keep one",
    ]


def test_duplicate_nested_key_names_its_path(write_config: WriteConfig) -> None:
    """A key repeated inside a service is reported with its full key path."""
    path = write_config("""\
        version: 1
        services:
          api:
            type: container
            image: nginx:1.27
            image: nginx:1.26
        """)
    assert problems(path) == [
        f"{path}:6: services.api.image: duplicate key (first set at line 5); keep one",
    ]


def test_every_duplicate_key_is_reported(write_config: WriteConfig) -> None:
    """Two duplicate keys in one file are both reported, so one edit fixes them both."""
    path = write_config("""\
        version: 1
        services:
          api: {type: container, image: x, port: 80, port: 81}
          web: {type: container, image: y}
          web: {type: container, image: z}
        """)
    assert problems(path) == [
        f"{path}:3: services.api.port: duplicate key (first set at line 3); keep one",
        f"{path}:5: services.web: duplicate key (first set at line 4); keep one",
    ]


def test_several_problems_are_all_reported_by_line(write_config: WriteConfig) -> None:
    """Every problem of a file is reported at once, in the order of the file's lines."""
    path = write_config("""\
        version: 1
        services:
          api:
            type: application
            build: ./api
            replicas: two
          web:
            type: container
            image: nginx
            port: 99999
        defaults:
          parallelism: 0
          build_ahead: maybe
        """)
    assert problems(path) == [
        f"{path}:6: services.api.replicas: expected an integer, got 'two'",
        f"{path}:10: services.web.port: expected a number ≤ 65535, got 99999",
        f"{path}:12: defaults.parallelism: expected a number ≥ 1, got 0",
        f"{path}:13: defaults.build_ahead: expected true or false, got 'maybe'",
    ]


def test_shape_and_meaning_problems_are_reported_together(write_config: WriteConfig) -> None:
    """A wrong type in one place and a wrong stage name in another are reported in one go."""
    path = write_config("""\
        version: 1
        stages: [backend]
        services:
          api:
            type: application
            build: ./api
            stage: backnd
          web:
            type: container
            image: nginx
            replicas: two
        """)
    assert problems(path) == [
        f"{path}:7: services.api.stage: no stage named 'backnd'; did you mean 'backend'? "
        "The stages are: backend",
        f"{path}:11: services.web.replicas: expected an integer, got 'two'",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("services: [api, web]", "services: expected a mapping of keys to values, got a list"),
        ("services:", "services: expected a mapping of keys to values, got nothing (null)"),
        ("services: {}", "services: no services; describe at least one"),
        ("services: {api: {image: x}}", "services.api.type: required, but missing"),
        (
            "services: {api: {type: lambda, image: x}}",
            "services.api.type: expected 'database', 'job', 'container' or 'application', "
            "got 'lambda'",
        ),
        (
            "services: {api: {type: container, image: x, public: maybe}}",
            "services.api.public: expected true or false, got 'maybe'",
        ),
        (
            "services: {api: {type: container, image: x, command: run me}}",
            "services.api.command: expected a list, got 'run me'",
        ),
        (
            "services: {api: {type: container, image: x, port: 0}}",
            "services.api.port: expected a number ≥ 1, got 0",
        ),
        (
            "services: {api: {type: container, image: x, replicas: 1001}}",
            "services.api.replicas: expected a number ≤ 1000, got 1001",
        ),
        (
            "services: {api: {type: application, build: {dockerfile: D}}}",
            "services.api.build.context: required, but missing",
        ),
        (
            "services: {api: {type: application, build: ''}}",
            "services.api.build.context: expected a non-empty string, got ''",
        ),
    ],
)
def test_wrong_shapes_say_what_is_expected(
    write_config: WriteConfig, line: str, expected: str
) -> None:
    """A value of the wrong type or range says what was expected and what was found."""
    path = write_config(f"version: 1\n{line}\n")
    assert problems(path) == [f"{path}:2: {expected}"]


@pytest.mark.parametrize(
    ("section", "line", "expected"),
    [
        (
            "targets: {aws: {kind: aws}}",
            3,
            "targets.aws.kind: expected 'docker', 'kubernetes' or 'simulated', got 'aws'",
        ),
        (
            "targets: {laptop: {kind: docker, context: eu-1}}",
            3,
            "targets.laptop.context: only kubernetes targets take a `context:`, this one is docker",
        ),
        (
            "targets: {eu: {kind: kubernetes, fail: {api: deploy}}}",
            3,
            "targets.eu.fail: only simulated targets take `fail:`, this one is kubernetes",
        ),
        (
            "targets: {EU: {kind: docker}}",
            3,
            "targets.EU: target names are lowercase letters, digits and '-', got 'EU'",
        ),
        (
            "environments: {dev: {strategy: {services: random}}}",
            3,
            "environments.dev.strategy.services: expected 'parallel' or 'sequential', got 'random'",
        ),
        (
            "environments: {dev: {target: local, targets: [local]}}",
            3,
            "environments.dev.targets: give `target:` or `targets:`, not both",
        ),
        (
            "environments: {Dev: {}}",
            3,
            "environments.Dev: environment names are lowercase letters, digits and '-', got 'Dev'",
        ),
        (
            "environments: {dev: {}}\npreviews: {from: dev, name: preview}",
            4,
            "previews.name: must contain {number} so each pull request gets its own "
            "environment, got 'preview'",
        ),
        ("stages: []", 3, "stages: an empty list; name at least one stage or remove `stages:`"),
        ("stages: [a, b, a]", 3, "stages[2]: stage 'a' is listed twice; stage names are unique"),
    ],
)
def test_targets_environments_and_stages_rules(
    write_config: WriteConfig, section: str, line: int, expected: str
) -> None:
    """Targets, environments, previews and stages break their rules with a clear message."""
    path = write_config(
        f"version: 1\nservices: {{api: {{type: container, image: x}}}}\n{section}\n"
    )
    assert problems(path) == [f"{path}:{line}: {expected}"]


# --- service types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            "{type: database}",
            "services.api: a database needs `image:` (for example postgres:16 or nginx:1.27)",
        ),
        (
            "{type: container}",
            "services.api: a container needs `image:` (for example postgres:16 or nginx:1.27)",
        ),
        (
            "{type: application}",
            "services.api: an application is built from the repo: add `build: ./folder` "
            "(or use type: container with `image:`)",
        ),
        (
            "{type: job}",
            "services.api: a job needs `build:` (a folder of the repo) or `image:` "
            "(a prebuilt one)",
        ),
        (
            "{type: container, image: nginx, build: ./web}",
            "services.api.build: a container runs a prebuilt image, it is not built: use "
            "`image:`, or type: application to build it from the repo",
        ),
        (
            "{type: application, build: ./api, image: api:1}",
            "services.api.image: give `build:` or `image:`, not both: a built image is "
            "named by its content",
        ),
        (
            "{type: container, image: x, schedule: '0 3 * * *'}",
            "services.api.schedule: only a job can have a schedule (it becomes a cron job)",
        ),
        (
            "{type: database, image: postgres:16, replicas: 3}",
            "services.api.replicas: only containers and applications have replicas",
        ),
        (
            "{type: job, image: x, public: true}",
            "services.api.public: only containers and applications can be public",
        ),
        (
            "{type: container, image: x, port: 80, health: healthz}",
            "services.api.health: expected an HTTP path starting with '/', got 'healthz'",
        ),
        (
            "{type: container, image: x, secrets: [DB-URL]}",
            "services.api.secrets[0]: expected the name of an environment variable "
            "(letters, digits, '_'), got 'DB-URL'",
        ),
    ],
    ids=[
        "database-without-image",
        "container-without-image",
        "application-without-build",
        "job-without-build-or-image",
        "container-with-build",
        "application-with-image",
        "schedule-on-container",
        "replicas-on-database",
        "public-job",
        "health-not-a-path",
        "secret-not-a-variable-name",
    ],
)
def test_service_type_rules_give_clear_messages(
    write_config: WriteConfig, service: str, expected: str
) -> None:
    """Each service type's rules (what needs an image, what is built…) explain themselves."""
    path = one_service(write_config, service)
    assert problems(path) == [f"{path}:3: {expected}"]


def test_job_may_run_a_prebuilt_image(write_config: WriteConfig) -> None:
    """A job runs from `image:` as well as from `build:`, and only a job takes a schedule."""
    path = one_service(write_config, "{type: job, image: busybox, schedule: '*/5 * * * *'}")
    service = load_config(path).services["api"]
    assert (service.image, service.build, service.schedule) == ("busybox", None, "*/5 * * * *")


def test_a_test_is_a_command_list_or_a_shell_line(write_config: WriteConfig) -> None:
    """`test:` on a built service is its argv: a list as written, a string run by /bin/sh -c."""
    path = write_config("""\
        version: 1
        services:
          api: {type: application, build: ./api, test: [pytest, -q, 3]}
          migrate: {type: job, build: ./api, test: "pytest -q && ruff check ."}
          web: {type: container, image: nginx:1.27}
        """)
    services = load_config(path).services
    assert services["api"].test == ("pytest", "-q", "3")
    assert services["migrate"].test == ("/bin/sh", "-c", "pytest -q && ruff check .")
    assert services["web"].test is None


def test_a_test_on_a_prebuilt_service_is_refused_at_its_line(write_config: WriteConfig) -> None:
    """Only what is built is tested: `test:` on a container, a database or a job from `image:`
    is a config error at its line that says what would be right."""
    path = write_config("""\
        version: 1
        services:
          web:
            type: container
            image: nginx:1.27
            test: [nginx, -t]
          db: {type: database, image: postgres:16, test: pg_isready}
          report: {type: job, image: busybox, test: [true]}
        """)
    rule = "only a service built from the repo (a job or an application with `build:`) is tested"
    fix = "remove `test:`, or build it with `build:`"
    assert problems(path) == [
        f"{path}:6: services.web.test: {rule}; this container runs the prebuilt image "
        f"'nginx:1.27': {fix}",
        f"{path}:7: services.db.test: {rule}; this database runs the prebuilt image "
        f"'postgres:16': {fix}",
        f"{path}:8: services.report.test: {rule}; this job runs the prebuilt image 'busybox': "
        f"{fix}",
    ]


@pytest.mark.parametrize("value", ["[]", "''", "'  '", "{run: pytest}", "7"])
def test_an_empty_or_shapeless_test_says_what_a_command_looks_like(
    write_config: WriteConfig, value: str
) -> None:
    """A test that is no command (empty, blank, a mapping, a number) says both forms."""
    path = one_service(write_config, f"{{type: application, build: ./api, test: {value}}}")
    [message] = problems(path)
    assert message.startswith(
        f"{path}:3: services.api.test: expected a command: a list like [pytest, -q], or a line "
        "that /bin/sh -c runs like 'pytest -q && ruff check', got "
    )


def test_simulated_targets_take_test_durations_and_failures(write_config: WriteConfig) -> None:
    """`test` is a phase of a simulated target's `durations` and `fail` (DESIGN §9)."""
    path = write_config("""\
        version: 1
        targets:
          sim: {kind: simulated, durations: {api: {test: 2s}}, fail: {api: test}}
        services: {api: {type: application, build: ./api, test: [pytest]}}
        """)
    target = load_config(path).targets["sim"]
    assert (target.durations, target.fail) == ({"api": {"test": 2.0}}, {"api": "test"})


def test_service_names_must_be_dns_labels(write_config: WriteConfig) -> None:
    """A service name that cannot name a Kubernetes object or container is refused."""
    path = write_config("version: 1\nservices:\n  My_API: {type: container, image: x}\n")
    assert problems(path) == [
        f"{path}:3: services.My_API: service names are lowercase letters, digits and '-' "
        "(at most 63), starting and ending with a letter or digit, got 'My_API'"
    ]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            'services: {"api\\n": {type: container, image: x}}',
            "services['api\\n']: service names are lowercase letters, digits and '-' (at most "
            "63), starting and ending with a letter or digit, got 'api\\n'",
        ),
        (
            'services: {api: {type: container, image: x}}\ntargets: {"eu\\n": {kind: docker}}',
            "targets['eu\\n']: target names are lowercase letters, digits and '-', got 'eu\\n'",
        ),
        (
            'services: {api: {type: container, image: x}}\nenvironments: {"dev\\n": {}}',
            "environments['dev\\n']: environment names are lowercase letters, digits and '-', "
            "got 'dev\\n'",
        ),
        (
            'services: {api: {type: container, image: x, secrets: ["API_KEY\\n"]}}',
            "services.api.secrets[0]: expected the name of an environment variable (letters, "
            "digits, '_'), got 'API_KEY\\n'",
        ),
    ],
    ids=["service", "target", "environment", "secret"],
)
def test_names_with_a_trailing_line_break_are_refused(
    write_config: WriteConfig, section: str, expected: str
) -> None:
    """A name is checked whole: a valid name followed by a line break is refused, escaped."""
    path = write_config(f"version: 1\n{section}\n")
    found = problems(path)
    assert len(found) == 1
    assert re.fullmatch(rf"{re.escape(str(path))}:\d: {re.escape(expected)}", found[0])


HOSTILE_STAGE = "x\n::warning::…\n::set-output name=status::hacked"


def test_a_stage_name_with_line_breaks_is_refused_on_one_line(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stage name holding workflow commands on new lines is refused at load time, escaped."""
    path = write_config(
        f"version: 1\nstages: [data, apps, {json.dumps(HOSTILE_STAGE)}]\n"
        "services: {api: {type: container, image: x}}\n"
    )
    code, out, err = validate(path, capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{path}:2: stages[2]: stage names are single-line printable text of 1 to 100 "
        "characters (letters, digits, spaces and punctuation; no line breaks, tabs or control "
        "characters), got 'x\\n::warning::…\\n::set-output name=status::hacked'",
        "1 problem found; nothing was run",
    ]


@pytest.mark.parametrize(
    "stage",
    ["", "   ", "a\tb", "a\rb", "a\u2028b", "a\u202eb", "a\x1b[31mb", "a\x85b", "x" * 101],
    ids=["empty", "blank", "tab", "cr", "line-separator", "bidi", "escape", "nel", "too-long"],
)
def test_stage_names_must_be_single_line_printable_text(
    write_config: WriteConfig, stage: str
) -> None:
    """Blank, overlong, or holding any control or invisible format character: refused."""
    services = "services: {api: {type: container, image: x}}"
    path = write_config(f"version: 1\nstages: [{json.dumps(stage)}]\n{services}\n")
    [found] = problems(path)
    assert found.startswith(f"{path}:2: stages[0]: stage names are single-line printable text")
    assert "\n" not in found


def test_stage_names_may_hold_spaces_punctuation_and_any_script(write_config: WriteConfig) -> None:
    """Printable text is enough for a stage name: the default stages' style, accents, emoji."""
    stages = ["0.DEFAULT DATABASE", "base de données", "🚀 ship it!", "x" * 100]
    path = write_config(
        f"version: 1\nstages: {json.dumps(stages, ensure_ascii=False)}\n"
        "services: {api: {type: container, image: x}}\n"
    )
    assert load_config(path).stages == tuple(stages)


@pytest.mark.parametrize(
    ("service", "where"),
    [
        ('{type: container, image: "nginx\\n::error::x"}', "services.api.image"),
        ('{type: container, image: x, port: 80, health: "/h\\n# Heading"}', "services.api.health"),
        ('{type: job, image: x, schedule: "0 3 * * *\\n"}', "services.api.schedule"),
        ('{type: container, image: x, env: {"A\\nB": "1"}}', "services.api.env['A\\nB']"),
        ('{type: application, build: "./api\\r"}', "services.api.build.context"),
        (
            '{type: application, build: {context: ., dockerfile: "D\\n"}}',
            "services.api.build.dockerfile",
        ),
        (
            '{type: application, build: {context: ., target: "t\\u2029"}}',
            "services.api.build.target",
        ),
        (
            '{type: application, build: {context: ., args: {"K\\t": v}}}',
            "services.api.build.args['K\\t']",
        ),
    ],
    ids=["image", "health", "schedule", "env", "context", "dockerfile", "target", "args"],
)
def test_other_one_line_values_must_be_printable(
    write_config: WriteConfig, service: str, where: str
) -> None:
    """Images, paths, schedules and variable names in a service are single-line text too."""
    path = write_config(f"version: 1\nservices:\n  api: {service}\n")
    [found] = problems(path)
    assert found.startswith(f"{path}:3: {where}: expected single-line printable text (no line ")
    assert "\n" not in found


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ('registry: "r.example.com\\n"', "registry"),
        ('targets: {eu: {kind: kubernetes, context: "eu\\n1"}}', "targets.eu.context"),
        (
            'targets: {eu: {kind: kubernetes, domain: "{service}.x\\n"}}',
            "targets.eu.domain",
        ),
        (
            'environments: {dev: {}}\npreviews: {from: dev, label: "preview\\n"}',
            "previews.label",
        ),
    ],
    ids=["registry", "context", "domain", "label"],
)
def test_registry_contexts_domains_and_labels_must_be_printable(
    write_config: WriteConfig, section: str, where: str
) -> None:
    """The registry, a target's context and domain, and the previews' label are one line each."""
    path = write_config(
        f"version: 1\nservices: {{api: {{type: container, image: x}}}}\n{section}\n"
    )
    [found] = problems(path)
    assert re.match(rf"{re.escape(str(path))}:\d: {re.escape(where)}: expected single-line", found)


# --- default stages --------------------------------------------------------------------------


def test_default_stages_hold_each_type(write_config: WriteConfig) -> None:
    """Without `stages:` there are the four default stages and each type goes to its own."""
    path = write_config("""\
        version: 1
        services:
          web: {type: container, image: nginx}
          api: {type: application, build: ./api}
          migrate: {type: job, build: ./api}
          db: {type: database, image: postgres:16}
        """)
    pipeline = load_config(path)
    assert pipeline.stages == DEFAULT_STAGES
    assert {name: s.stage for name, s in pipeline.services.items()} == {
        "web": "2.DEFAULT CONTAINER",
        "api": "3.DEFAULT APPLICATION",
        "migrate": "1.DEFAULT JOB",
        "db": "0.DEFAULT DATABASE",
    }


def test_services_whose_default_stage_is_gone_go_to_the_last_stage(
    write_config: WriteConfig,
) -> None:
    """A service without `stage:` whose default stage was renamed or removed goes last."""
    path = write_config("""\
        version: 1
        stages: [0.DEFAULT DATABASE, 2.DEFAULT CONTAINER, apps, edge]
        services:
          db: {type: database, image: postgres:16}
          migrate: {type: job, build: ./api}
          web: {type: container, image: nginx}
          api: {type: application, build: ./api}
        """)
    pipeline = load_config(path)
    assert {name: s.stage for name, s in pipeline.services.items()} == {
        "db": "0.DEFAULT DATABASE",
        "migrate": "edge",
        "web": "2.DEFAULT CONTAINER",
        "api": "edge",
    }


def test_default_stage_must_match_exactly(write_config: WriteConfig) -> None:
    """A stage only resembling a default stage's name does not receive that type's services."""
    path = write_config("""\
        version: 1
        stages: [0.default database, "0.DEFAULT DATABASE ", last]
        services:
          db: {type: database, image: postgres:16}
        """)
    assert load_config(path).services["db"].stage == "last"


def test_explicit_stage_is_honoured(write_config: WriteConfig) -> None:
    """A service's `stage:` wins over its type's default stage, with or without `stages:`."""
    default = write_config(
        "version: 1\nservices:\n  api: {type: application, build: ., stage: 0.DEFAULT DATABASE}\n"
    )
    named = write_config(
        "version: 1\nstages: [first, 3.DEFAULT APPLICATION]\n"
        "services:\n  api: {type: application, build: ., stage: first}\n",
        name="named.yml",
    )
    assert load_config(default).services["api"].stage == "0.DEFAULT DATABASE"
    assert load_config(named).services["api"].stage == "first"


# --- bad YAML --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        (
            "version: 1\nservices:\n\tapi: {type: container, image: x}\n",
            "3:1",
            "found character '\\t' that cannot start any token; YAML indents with spaces, not tabs",
        ),
        (
            "version: 1\nservices: {api: {type: container, image: x}\n",
            "3:1",
            "expected ',' or '}', but got '<stream end>'",
        ),
        (
            "version: 1\nservices:\n  api:\n    type: container\n   image: x\n",
            "5:4",
            "expected <block end>, but found '<block mapping start>'",
        ),
    ],
    ids=["tab", "unclosed-bracket", "bad-indentation"],
)
def test_bad_yaml_gives_line_and_column(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    """A file that is not YAML is reported as FILE:LINE:COLUMN with the parser's problem."""
    path = tmp_path / ".deploy-pipeline.yml"
    path.write_text(text, encoding="utf-8")
    assert problems(path) == [f"{path}:{where}: not valid YAML: {problem}"]


def test_several_yaml_documents_are_refused_plainly(tmp_path: Path) -> None:
    """A file holding two YAML documents says it expected a single one, and where."""
    path = tmp_path / ".deploy-pipeline.yml"
    path.write_text("version: 1\n---\nversion: 1\n", encoding="utf-8")
    [message] = problems(path)
    assert message.startswith(f"{path}:2:1: not valid YAML: ")
    assert message.endswith("not valid YAML: the file holds several YAML documents (---); keep one")


@pytest.mark.parametrize(
    ("text", "shown"), [("- version: 1\n- services: {}\n", "a list"), ("hello\n", "'hello'")]
)
def test_top_level_must_be_a_mapping(write_config: WriteConfig, text: str, shown: str) -> None:
    """A file that is a list or a bare word is told it should be a mapping of keys."""
    path = write_config(text)
    assert problems(path) == [
        f"{path}:1: expected a mapping at the top (version:, services:, …), got {shown}"
    ]


def test_non_text_key_is_refused(write_config: WriteConfig) -> None:
    """A key that is a list (YAML complex key) is refused with its location."""
    path = write_config("version: 1\nservices:\n  ? [a, b]\n  : {type: container}\n")
    assert problems(path) == [
        f"{path}:3: services: keys must be plain text, not a list or a mapping"
    ]


def test_unsafe_tags_are_not_constructed(write_config: WriteConfig) -> None:
    """A Python object tag is never resolved but reported as bad YAML, with its position."""
    path = write_config("version: 1\nservices: !!python/name:os.system\n")
    assert problems(path) == [
        f"{path}:2:11: not valid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/name:os.system'"
    ]


# --- files that are not readable, or hostile ------------------------------------------------


def test_robust_inputs_never_raise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file, a folder and undecodable bytes are reported as config problems."""
    undecodable = tmp_path / "bytes.yml"
    undecodable.write_bytes(b"version: 1\n\xff\xfe\n")
    (tmp_path / "folder.yml").mkdir()
    assert validate(tmp_path / "missing.yml", capsys) == (
        2,
        "",
        f"{tmp_path / 'missing.yml'}: no such file; create it or pass -f FILE\n"
        "1 problem found; nothing was run\n",
    )
    for path in (undecodable, tmp_path / "folder.yml"):
        code, out, err = validate(path, capsys)
        assert (code, out) == (2, "")
        assert err.startswith(f"{path}: cannot read it: ")


NOT_READ = "1 problem found; nothing was run"


def test_a_device_is_refused_not_read(capsys: pytest.CaptureFixture[str]) -> None:
    """`-f /dev/zero` exits 2 saying it is no regular file (it ended in a MemoryError)."""
    assert validate("/dev/zero", capsys) == (
        2,
        "",
        "/dev/zero: cannot read it: it is not a regular file (a character device); pass -f the "
        f"pipeline file\n{NOT_READ}\n",
    )


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    """`-f` on a FIFO that nobody writes to exits 2 at once (it hung, waiting for a writer)."""
    fifo = tmp_path / "pipe.yml"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "deploy_pipeline", "validate", "-f", str(fifo)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"{fifo}: cannot read it: it is not a regular file (a named pipe); pass -f the pipeline "
        f"file\n{NOT_READ}\n"
    )


def test_a_file_over_a_mebibyte_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pipeline file is read up to 1 MiB; a longer one is refused, saying so."""
    path = tmp_path / ".deploy-pipeline.yml"
    path.write_text("version: 1\n" + "#" * (1024 * 1024), encoding="utf-8")
    assert validate(path, capsys) == (
        2,
        "",
        f"{path}: cannot read it: it is over 1 MiB; a pipeline file takes a few kilobytes\n"
        f"{NOT_READ}\n",
    )


def test_a_link_leading_outside_its_folder_is_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pipeline file linked to a file elsewhere is refused without a word of that file (its
    text was echoed in the problems: a pull request could link to a secret)."""
    secret = tmp_path / "elsewhere" / "token"
    secret.parent.mkdir()
    secret.write_text("ghp_abcdefSECRET: hunter2\n", encoding="utf-8")
    repo = tmp_path / "repo"
    repo.mkdir()
    for name, target in [("relative.yml", "../elsewhere/token"), ("absolute.yml", str(secret))]:
        (repo / name).symlink_to(target)
        code, out, err = validate(repo / name, capsys)
        assert (code, out) == (2, "")
        assert err == (
            f"{repo / name}: a symbolic link leading outside its folder, not read: keep the "
            "pipeline file in the folder it deploys (a link to a file inside that folder is "
            f"fine)\n{NOT_READ}\n"
        )


def test_a_link_to_a_file_in_its_folder_is_read(tmp_path: Path) -> None:
    """A pipeline file linked to another file inside its folder loads, named as given."""
    real = tmp_path / "deploy" / "pipeline.yml"
    real.parent.mkdir()
    real.write_text("version: 1\nservices: {api: {type: container, image: x}}\n", "utf-8")
    link = tmp_path / ".deploy-pipeline.yml"
    link.symlink_to("deploy/pipeline.yml")
    assert load_config(link).path == str(link)
    real.write_text("version: 1\n", "utf-8")
    assert problems(link) == [f"{link}:1: services: required, but missing"]


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    """A file whose aliases expand to millions of values is refused before it is expanded."""
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert problems(path) == [f"{path}: the file expands to over 100000 values"]


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nservices: &loop {api: *loop}\n",
        "version: 1\nservices: &loop [*loop]\n",
        "version: 1\nservices: " + "[" * 1000 + "]" * 1000 + "\n",
        "version: 1\nservices: " + "{a: " * 1000 + "x" + "}" * 1000 + "\n",
    ],
    ids=["recursive-mapping", "recursive-list", "deep-list", "deep-mapping"],
)
def test_recursive_or_deep_documents_are_config_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    """A self-referencing or absurdly nested file exits 2 with located problems, no traceback."""
    path = tmp_path / ".deploy-pipeline.yml"
    path.write_text(text, encoding="utf-8")
    code, out, err = validate(path, capsys)
    assert (code, out) == (2, "")
    *located, summary = err.splitlines()
    assert SUMMARY.match(summary)
    assert located
    assert all(line.startswith(f"{path}:") for line in located)


def test_line_breaks_in_names_keep_one_problem_per_line(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Names and keys holding line breaks are shown escaped, so each problem stays one line."""
    path = write_config(
        'version: 1\nstages: [a]\nservices:\n  api: {type: container, image: x, stage: "b\\nc"}\n'
        '  "A\\nB": {type: container, image: x, "re\\nplicas": 1}\n'
    )
    code, _, err = validate(path, capsys)
    assert code == 2
    *located, summary = err.splitlines()
    assert SUMMARY.match(summary)
    assert all(line.startswith(f"{path}:") for line in located)
    assert len(located) == int(summary.split()[0])


# --- the CLI: validate and schema ------------------------------------------------------------


def test_validate_prints_problems_on_stderr_and_exits_2(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate` on a bad file prints each problem and a count on stderr and exits 2."""
    path = write_config("""\
        version: 1
        services:
          api: {type: application, build: ./api, replicas: two}
          web: {type: container, image: nginx, port: http}
        """)
    code, out, err = validate(path, capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{path}:3: services.api.replicas: expected an integer, got 'two'",
        f"{path}:4: services.web.port: expected an integer, got 'http'",
        "2 problems found; nothing was run",
    ]


def test_validate_a_valid_file_exits_0_with_a_tick(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate` on a good file prints one ✔ line summing it up and exits 0."""
    path = write_config(DESIGN_EXAMPLE)
    assert validate(path, capsys) == (
        0,
        f"✔ {path} is valid: 5 services in 4 stages, 2 environments, 3 targets\n",
        "",
    )


def test_validate_reads_the_default_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without -f, `validate` checks ./.deploy-pipeline.yml."""
    (tmp_path / ".deploy-pipeline.yml").write_text(DESIGN_EXAMPLE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 0
    assert capsys.readouterr().out.startswith("✔ .deploy-pipeline.yml is valid: ")


def test_validate_the_shop_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped shop example validates from the command line."""
    assert validate(SHOP, capsys) == (
        0,
        f"✔ {SHOP} is valid: 6 services in 4 stages, 3 environments, 2 targets\n",
        "",
    )


def schema_document(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    """What `deploy-pipeline schema` prints, parsed as JSON."""
    assert main(["schema"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    document = json.loads(out)
    assert isinstance(document, dict)
    return document


def test_schema_is_a_json_schema_of_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    """`schema` prints a JSON Schema naming the file's sections, version and services required."""
    document = schema_document(capsys)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    properties = document["properties"]
    assert isinstance(properties, dict)
    assert {"version", "registry", "defaults", "stages", "targets", "services"} <= set(properties)
    assert {"environments", "previews"} <= set(properties)
    assert set(document["required"]) == {"version", "services"}
    assert document["additionalProperties"] is False


@pytest.mark.parametrize("source", ["shop", "design"])
def test_schema_accepts_the_examples(capsys: pytest.CaptureFixture[str], source: str) -> None:
    """An editor checking the shop example or the DESIGN example with the schema finds nothing."""
    document = schema_document(capsys)
    text = SHOP.read_text(encoding="utf-8") if source == "shop" else DESIGN_EXAMPLE
    example = yaml.safe_load(text)
    if jsonschema is None:
        assert set(example) <= set(document["properties"])  # type: ignore[arg-type]
        return
    jsonschema.Draft202012Validator.check_schema(document)
    validator = jsonschema.Draft202012Validator(document)
    assert [error.message for error in validator.iter_errors(example)] == []


def test_schema_flags_what_validate_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    """The schema refuses an unknown key and an unknown service type, as `validate` does."""
    document = schema_document(capsys)
    if jsonschema is None:
        service = document["$defs"]["ServiceModel"]  # type: ignore[index]
        assert service["additionalProperties"] is False
        assert service["properties"]["type"]["enum"] == [
            "database",
            "job",
            "container",
            "application",
        ]
        return
    validator = jsonschema.Draft202012Validator(document)
    bad = {"version": 1, "services": {"api": {"type": "lambda", "replics": 2}}}
    assert sorted(error.message for error in validator.iter_errors(bad)) == [
        "'lambda' is not one of ['database', 'job', 'container', 'application']",
        "Additional properties are not allowed ('replics' was unexpected)",
    ]


def test_schema_holds_the_rules_for_names(capsys: pytest.CaptureFixture[str]) -> None:
    """Editors flag what `validate` refuses in names: a stage or an image with a line break,
    a service name that is no DNS label, a secret that is no variable, a bad previews.name."""
    document = schema_document(capsys)
    assert jsonschema is not None, "the dev extras install jsonschema"
    validator = jsonschema.Draft202012Validator(document)
    good = {
        "version": 1,
        "stages": ["0.DEFAULT DATABASE", "🚀 ship"],
        "services": {"api": {"type": "container", "image": "x", "secrets": ["API_KEY"]}},
        "environments": {"dev": {}},
        "previews": {"from": "dev", "name": "pr-{number}"},
    }
    assert list(validator.iter_errors(good)) == []
    bad = {
        "version": 1,
        "stages": [HOSTILE_STAGE, " "],
        "services": {
            "api\n": {"type": "container", "image": "x\n"},
            "web": {"type": "container", "image": "x", "secrets": ["API_KEY\n"]},
        },
        "environments": {"Dev": {}},
        "previews": {"from": "dev", "name": "Preview_{number}"},
    }
    errors, flagged = list(validator.iter_errors(bad)), set()
    while errors:  # an optional key's error sits under its anyOf: look inside
        error = errors.pop()
        flagged.add(tuple(error.absolute_path))
        errors += error.context or []
    assert flagged >= {
        ("stages", 0),
        ("stages", 1),
        ("services",),
        ("services", "api\n", "image"),
        ("services", "web", "secrets", 0),
        ("environments",),
        ("previews", "name"),
    }


def test_wrong_shapes_everywhere_are_reported_line_by_line(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Even a document of the wrong shape everywhere is reported line by line, never a crash."""
    path = write_config(
        """\
        version: 1
        registry: [1]
        defaults: 7
        stages: {a: b}
        strategy: parallel
        targets: [laptop]
        services: {api: 5, web: [], db: {type: [database]}}
        environments: {dev: none}
        previews: pr
        """
    )
    code, out, err = validate(path, capsys)
    assert (code, out) == (2, "")
    assert "Traceback" not in err
    *located, summary = err.splitlines()
    assert summary == f"{len(located)} problems found; nothing was run"
    assert all(line.startswith(f"{path}:") for line in located)


def test_a_health_path_needs_a_port(write_config: WriteConfig) -> None:
    """`health:` without `port:` says to add the port it is probed on."""
    path = write_config("""\
        version: 1
        services:
          api: {type: container, image: x, health: /healthz}
        """)
    assert problems(path) == [
        f"{path}:3: services.api.health: a health path is probed on the service's port: add `port:`"
    ]


def test_resources_take_kubernetes_quantities(write_config: WriteConfig) -> None:
    """`resources:` reads cpu and memory requests; a bad quantity says what one looks like."""
    path = write_config("""\
        version: 1
        services:
          api: {type: container, image: x, resources: {cpu: 250m, memory: 512Mi}}
          web: {type: container, image: y, resources: {cpu: lots}}
        """)
    assert problems(path) == [
        f"{path}:4: services.web.resources.cpu: expected a Kubernetes quantity like 250m, 2 or "
        "512Mi, got 'lots'"
    ]
    path.write_text(path.read_text().replace("cpu: lots", "cpu: 2"))
    assert load_config(path).services["web"].resources == (("cpu", "2"),)


# --- build contexts and Dockerfiles stay inside the repository ------------------------------

OUTSIDE = "must stay inside the repository"


def test_a_build_context_that_climbs_out_of_the_repository_is_refused(
    write_config: WriteConfig,
) -> None:
    """A context of `../../..` (or an absolute path) is an error on its line: the engine would be
    sent a folder of the machine that is not the repository."""
    climb = "../" * 20
    path = write_config(f"""\
        version: 1
        services:
          api: {{type: application, build: {{context: {climb}}}}}
          web: {{type: application, build: /}}
        """)
    assert problems(path) == [
        f"{path}:3: services.api.build.context: {OUTSIDE}: '{climb}' leads outside the pipeline "
        "file's folder (paths are relative to it, links followed)",
        f"{path}:4: services.web.build.context: {OUTSIDE}: '/' leads outside the pipeline "
        "file's folder (paths are relative to it, links followed)",
    ]


def test_a_dockerfile_outside_the_repository_is_refused(write_config: WriteConfig) -> None:
    """`dockerfile: ../../etc/hostname` would have this machine's file read and sent as the
    Dockerfile: an error naming the dockerfile key, on its line."""
    escape = "../" * 20 + "etc/hostname"
    path = write_config(f"""\
        version: 1
        services:
          api:
            type: application
            build:
              context: .
              dockerfile: {escape}
        """)
    assert problems(path) == [
        f"{path}:7: services.api.build.dockerfile: {OUTSIDE}: '{escape}' leads outside the "
        "pipeline file's folder (paths are relative to it, links followed)"
    ]


def test_links_are_followed_before_a_build_path_is_checked(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """A committed link `api -> /etc` used as a context, or a Dockerfile that links to
    /etc/hostname, is refused; links that stay inside the repository are fine."""
    (tmp_path / "api").symlink_to("/etc")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").symlink_to("/etc/hostname")
    (tmp_path / "shop").mkdir()
    (tmp_path / "current").symlink_to("shop")
    path = write_config("""\
        version: 1
        services:
          api: {type: application, build: ./api}
          web: {type: application, build: ./web}
          shop: {type: application, build: {context: ./current/../shop/., dockerfile: ../web/x}}
        """)
    assert problems(path) == [
        f"{path}:3: services.api.build.context: {OUTSIDE}: './api' leads outside the pipeline "
        "file's folder (paths are relative to it, links followed)",
        f"{path}:4: services.web.build.dockerfile: {OUTSIDE}: 'Dockerfile' leads outside the "
        "pipeline file's folder (paths are relative to it, links followed)",
    ]


def test_build_paths_inside_the_repository_load(write_config: WriteConfig, tmp_path: Path) -> None:
    """Contexts and Dockerfiles anywhere inside the pipeline file's folder are fine, however they
    are spelled, existing yet or not (a missing folder is the build's to report)."""
    (tmp_path / "docker").mkdir()
    (tmp_path / "current").symlink_to("docker")
    path = write_config("""\
        version: 1
        services:
          api: {type: application, build: {context: ./api/../api, dockerfile: ../docker/api}}
          web: {type: application, build: ./current}
          all: {type: application, build: .}
        """)
    assert set(load_config(path).services) == {"api", "web", "all"}


def test_validate_reports_a_build_path_outside_the_repository(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """`deploy-pipeline validate` says it like any other problem of the file, exit 2."""
    path = one_service(write_config, "{type: job, build: ../elsewhere}")
    code, _, err = validate(path, capsys)
    assert code == 2
    assert f"{path}:3: services.api.build.context: {OUTSIDE}: '../elsewhere'" in err


# --- a pull request's file merged with the operator's (trust.py) ----------------------------

OPERATORS_FILE = """\
    version: 1
    registry: registry.example.com/acme
    targets: {eu: {kind: kubernetes, context: eu-1}}
    services:
      api: {type: application, build: ./api, secrets: [DATABASE_URL]}
    environments: {staging: {target: eu}}
    previews: {from: staging}
    """


def test_a_pull_requests_services_run_where_the_operators_file_says(
    write_config: WriteConfig,
) -> None:
    """The merge keeps the PR's stages, services and defaults, takes registry, targets,
    environments and previews from the operator's file, and names the keys it overruled."""
    operator = load_config(write_config(OPERATORS_FILE, "operator.yml"))
    proposed = load_config(
        write_config("""\
            version: 1
            registry: evil.example.com/x
            defaults: {parallelism: 2}
            stages: [one, two]
            targets: {eu: {kind: kubernetes, context: production}}
            services:
              api: {type: application, build: ./api, secrets: [DATABASE_URL], stage: two}
              web: {type: container, image: nginx:1.28, stage: one}
            environments: {staging: {target: eu}}
            previews: {from: staging, name: "x-{number}"}
            """)
    )
    merged = merge_pull_request(proposed, operator)
    pipeline = merged.pipeline
    assert (pipeline.stages, set(pipeline.services)) == (("one", "two"), {"api", "web"})
    assert pipeline.services["api"].secrets == ("DATABASE_URL",)
    assert pipeline.defaults.parallelism == 2
    assert pipeline.registry == "registry.example.com/acme"
    assert pipeline.targets == operator.targets
    assert pipeline.environments == operator.environments
    assert pipeline.previews == operator.previews
    assert merged.ignored == ("registry", "targets", "previews")  # environments: the same


def test_a_pull_request_that_leaves_out_the_operators_keys_is_told_nothing(
    write_config: WriteConfig,
) -> None:
    """A PR's file without targets, environments or previews runs on the operator's, quietly;
    a service dropping a granted secret is fine."""
    operator = load_config(write_config(OPERATORS_FILE, "operator.yml"))
    proposed = load_config(write_config("version: 1\nservices: {api: {type: job, image: x}}\n"))
    merged = merge_pull_request(proposed, operator)
    assert merged.ignored == ()
    assert merged.pipeline.targets == operator.targets
    assert merged.pipeline.services["api"].secrets == ()


def test_a_pull_request_naming_a_secret_not_granted_is_refused_on_its_line(
    write_config: WriteConfig,
) -> None:
    """Each secret the operator's file does not grant to the service of the same name is a
    located error naming it and what is granted; a service the operator lacks is granted none."""
    operator = load_config(write_config(OPERATORS_FILE, "operator.yml"))
    path = write_config("""\
        version: 1
        services:
          api: {type: application, build: ./api, secrets: [DATABASE_URL, GITHUB_TOKEN]}
          web:
            type: container
            image: nginx
            secrets:
              - DATABASE_URL
        """)
    with pytest.raises(ConfigErrors) as caught:
        merge_pull_request(load_config(path), operator)
    advice = (
        "a pull request's service gets only the secrets the receiver's own file names for the "
        "service of the same name"
    )
    assert [str(e) for e in caught.value.errors] == [
        f"{path}:3: services.api.secrets[1]: 'GITHUB_TOKEN' is not granted to 'api' by the "
        f"receiver's pipeline file (granted: DATABASE_URL); {advice}",
        f"{path}:8: services.web.secrets[0]: 'DATABASE_URL' is not granted to 'web' by the "
        f"receiver's pipeline file (granted: none); {advice}",
    ]
