"""Settings per environment (DESIGN.md §8): the keys and their errors, precedence, the `${…}`
substitutions, what `plan` shows, clones and previews, and what the runner hands a backend."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_pipeline.backends.base import MemoryState, StepContext, StepResult
from deploy_pipeline.backends.simulated import SimulatedBackend
from deploy_pipeline.cli import main
from deploy_pipeline.config import load_config, parse_config
from deploy_pipeline.errors import ConfigErrors
from deploy_pipeline.events import EventBus
from deploy_pipeline.model import EnvironmentRecord, Service, Target
from deploy_pipeline.plan import environments, plan_json, plan_run, plan_runs, plan_text
from deploy_pipeline.runner import Run
from tests.support.runner import harness

PIPELINE = """\
version: 1
stages: [data, backend, frontend]
targets: {sim: {kind: simulated}}
services:
  db: {type: database, image: postgres:16, port: 5432, stage: data}
  api:
    type: application
    build: ./api
    port: 8000
    stage: backend
    replicas: 2
    secrets: [TOKEN]
    env: {LOG_LEVEL: info, LAYER: service, DB_URL: "${url:db}", TOKEN: not-shown}
  web: {type: container, image: nginx:1.27, port: 80, stage: frontend, public: true}
environments:
  staging:
    target: sim
    env: {LOG_LEVEL: debug, LAYER: environment, NAME: "${environment}"}
    services:
      api:
        replicas: 1
        timeout: 2m
        resources: {cpu: 250m}
        env: {LAYER: api-in-staging, REV: "${commit}", PR: "[${pull_request}]", LIT: "$${url:x}"}
      web: {image: nginx:1.28, replicas: 3}
  production: {target: sim, production: true, services: {api: {replicas: 4}}}
previews: {from: staging, env: {PREVIEW: "true", LOG_LEVEL: trace}}
"""


def problems(write_config: Callable[[str], Path], text: str) -> list[str]:
    path = write_config(text)
    with pytest.raises(ConfigErrors) as caught:
        load_config(path)
    return [str(e).removeprefix(f"{path}:") for e in caught.value.errors]


def service(
    env_name: str, name: str, records: dict[str, EnvironmentRecord] | None = None
) -> Service:
    pipeline = parse_config(PIPELINE)
    plan = plan_run(pipeline, environments(pipeline, records or {})[env_name], "deploy")
    return next(
        p.service for sp in plan.targets[0].stages for p in sp.services if p.service.name == name
    )


# --- errors ------------------------------------------------------------------------------------

BASE = """\
version: 1
stages: [data, backend]
services:
  db: {type: database, image: postgres:16, port: 5432, stage: data}
  api: {type: application, build: ./api, port: 8000, stage: backend}
  web: {type: container, image: nginx:1.27, port: 80, stage: backend}
environments:
  staging:
