"""Releases and `history` on the simulated target, as a user meets them (DESIGN.md §9, §10):
a release after each deploy that succeeds, the untouched services carried over, the failed
deploys listed with no release, the commit, the settings without secrets, text and JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy_pipeline.cli import main
from deploy_pipeline.operation import Operation, Request
from deploy_pipeline.runner import Cancel

PIPELINE = """
version: 1
stages: [data, apps]
targets:
  sim: {{kind: simulated, fail: {fail}}}
services:
  db: {{type: database, image: postgres:16, stage: data}}
  api: {{type: application, build: ./api, stage: apps, replicas: 2,
        env: {{LOG_LEVEL: info}}, secrets: [API_TOKEN]}}
  web: {{type: container, image: nginx:1.27, stage: apps}}
  report: {{type: job, build: ./api, schedule: "0 3 * * *", stage: apps}}
environments:
  staging: {{target: sim, skip: [report]}}
"""
TOKEN = "s3cret-token-value"
DIGEST = re.compile(r"^[a-z0-9./:-]+@sha256:[0-9a-f]{64}$")


@pytest.fixture
def config(write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    return write_config(PIPELINE.format(fail="{}"))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def history(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> Any:
    code, out, err = cli(capsys, "history", "-f", str(config), "-e", "staging", *args)
    assert code == 0, err
    return json.loads(out) if "json" in args else out


def test_a_deploy_records_a_release_of_every_service_by_digest_without_secrets(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a deploy, `history --format json` has release 1 with the run, the time, each
    deployed service's image by digest, target, env and replicas; the secret is nowhere."""
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    code, out, _ = cli(capsys, "history", "-f", str(config), "-e", "staging", "--format", "json")
    assert code == 0
    assert TOKEN not in out
    doc = json.loads(out)
    assert doc["environment"] == "staging"
    [rel] = doc["releases"]
    assert {k: rel[k] for k in ("id", "run", "action", "commit", "source", "rolled_back_to")} == {
        "id": 1,
        "run": 1,
        "action": "deploy",
        "commit": None,
        "source": None,
        "rolled_back_to": None,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rel["finished"])
    assert sorted(rel["services"]) == ["api", "db", "web"]  # report is skipped in staging
    api = rel["services"]["api"]
    assert DIGEST.match(api["image"]), api
    assert api["target"] == "sim"
    assert api["env"] == {"LOG_LEVEL": "info"}
    assert api["replicas"] == 2
    assert rel["services"]["web"]["image"].startswith("nginx@sha256:")


def test_a_deploy_of_one_service_carries_the_others_over(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second deploy of only `web` makes release 2 holding every service: db and api as
    release 1 had them, web from the new run."""
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging", "--service", "web")[0] == 0
    second, first = history(capsys, config, "--format", "json")["releases"]
    assert (second["id"], second["run"], first["id"]) == (2, 2, 1)
    assert second["services"] == first["services"]


def test_a_failed_deploy_is_listed_failed_with_no_release(
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deploy whose web fails makes no release: history lists it first, marked failed, with
    no id and no services, then the release before it; the text says `failed`."""
    monkeypatch.setenv("API_TOKEN", TOKEN)
    good = write_config(PIPELINE.format(fail="{}"))
    assert cli(capsys, "deploy", "-f", str(good), "-e", "staging")[0] == 0
    bad = write_config(PIPELINE.format(fail="{web: deploy}"))
    assert cli(capsys, "deploy", "-f", str(bad), "-e", "staging")[0] == 1
    failed, release = history(capsys, bad, "--format", "json")["releases"]
    assert (failed["id"], failed["run"], failed["status"]) == (None, 2, "failed")
    assert "services" not in failed
    assert (release["id"], release["run"]) == (1, 1)
    lines = history(capsys, bad).splitlines()
    assert len(lines) == 2
    assert "run 2" in lines[0] and "failed" in lines[0]
    assert lines[1].startswith("v1 ") and "api=api@sha256:" in lines[1]


def test_history_text_is_one_line_per_release_newest_first_and_limited(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three deploys: the text shows v3, v2, v1 one per line; --limit 2 the newest two."""
    for _ in range(3):
        assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    lines = history(capsys, config).splitlines()
    assert [line.split()[0] for line in lines] == ["v3", "v2", "v1"]
    assert "run 3" in lines[0] and "deploy" in lines[0]
    assert len(history(capsys, config, "--limit", "2").splitlines()) == 2
    assert len(history(capsys, config, "--format", "json", "--limit", "1")["releases"]) == 1


def test_history_before_any_deploy_and_of_an_unknown_environment(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With nothing deployed history says so (exit 0); an unknown environment is exit 2 with
    the environments there are; a --limit of 0 is refused."""
    code, out, _ = cli(capsys, "history", "-f", str(config), "-e", "staging")
    assert (code, out.strip()) == (0, "staging: no releases yet (a deploy that succeeds makes one)")
    code, _, err = cli(capsys, "history", "-f", str(config), "-e", "stagin")
    assert code == 2 and "no environment named 'stagin'" in err and "staging" in err
    code, _, err = cli(capsys, "history", "-f", str(config), "-e", "staging", "--limit", "0")
    assert code == 2 and "expected a whole number from 1 up, got '0'" in err


def test_history_help_teaches_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`history --help` says what a release is and shows examples."""
    assert main(["history", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--format {text,json}" in out and "--limit N" in out
    assert "image by digest" in out and "deploy-pipeline history -e staging" in out


def test_a_release_names_the_commit_the_request_deployed(config: Path) -> None:
    """The commit a run deploys (the Action's GITHUB_SHA, a pull request's head) is the
    release's, and a rehearsal records no release."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    request = Request(config, ["staging"], "deploy", commit=sha)
    with Operation(request) as operation:
        result = operation.perform([], Cancel())
        assert result is not None and result.status == "succeeded"
        [made] = operation.releases
        assert (made.id, made.commit, made.target) == (1, sha, "sim")
    with Operation(Request(config, ["staging"], "deploy", dry_run=True)) as rehearsal:
        rehearsal.perform([], Cancel())
        assert rehearsal.releases == []


def test_stop_and_restart_make_no_release(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only deploys make releases: a restart and a stop after one leave history at v1."""
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    assert cli(capsys, "restart", "-f", str(config), "-e", "staging")[0] == 0
    assert cli(capsys, "stop", "-f", str(config), "-e", "staging")[0] == 0
    assert [r["id"] for r in history(capsys, config, "--format", "json")["releases"]] == [1]


def test_a_release_records_the_settings_the_service_runs_with_in_its_environment(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The settings a release keeps are the environment's (DESIGN.md §8 precedence and
    substitutions made, `${url:front}` as front's deploy reported it), not the service's own."""
    config = write_config("""
version: 1
stages: [edge, apps]
targets: {sim: {kind: simulated}}
services:
  front: {type: container, image: nginx:1.27, port: 80, stage: edge}
  api: {type: application, build: ./api, stage: apps, env: {LOG_LEVEL: info}}
environments:
  staging:
    target: sim
    env: {LOG_LEVEL: debug}
    services: {api: {replicas: 3, env: {FRONT: '${url:front}', NAME: '${environment}'}}}
""")
    assert cli(capsys, "deploy", "-f", str(config), "-e", "staging")[0] == 0
    [rel] = history(capsys, config, "--format", "json")["releases"]
    api = rel["services"]["api"]
    assert api["replicas"] == 3
    assert api["env"] == {
        "LOG_LEVEL": "debug",
        "FRONT": "http://front.staging.sim.simulated",
        "NAME": "staging",
    }
