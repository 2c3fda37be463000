"""`promote` and `rollback` on the simulated target, as a user meets them (DESIGN.md §10): the
images move and the settings stay (promote), images and settings come back (rollback), no build
or test step, stage order, the release they make, what they keep, and every refusal with the
sentence a user reads, nothing touched."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy_pipeline.cli import main

PIPELINE = """
version: 1
stages: [data, apps, edge]
targets:
  sim: {{kind: simulated, fail: {fail}}}
services:
  db: {{type: database, image: postgres:16, stage: data}}
  api:
    type: application
    build: {{context: ./api, args: {{VERSION: "{version}"}}}}
    test: [./selftest]
    stage: apps
    env: {{LOG_LEVEL: info, WHERE: "${{environment}}", LITERAL: "$${{not-a-sub}}"}}
  {extra}
  web: {{type: container, image: nginx:1.27, port: 80, public: true, stage: edge}}
environments:
  staging: {{target: sim, env: {{TIER: staging}}, services: {{api: {{replicas: 1}}}}}}
  production: {{target: sim, env: {{TIER: prod}}, services: {{api: {{replicas: 4}}}}}}
"""
WORKER = "worker: {type: application, build: ./worker, stage: apps}"


@pytest.fixture
def shop(write_config: Callable[[str], Path]) -> Callable[..., Path]:
    def write(version: str = "1", fail: str = "{}", extra: str = "") -> Path:
        return write_config(PIPELINE.format(version=version, fail=fail, extra=extra))

    return write


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def events(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code, out, _err = cli(capsys, *args, "--events", "jsonl")
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def releases(capsys: pytest.CaptureFixture[str], config: Path, env: str) -> list[dict[str, Any]]:
    code, out, err = cli(capsys, "history", "-f", str(config), "-e", env, "--format", "json")
    assert code == 0, err
    listed: list[dict[str, Any]] = json.loads(out)["releases"]
    return listed


def image(release: dict[str, Any], service: str) -> str:
    return str(release["services"][service]["image"])


def test_promote_moves_the_images_and_keeps_the_environments_own_settings(
    shop: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """promote --from staging -e production deploys staging's images by digest with
    production's settings (TIER, replicas, ${environment}), runs only deploy steps in stage
    order, and records release 1 of production with source staging and staging's commit."""
    config = shop()
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    [staged] = releases(capsys, config, "staging")
    code, seen = events(
        capsys, "promote", "-f", str(config), "--from", "staging", "-e", "production"
    )
    assert code == 0
    assert {e["phase"] for e in seen} == {"deploy", "run"}  # no build, no test
    started = [e["service"] for e in seen if e["status"] == "started"]
    assert started.index("db") < started.index("api") < started.index("web")
    [made] = releases(capsys, config, "production")
    assert (made["id"], made["action"], made["source"], made["rolled_back_to"]) == (
        1,
        "promote",
        "staging",
        None,
    )
    for name in ("db", "api", "web"):
        assert image(made, name) == image(staged, name)
    api = made["services"]["api"]
    assert api["replicas"] == 4
    assert api["env"] == {
        "LOG_LEVEL": "info",
        "WHERE": "production",
        "LITERAL": "${not-a-sub}",
        "TIER": "prod",
    }
    assert staged["services"]["api"]["env"]["TIER"] == "staging"


def test_promote_says_release_and_source_at_the_end_and_in_history_text(
    shop: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary's last line names the release made and where its images came from; the
    history line says `promote from staging`."""
    config = shop()
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    code, out, err = cli(
        capsys, "promote", "-f", str(config), "--from", "staging", "-e", "production"
    )
    assert code == 0, err
    assert "✔ promote succeeded" in out
    assert "release v1 of production on sim: promoted from staging" in out
    _, text, _ = cli(capsys, "history", "-f", str(config), "-e", "production")
    assert text.startswith("v1 ") and "promote from staging" in text


def test_rollback_restores_the_images_and_the_settings_of_the_release_before(
    shop: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """After v1 and a v2 that changed the API's image and its env, rollback runs v1's image and
    v1's env again (not the file's), in deploy steps only, and records v3 rolled back to 1."""
    first = shop(version="1")
    assert cli(capsys, "deploy", "-f", str(first), "-e", "staging")[0] == 0
    second = shop(version="2").read_text().replace("LOG_LEVEL: info", "LOG_LEVEL: debug")
    first.write_text(second)
    assert cli(capsys, "deploy", "-f", str(first), "-e", "staging")[0] == 0
    v2, v1 = releases(capsys, first, "staging")
    assert image(v2, "api") != image(v1, "api")
    code, seen = events(capsys, "rollback", "-f", str(first), "-e", "staging")
    assert code == 0
    assert {e["phase"] for e in seen} == {"deploy", "run"}
    v3 = releases(capsys, first, "staging")[0]
    assert (v3["id"], v3["action"], v3["rolled_back_to"]) == (3, "rollback", 1)
    assert v3["services"] == v1["services"]
    assert v3["services"]["api"]["env"]["LITERAL"] == "${not-a-sub}"  # not read again


def test_a_rollback_sticks_until_the_next_deploy(
    shop: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """After a rollback to v1, a deploy of web alone carries the rolled-back API over (nothing
    re-applies v2), and rollback --to 2 goes forward to v2's image again."""
    config = shop(version="1")
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    config.write_text(shop(version="2").read_text())
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    assert cli(capsys, "rollback", "-f", str(config), "-e", "staging")[0] == 0
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging", "--service", "web")[0] == 0
    v4, v3, v2, v1 = releases(capsys, config, "staging")
    assert image(v4, "api") == image(v3, "api") == image(v1, "api") != image(v2, "api")
    assert cli(capsys, "rollback", "-f", str(config), "-e", "staging", "--to", "2")[0] == 0
    v5 = releases(capsys, config, "staging")[0]
    assert (v5["rolled_back_to"], image(v5, "api")) == (2, image(v2, "api"))