"""


def test_a_name_under_services_that_is_no_service_is_an_error_at_its_line(
    write_config: Callable[[str], Path],
) -> None:
    """environments.X.services.NAME for an unknown NAME names the line, the key and the services."""
    found = problems(write_config, BASE + "    services:\n      wbe: {replicas: 2}\n")
    assert found == [
        "10: environments.staging.services.wbe: no service named 'wbe'; did you mean 'web'? "
        "The services are: db, api, web"
    ]


def test_an_image_for_a_built_service_is_an_error(write_config: Callable[[str], Path]) -> None:
    """Only prebuilt services take an image per environment; a built one is named by its content."""
    found = problems(write_config, BASE + "    services: {api: {image: 'api:1'}}\n")
    assert found == [
        "9: environments.staging.services.api.image: 'api' is built from the repo ('./api'), its "
        "image is named by its content; only prebuilt services (with `image:`) take an image "
        "per environment"
    ]


def test_replicas_for_a_database_in_an_environment_is_an_error(
    write_config: Callable[[str], Path],
) -> None:
    """Replicas per environment follow the service rule: only long-running services have them."""
    found = problems(write_config, BASE + "    services: {db: {replicas: 2}}\n")
    assert found == [
        "9: environments.staging.services.db.replicas: only containers and applications have "
        "replicas"
    ]


EXPECTED = (
    "expected ${environment}, ${pull_request}, ${commit} or ${url:SERVICE} "
    "(write $${ for a literal ${)"
)


def test_unknown_and_unclosed_substitutions_are_errors_with_line_and_key_path(
    write_config: Callable[[str], Path],
) -> None:
    """`${…}` with anything but the four substitutions, or never closed, is located exactly."""
    found = problems(
        write_config,
        BASE
        + "    env:\n      A: '${environmnet}'\n      B: 'x ${commit'\n"
        + "previews: {from: staging, env: {C: '${URL:db}'}}\n",
    )
    assert found == [
        f"10: environments.staging.env.A: unknown substitution '${{environmnet}}'; {EXPECTED}",
        "11: environments.staging.env.B: a '${' with no closing '}' in 'x ${commit'; " + EXPECTED,
        f"12: previews.env.C: unknown substitution '${{URL:db}}'; {EXPECTED}",
    ]


def test_a_url_of_the_same_or_a_later_stage_is_an_error_naming_both(
    write_config: Callable[[str], Path],
) -> None:
    """`${url:SERVICE}` must name a service of an earlier stage: same or later names both stages."""
    found = problems(
        write_config,
        BASE.replace("port: 5432, stage: data}", "port: 5432, stage: data, env: {W: '${url:web}'}}")
        + "    services: {api: {env: {W: '${url:web}', D: '${url:db}', G: '${url:ghost}'}}}\n",
    )
    assert found == [
        "4: services.db.env.W: ${url:web}: 'db' (stage 'data') names the URL of 'web' (stage "
        "'backend'), which deploys in a later stage; only a service of an earlier stage has its "
        "URL by then: move 'web' to an earlier stage",
        "9: environments.staging.services.api.env.W: ${url:web}: 'api' (stage 'backend') names "
        "the URL of 'web' (stage 'backend'), which deploys in the same stage; only a service of "
        "an earlier stage has its URL by then: move 'web' to an earlier stage",
        "9: environments.staging.services.api.env.G: no service named 'ghost'; "
        "the services are: db, api, web",
    ]


def test_an_environment_wide_url_reaches_that_service_too(
    write_config: Callable[[str], Path],
) -> None:
    """An environment's `env` goes to every service, so its `${url:db}` would reach db itself."""
    found = problems(write_config, BASE + "    env: {D: '${url:db}'}\n")
    assert found == [
        "9: environments.staging.env.D: ${url:db}: 'db' cannot use its own URL; only a service "
        "of an earlier stage has its URL when it deploys"
    ]


# --- precedence, substitutions, clones and previews ---------------------------------------------


def test_precedence_is_service_then_environment_then_environment_service() -> None:
    """LAYER comes from the environment's api settings, LOG_LEVEL from the environment, and
    replicas, timeout, resources and a prebuilt image from the environment's overrides."""
    api = service("staging", "api")
    env = dict(api.env)
    assert (env["LAYER"], env["LOG_LEVEL"]) == ("api-in-staging", "debug")
    assert (api.replicas, api.timeout, dict(api.resources)) == (1, 120.0, {"cpu": "250m"})
    web = service("staging", "web")
    assert (web.image, web.replicas, dict(web.env)["LAYER"]) == ("nginx:1.28", 3, "environment")
    prod = service("production", "api")
    assert (prod.replicas, dict(prod.env)["LAYER"]) == (4, "service")


