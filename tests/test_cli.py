"""The command line as a user meets it: help, plan, rehearsals, JSON lines, exit codes, the
environment commands, and the lock between two real processes (DESIGN.md §5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop" / ".deploy-pipeline.yml"
STATUSES = {"started", "succeeded", "failed", "cancelled", "skipped", "reused"}

SIM = """
version: 1
stages: [data, apps]
targets:
  sim: {{kind: simulated, durations: {durations}, fail: {fail}}}
services:
  db: {{type: database, image: postgres:16, stage: data}}
  api: {{type: application, build: ./api, port: 8000, stage: apps}}
  web: {{type: container, image: nginx, port: 80, public: true, stage: apps}}
  report: {{type: job, build: ./api, schedule: "0 3 * * *", stage: apps}}
environments:
  staging: {{target: sim, skip: [report]}}
"""


def sim(durations: str = "{}", fail: str = "{}") -> str:
    return SIM.format(durations=durations, fail=fail)


def cli(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "deploy_pipeline", *args],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        **kw,
    )  # type: ignore[call-overload]


def until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll for a state another process reaches (a deadline, not a sleep-and-hope)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def lock_holder(state: Path) -> bool:
    import sqlite3

    if not state.exists():
        return False
    try:
        return bool(sqlite3.connect(state).execute("SELECT count(*) FROM locks").fetchone()[0])
    except sqlite3.OperationalError:
        return False


def test_help_teaches_the_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` lists every command, shows examples and the exit codes."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("validate", "schema", "plan", "deploy", "restart", "stop", "delete", "env"):
        assert command in out
    assert "deploy-pipeline deploy -e staging --dry-run" in out
    assert "130 interrupted" in out


def test_the_cli_starts_without_importing_any_engine_sdk() -> None:
    """`import deploy_pipeline`, `--help` and a rehearsal load no docker, kubernetes or github."""
    code = (
        "import sys, deploy_pipeline, deploy_pipeline.cli as c\n"
        "c.main(['--help'])\n"
        f"c.main(['deploy', '-f', {str(SHOP)!r}, '-e', 'staging', '--dry-run',"
        " '--events', 'jsonl'])\n"
        "print('LOADED', sorted(m for m in ('docker', 'kubernetes', 'github') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"


def test_a_rehearsal_of_the_example_succeeds_and_touches_nothing(
    capsys: pytest.CaptureFixture[str], own_state: Path
) -> None:
    """`deploy --dry-run` of the bundled example exits 0, says it rehearses, writes no state."""
    assert main(["deploy", "-f", str(SHOP), "-e", "staging", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "rehearsal (--dry-run)" in out
    assert "✔ deploy succeeded" in out
    assert "report deploy skipped — skipped in staging" in out
    assert not own_state.exists()


def test_events_jsonl_prints_one_contract_object_per_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--events jsonl` prints only JSON on stdout, with the contract's keys, then a run line."""
    assert main(["deploy", "-f", str(SHOP), "-e", "staging", "--dry-run", "--events", "jsonl"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert lines, "no events"
    for event in lines:
        assert {
            "ts",
            "environment",
            "target",
            "stage",
            "service",
            "phase",
            "status",
            "message",
        } <= set(event)
        assert event["status"] in STATUSES
    assert lines[-1]["phase"] == "run" and lines[-1]["status"] == "succeeded"
    assert sum(1 for e in lines if e["phase"] == "run") == 1
    api = [e for e in lines if e["service"] == "api" and e["phase"] == "deploy"]
    assert [e["status"] for e in api] == ["started", "succeeded"]
    assert api[-1]["url"].startswith("http://api.staging")
    assert "✔ deploy succeeded" in captured.err  # the summary stays off stdout


def test_a_failing_deploy_exits_1_and_says_which_service_phase_and_why(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A simulated failure of web's deploy exits 1 and names web, deploy and the reason."""
    path = write_config(sim(fail="{web: deploy}"))
    assert main(["deploy", "-f", str(path), "-e", "staging"]) == 1
    out = capsys.readouterr().out
    assert "✖ deploy failed" in out
    assert "staging/sim web deploy failed: simulated failure: target sim fails web's deploy" in out


def test_the_simulated_target_remembers_what_it_deployed_across_commands(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """restart before any deploy fails; after a deploy, stop and restart succeed; after delete,
    restart fails again."""
    path = str(write_config(sim()))
    assert main(["restart", "-f", path, "-e", "staging"]) == 1
    assert "db is not deployed in staging on target sim: deploy it first" in capsys.readouterr().out
    assert main(["deploy", "-f", path, "-e", "staging"]) == 0
    assert main(["stop", "-f", path, "-e", "staging"]) == 0
    assert main(["restart", "-f", path, "-e", "staging"]) == 0
    assert main(["delete", "-f", path, "-e", "staging"]) == 0
    capsys.readouterr()
    assert main(["restart", "-f", path, "-e", "staging"]) == 1


def test_plan_json_is_the_contract(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan --format json` prints the stages in run order with services, and skipped names."""
    path = write_config(sim())
    assert (
        main(["plan", "-f", str(path), "-e", "staging", "--action", "stop", "--format", "json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out) == {
        "environment": "staging",
        "action": "stop",
        "targets": [
            {
                "target": "sim",
                "stages": [
                    {
                        "name": "apps",
                        "services": [
                            {"name": "api", "type": "application", "build": False},
                            {"name": "web", "type": "container", "build": False},
                        ],
                    },
                    {
                        "name": "data",
                        "services": [{"name": "db", "type": "database", "build": False}],
                    },
                ],
            }
        ],
        "skipped": ["report"],
    }


def test_plan_text_shows_stages_services_and_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    """The text plan lists each stage in order with its services, and the skipped ones apart."""
    assert main(["plan", "-f", str(SHOP), "-e", "staging"]) == 0
    out = capsys.readouterr().out
    assert out.index("1. databases") < out.index("2. migrations") < out.index("4. frontend")
    assert "api              application  build ./api" in out
    assert "skipped: report" in out


def test_env_clone_skip_unskip_and_list(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A clone copies staging's skip set; skip and unskip change only the clone."""
    path = str(write_config(sim()))
    assert main(["env", "clone", "staging", "demo", "-f", path]) == 0
    assert "cloned staging → demo (skipped: report)" in capsys.readouterr().out
    assert main(["env", "skip", "demo", "web", "-f", path]) == 0
    assert main(["env", "unskip", "demo", "report", "-f", path]) == 0
    capsys.readouterr()
    assert main(["env", "list", "--format", "json", "-f", path]) == 0
    envs = {e["name"]: e for e in json.loads(capsys.readouterr().out)["environments"]}
    assert envs["demo"]["source"] == "staging"
    assert envs["demo"]["skipped"] == ["web"]
    assert envs["staging"]["skipped"] == ["report"]
    assert main(["deploy", "-f", path, "-e", "demo", "--events", "jsonl"]) == 0
    skipped = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [e["service"] for e in skipped if e["status"] == "skipped"] == ["web"]


def test_a_deleted_clone_is_no_longer_listed(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """After an environment-level delete, a clone is gone from `env list`."""
    path = str(write_config(sim()))
    main(["env", "clone", "staging", "demo", "-f", path])
    assert main(["deploy", "-f", path, "-e", "demo"]) == 0
    assert main(["delete", "-f", path, "-e", "demo"]) == 0
    capsys.readouterr()
    main(["env", "list", "-f", path])
    out = capsys.readouterr().out
    assert "demo" not in out
    assert "staging" in out


def test_bad_usage_exits_2_with_what_there_is(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown environment, service or clone name exits 2 and lists the choices."""
    path = str(write_config(sim()))
    assert main(["deploy", "-f", path, "-e", "stagin"]) == 2
    assert "no environment named 'stagin'; did you mean 'staging'?" in capsys.readouterr().err
    assert main(["deploy", "-f", path, "-e", "staging", "--service", "wbe"]) == 2
    assert "did you mean 'web'? The services are: db, api, web, report" in capsys.readouterr().err
    assert main(["env", "clone", "staging", "Bad_Name", "-f", path]) == 2
    assert "environment names are lowercase" in capsys.readouterr().err
    assert main(["deploy", "-f", path]) == 2  # -e is required


@pytest.mark.parametrize("ttl", ["soon", "nan", "-1", "\u00b3"])
def test_a_bad_lock_ttl_exits_2_naming_the_variable(
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ttl: str,
) -> None:
    """DEPLOY_PIPELINE_LOCK_TTL that is no number of seconds from 0.5 to 86400 stops a deploy
    with exit 2 and a sentence, not a traceback or a lock that never (or always) expires."""
    monkeypatch.setenv("DEPLOY_PIPELINE_LOCK_TTL", ttl)
    assert main(["deploy", "-f", str(write_config(sim())), "-e", "staging"]) == 2
    assert (
        f"DEPLOY_PIPELINE_LOCK_TTL is a number of seconds from 0.5 to 86400, got {ttl!r}"
        in capsys.readouterr().err
    )


def test_a_missing_file_says_how_to_fix_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With no pipeline file, the error names it and says to create it or pass -f."""
    assert main(["validate", "-f", str(tmp_path / "nope.yml")]) == 2
    assert "nope.yml: no such file; create it or pass -f FILE" in capsys.readouterr().err


def test_a_second_run_waits_for_the_environment_lock_then_runs(
    write_config: Callable[[str], Path], own_state: Path
) -> None:
    """While one process deploys staging, a second says it waits for run 1, then succeeds."""
    path = str(write_config(sim(durations="{db: {deploy: 2s}}")))
    first = cli("deploy", "-f", path, "-e", "staging")
    until(lambda: lock_holder(own_state), "the first run to take the lock")
    second = cli("deploy", "-f", path, "-e", "staging")
    out2, err2 = second.communicate(timeout=60)
    out1, _ = first.communicate(timeout=60)
    assert first.returncode == 0, out1
    assert second.returncode == 0, out2 + err2
    assert "waiting: environment staging locked by run 1" in out2


def test_supersede_asks_the_running_deploy_to_stop_and_takes_over(
    write_config: Callable[[str], Path], own_state: Path
) -> None:
    """`--supersede` makes the first run stop at its next safe point and say who superseded it."""
    path = str(write_config(sim(durations="{db: {deploy: 60s}}")))
    fast = {"DEPLOY_PIPELINE_LOCK_TTL": "0.6"}
    first = cli("deploy", "-f", path, "-e", "staging", env=fast)
    until(lambda: lock_holder(own_state), "the first run to take the lock")
    second = cli("deploy", "-f", path, "-e", "staging", "--service", "web", "--supersede", env=fast)
    out1, _ = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 1
    assert "db deploy cancelled" in out1 and "superseded by run 2" in out1
    assert second.returncode == 0, out2 + err2


def test_ctrl_c_stops_at_the_next_safe_point_and_exits_130(
    write_config: Callable[[str], Path],
) -> None:
    """SIGINT during a deploy cancels the running step, reports the rest cancelled, exits 130."""
    path = str(write_config(sim(durations="{db: {deploy: 60s}}")))
    proc = cli("deploy", "-f", path, "-e", "staging", "--events", "jsonl")
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until db's deploy has started
        if '"db"' in line and '"started"' in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    events = [json.loads(x) for x in rest.splitlines()]
    db = [e for e in events if e["service"] == "db"]
    assert [(e["phase"], e["status"], e["message"]) for e in db] == [
        ("deploy", "cancelled", "interrupted")
    ]
    web = [e for e in events if e["service"] == "web"]
    assert [(e["status"], e["message"]) for e in web] == [("cancelled", "not started: interrupted")]
    assert events[-1]["phase"] == "run" and events[-1]["status"] == "cancelled"
    assert "interrupted" in events[-1]["message"]


def test_python_dash_m_is_the_same_command() -> None:
    """`python -m deploy_pipeline validate` checks a file like the console script."""
    out = subprocess.run(
        [sys.executable, "-m", "deploy_pipeline", "validate", "-f", str(SHOP)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0
    assert "is valid: 6 services in 4 stages" in out.stdout