def test_a_service_the_source_release_lacks_keeps_what_it_runs_and_is_named(
    shop: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker added to the file after staging's release is not in it: promote leaves
    production's worker as it runs, says so in its skipped event, and the new release carries
    production's worker over."""
    config = shop()
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    config.write_text(shop(extra=WORKER).read_text())
    assert cli(capsys, "deploy", "-f", str(config), "-e", "production")[0] == 0
    [before] = releases(capsys, config, "production")
    code, seen = events(
        capsys, "promote", "-f", str(config), "--from", "staging", "-e", "production"
    )
    assert code == 0
    [kept] = [e for e in seen if e["service"] == "worker"]
    assert kept["status"] == "skipped"
    assert kept["message"] == "keeps what it runs: not in staging's release v1"
    made = releases(capsys, config, "production")[0]
    assert made["services"]["worker"] == before["services"]["worker"]


def test_a_failed_promotion_makes_no_release_and_history_says_failed(
    shop: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """When web's deploy fails during a promotion, production gets no release: history lists
    the promotion failed with no id; exit code 1."""
    config = shop()
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    config.write_text(shop(fail="{web: deploy}").read_text())
    code, _, _ = cli(capsys, "promote", "-f", str(config), "--from", "staging", "-e", "production")
    assert code == 1
    [failed] = releases(capsys, config, "production")
    assert (failed["id"], failed["action"], failed["status"]) == (None, "promote", "failed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["rollback", "-e", "staging"],
            "error: staging has no release to roll back: nothing has been deployed there "
            "successfully yet, so there is nothing earlier to go back to",
        ),
        (
            ["promote", "--from", "production", "-e", "staging"],
            "error: production has no release to promote: nothing has been deployed there "
            "successfully yet. Deploy it first (deploy-pipeline deploy -e production), then "
            "promote",
        ),
    ],
)
def test_nothing_to_move_is_exit_2_with_what_to_do(
    shop: Callable[..., Path], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Rollback with no release and promote from an environment with none: exit 2, the
    sentence, and no run recorded."""
    config = shop()
    code, _, err = cli(capsys, *args, "-f", str(config))
    assert (code, err.strip()) == (2, message)
    assert releases(capsys, config, "staging") == []


def test_rollback_refusals_leave_the_environment_as_it_was(
    shop: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """With one release, rollback says there is nothing earlier; --to an unknown id lists the
    releases there are; --to 0 and promote to itself are refused; history is unchanged."""
    config = shop()
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    before = releases(capsys, config, "staging")
    code, _, err = cli(capsys, "rollback", "-f", str(config), "-e", "staging")
    assert (code, err.strip()) == (
        2,
        "error: staging has only one release (v1): there is no earlier release to roll back to",
    )
    code, _, err = cli(capsys, "rollback", "-f", str(config), "-e", "staging", "--to", "7")
    assert (code, err.strip()) == (
        2,
        "error: staging has no release 7; its releases are v1 (see them with: deploy-pipeline "
        "history -e staging)",
    )
    code, _, err = cli(capsys, "rollback", "-f", str(config), "-e", "staging", "--to", "0")
    assert code == 2 and "--to: expected a whole number from 1 up, got '0'" in err
    code, _, err = cli(capsys, "promote", "-f", str(config), "--from", "staging", "-e", "staging")
    assert code == 2 and "an environment is not promoted to itself" in err
    code, _, err = cli(capsys, "promote", "-f", str(config), "--from", "stagin", "-e", "production")
    assert code == 2 and "no environment named 'stagin'; did you mean 'staging'?" in err
    assert releases(capsys, config, "staging") == before


def test_help_teaches_promote_and_rollback(capsys: pytest.CaptureFixture[str]) -> None:
    """Both commands' --help say what moves and what stays, and show examples."""
    assert main(["promote", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--from SOURCE" in out and "settings stay with their environment" in out
    assert "deploy-pipeline promote --from staging -e production" in out
    assert main(["rollback", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--to RELEASE" in out and "the release before the latest" in out