def test_substitutions_in_the_plan() -> None:
    """${environment}, ${pull_request} (empty outside previews), ${commit} and $${ resolve; a URL
    not known before the run is shown as written."""
    pipeline = parse_config(PIPELINE)
    plan = plan_run(pipeline, environments(pipeline, {})["staging"], "deploy", commit="abc123")
    [api] = plan_json(plan)["targets"][0]["stages"][1]["services"]  # type: ignore[index]
    assert api["env"] == {
        "LOG_LEVEL": "debug",
        "LAYER": "api-in-staging",
        "DB_URL": "${url:db}",
        "NAME": "staging",
        "REV": "abc123",
        "PR": "[]",
        "LIT": "${url:x}",
    }
    assert api["replicas"] == 1
    assert "TOKEN" not in api["env"]  # a secret's name is never shown, even with an env value


def test_clones_and_previews_start_from_their_source_and_previews_add_their_env() -> None:
    """A clone of staging runs staging's settings; a preview also gets previews.env on top of the
    environment's env, and its pull-request number."""
    records = {
        "demo": EnvironmentRecord("demo", "clone", "staging"),
        "pr-7": EnvironmentRecord("pr-7", "preview", "staging", pull_request=7),
    }
    demo = service("demo", "api", records)
    assert (demo.replicas, dict(demo.env)["LAYER"], dict(demo.env)["LOG_LEVEL"]) == (
        1,
        "api-in-staging",
        "debug",
    )
    assert "PREVIEW" not in dict(demo.env)
    pipeline = parse_config(PIPELINE)
    plan = plan_run(pipeline, environments(pipeline, records)["pr-7"], "deploy")
    [api] = plan_json(plan)["targets"][0]["stages"][1]["services"]  # type: ignore[index]
    assert api["env"]["PREVIEW"] == "true" and api["env"]["LOG_LEVEL"] == "trace"
    assert (api["env"]["NAME"], api["env"]["PR"], api["replicas"]) == ("pr-7", "[7]", 1)


# --- plan --------------------------------------------------------------------------------------


def test_plan_text_shows_a_compact_line_of_settings_per_service() -> None:
    """Under each service a line with its replicas (long-running services) and resolved env."""
    pipeline = parse_config(PIPELINE)
    text = plan_text(plan_run(pipeline, environments(pipeline, {})["production"], "deploy"))
    assert "         env -\n" in text  # db: no replicas (a database), no env
    assert "         replicas 4 · env LOG_LEVEL=info, LAYER=service, DB_URL=${url:db}\n" in text
    assert text.endswith("         replicas 1 · env -")  # web


def test_plan_json_from_the_cli_adds_env_and_replicas(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan --format json` keeps its fields and adds each service's env (no secrets), replicas."""
    path = write_config(PIPELINE)
    assert main(["plan", "-f", str(path), "-e", "staging", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    web = doc["targets"][0]["stages"][2]["services"][0]
    assert web == {
        "name": "web",
        "type": "container",
        "build": False,
        "env": {"LOG_LEVEL": "debug", "LAYER": "environment", "NAME": "staging"},
        "replicas": 3,
    }


# --- the run ------------------------------------------------------------------------------------


def test_the_runner_hands_the_backend_resolved_settings_with_an_earlier_stages_url() -> None:
    """The deploy step gets the environment's env with `${url:db}` as db's deploy reported it,
    and the environment's replicas; the secret stays apart from the env."""
    seen: dict[str, Service] = {}

    def db_deploy(ctx: StepContext) -> StepResult:
        return StepResult(url="tcp://127.0.0.1:15432")

    def api_deploy(ctx: StepContext) -> None:
        seen["api"] = ctx.service

    h = harness(
        PIPELINE,
        ("staging",),
        hooks={"db.deploy": db_deploy, "api.deploy": api_deploy},
        secrets={"api": {"TOKEN": "s3cr3t-value"}},
    )
    assert h.execute().status == "succeeded"
    env = dict(seen["api"].env)
    assert env["DB_URL"] == "tcp://127.0.0.1:15432"
    assert (env["NAME"], env["LIT"], seen["api"].replicas) == ("staging", "${url:x}", 1)
    assert "s3cr3t-value" not in env.values()


def test_a_url_no_target_can_tell_is_empty() -> None:
    """A service-level deploy of api alone, on a target that cannot say db's URL, gets an empty
    `${url:db}`, not the text as written."""
    seen: dict[str, Service] = {}

    def api_deploy(ctx: StepContext) -> None:
        seen["api"] = ctx.service

    h = harness(PIPELINE, ("staging",), hooks={"api.deploy": api_deploy}, services=["api"])
    assert h.execute().status == "succeeded"
    assert dict(seen["api"].env)["DB_URL"] == ""


class Recording(SimulatedBackend):
    """The simulated target, remembering the service each deploy step was handed."""

    def __init__(self, target: Target, state: MemoryState) -> None:
        super().__init__(target, state)
        self.deployed: dict[str, Service] = {}

    def deploy(self, ctx: StepContext) -> StepResult:
        self.deployed[ctx.service.name] = ctx.service
        return super().deploy(ctx)


def test_a_url_of_a_service_deployed_earlier_comes_from_the_target() -> None:
    """A service-level deploy of api gets `${url:web}` from what the target says web has (it was
    deployed by an earlier run), not empty."""
    pipeline = parse_config("""\
version: 1
stages: [front, back]
targets: {sim: {kind: simulated}}
services:
  web: {type: container, image: nginx, port: 80, stage: front}
  api: {type: container, image: api, stage: back, env: {WEB: "${url:web}"}}
environments: {staging: {target: sim}}
""")
    backend = Recording(pipeline.targets["sim"], MemoryState())
    envs = environments(pipeline, {})

    def run(services: list[str]) -> None:
        plans = plan_runs(pipeline, envs, ["staging"], "deploy", services)
        assert Run(plans, {"sim": backend}, EventBus([], None)).execute().status == "succeeded"

    run([])
    assert dict(backend.deployed["api"].env) == {"WEB": "http://web.staging.sim.simulated"}
    backend.deployed.clear()
    run(["api"])
    assert "web" not in backend.deployed
    assert dict(backend.deployed["api"].env) == {"WEB": "http://web.staging.sim.simulated"}


def test_the_schema_knows_the_settings_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """`deploy-pipeline schema` accepts every settings key of this file and, like `validate`,
    refuses an unknown key under an environment's service and a non-integer replicas there."""
    import jsonschema
    import yaml

    assert main(["schema"]) == 0
    validator = jsonschema.Draft202012Validator(json.loads(capsys.readouterr().out))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(PIPELINE))] == []
    bad = yaml.safe_load(PIPELINE)
    bad["environments"]["staging"]["services"]["web"] = {"replics": 2, "replicas": "two"}
    assert sorted(e.message for e in validator.iter_errors(bad)) == [
        "'two' is not valid under any of the given schemas",
        "Additional properties are not allowed ('replics' was unexpected)",
    ]


def test_the_cli_takes_the_commit_from_the_files_git_checkout(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`${commit}` is `git rev-parse HEAD` of the pipeline file's folder when it is a checkout,
    and empty when it is not."""
    import subprocess

    path = write_config(PIPELINE)

    def rev() -> str:
        assert main(["plan", "-f", str(path), "-e", "staging", "--format", "json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        return str(doc["targets"][0]["stages"][1]["services"][0]["env"]["REV"])

    assert rev() == ""
    git = ["git", "-C", str(path.parent), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "pipeline"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert rev() == head


def test_an_environments_image_and_env_names_are_single_line_text(
    write_config: Callable[[str], Path],
) -> None:
    """An image or env name with a line break in an environment's settings is refused as the
    service's own would be (it reaches logs and summaries)."""
    found = problems(
        write_config,
        BASE + '    env: {"A\\nB": x}\n    services: {web: {image: "nginx\\n:1"}}\n',
    )
    assert found == [
        "9: environments.staging.env['A\\nB']: expected single-line printable text (no line "
        "breaks, tabs or control characters), got 'A\\nB'",
        "10: environments.staging.services.web.image: expected single-line printable text (no "
        "line breaks, tabs or control characters), got 'nginx\\n:1'",
    ]
