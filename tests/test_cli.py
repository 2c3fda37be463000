"""The command line as a user meets it: help, plan, rehearsals, JSON lines, exit codes, the
environment commands, and the lock between two real processes (DESIGN.md §5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_pipeline.cli import main
from tests.support.eventually import eventually

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
    """`import deploy_pipeline`, `--help` and a rehearsal on a simulated target load no docker,
    kubernetes or github; the rehearsal of a docker target loads docker alone (it asks the
    engine which images it would reuse)."""
    loaded = "sorted(m for m in ('docker', 'kubernetes', 'github') if m in sys.modules)"
    code = (
        "import sys, deploy_pipeline, deploy_pipeline.cli as c\n"
        "c.main(['--help'])\n"
        f"c.main(['deploy', '-f', {str(SHOP)!r}, '-e', 'rehearsal', '--dry-run',"
        " '--events', 'jsonl'])\n"
        f"print('LOADED', {loaded})\n"
        f"c.main(['deploy', '-f', {str(SHOP)!r}, '-e', 'staging', '--dry-run',"
        " '--events', 'jsonl'])\n"
        f"print('THEN', {loaded})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    said = [line for line in out.stdout.splitlines() if line.startswith(("LOADED", "THEN"))]
    assert said == ["LOADED []", "THEN ['docker']"]


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
                            {
                                "name": "api",
                                "type": "application",
                                "build": False,
                                "env": {},
                                "replicas": 1,
                            },
                            {
                                "name": "web",
                                "type": "container",
                                "build": False,
                                "env": {},
                                "replicas": 1,
                            },
                        ],
                    },
                    {
                        "name": "data",
                        "services": [
                            {
                                "name": "db",
                                "type": "database",
                                "build": False,
                                "env": {},
                                "replicas": 1,
                            }
                        ],
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


def test_a_clone_name_with_a_trailing_line_break_is_refused(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`env clone staging $'zz\\n'` exits 2 with one escaped line: names must match whole."""
    path = str(write_config(sim()))
    assert main(["env", "clone", "staging", "zz\n", "-f", path]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: environment names are lowercase letters, digits and '-' (at most 63), got 'zz\\n'\n"
    )
    assert main(["env", "list", "--format", "json", "-f", path]) == 0
    listed = json.loads(capsys.readouterr().out)["environments"]
    assert [e["name"] for e in listed] == ["staging"]


def test_the_longest_timeout_runs_and_a_longer_one_is_refused_before_running(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 7d timeout runs to the end; `defaults.timeout: 200000d` exits 2 instead of crashing."""
    week = write_config(sim().replace("stages:", "defaults: {timeout: 7d}\nstages:"))
    assert main(["deploy", "-f", str(week), "-e", "staging", "--dry-run"]) == 0
    capsys.readouterr()
    ages = write_config(sim().replace("stages:", "defaults: {timeout: 200000d}\nstages:"))
    assert main(["deploy", "-f", str(ages), "-e", "staging", "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{ages}:3: defaults.timeout: expected a timeout from 0 to 7d (like 30s, 10m, 2h or 1d), "
        "got '200000d'",
        "1 problem found; nothing was run",
    ]


def gone_reader(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a stdout whose reader has already left (as `| head -c 1` leaves)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "deploy_pipeline", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)


def test_a_reader_that_leaves_gets_no_traceback(write_config: Callable[[str], Path]) -> None:
    """`plan`, `schema` and `env list` into a closed pipe exit 0 quietly (a BrokenPipeError)."""
    path = str(write_config(sim()))
    for args in (
        ["plan", "-f", path, "-e", "staging", "--format", "json"],
        ["plan", "-f", path, "-e", "staging"],
        ["schema"],
        ["env", "list", "-f", path],
    ):
        done = gone_reader(*args)
        assert (done.returncode, done.stderr) == (0, ""), args


def test_a_run_goes_on_when_its_reader_leaves_and_keeps_its_exit_code(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A deploy whose stdout reader left runs to the end: 0 when it succeeds, 1 when it fails."""
    good = str(write_config(sim(), name="good.yml"))
    done = gone_reader("deploy", "-f", good, "-e", "staging", "--events", "jsonl")
    assert done.returncode == 0
    assert "Traceback" not in done.stderr
    assert "✔ deploy succeeded" in done.stderr  # the summary goes to stderr with jsonl
    assert main(["env", "list", "--format", "json", "-f", good]) == 0
    [staging] = json.loads(capsys.readouterr().out)["environments"]
    assert staging["status"] == "deployed"
    bad = str(write_config(sim(fail="{web: deploy}"), name="bad.yml"))
    done = gone_reader("deploy", "-f", bad, "-e", "staging")
    assert (done.returncode, done.stderr) == (1, "")


def test_plan_piped_into_head_exits_0_without_a_traceback(
    write_config: Callable[[str], Path],
) -> None:
    """The issue's `plan --format json | head -c 1`, under pipefail: `{` and a clean exit."""
    path = write_config(sim())
    command = (
        f"{sys.executable} -m deploy_pipeline plan -f {path} -e staging --format json | head -c 1"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "{", "")


def test_a_secret_under_four_characters_is_refused_before_anything_runs(
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A secret value too short to be masked in logs stops the run before it starts, exit 2."""
    path = str(write_config(sim().replace("port: 8000,", "port: 8000, secrets: [API_KEY],")))
    monkeypatch.setenv("API_KEY", "abc")
    assert main(["deploy", "-f", path, "-e", "staging", "--events", "jsonl"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: secret API_KEY (for api) is under 4 characters: too short to mask in logs; "
        "give it a longer value\n"
    )
    monkeypatch.setenv("API_KEY", "abcd")
    assert main(["deploy", "-f", path, "-e", "staging", "--events", "jsonl"]) == 0


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
    eventually(lambda: lock_holder(own_state), message="the first run to take the lock")
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
    eventually(lambda: lock_holder(own_state), message="the first run to take the lock")
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


def test_the_terminal_view_shows_names_and_messages_as_text() -> None:
    """A stage, service or target named like Rich markup, and a message with a terminal escape,
    are printed as they are: the markup is not applied and the escape never reaches the screen."""
    import dataclasses
    import io

    from rich.console import Console

    from deploy_pipeline.backends.base import StepContext, StepResult
    from deploy_pipeline.reporting.terminal import print_summary
    from tests.support.runner import harness

    def answer(ctx: StepContext) -> StepResult:
        return StepResult(message="done \x1b[2J\x1b[31mred[/]")

    result = harness(sim(), ("staging",), hooks={"db.deploy": answer}).execute()
    steps = [
        dataclasses.replace(v, service="[bold]db[/bold]", stage="[red]data", target="[i]sim")
        if v.service == "db"
        else v
        for v in result.steps
    ]
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False, highlight=False)
    print_summary(console, dataclasses.replace(result, steps=steps), "deploy")
    text = out.getvalue()
    assert "[bold]db[/bold]" in text and "[red]data" in text and "staging → [i]sim" in text
    assert "\x1b" not in text and "done \\x1b[2J\\x1b[31mred[/]" in text


def runs(state: Path) -> list[tuple[int, str]]:
    import sqlite3

    with sqlite3.connect(state) as db:
        return [(int(i), str(s)) for i, s in db.execute("SELECT id, status FROM runs ORDER BY id")]


def listed(path: str) -> dict[str, str]:
    """`env list --format json` run as a user would: environment → status."""
    out = subprocess.run(
        [sys.executable, "-m", "deploy_pipeline", "env", "list", "-f", path, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {e["name"]: e["status"] for e in json.loads(out)["environments"]}


def test_sigterm_stops_at_the_next_safe_point_reports_and_leaves_no_deploying_environment(
    write_config: Callable[[str], Path], own_state: Path
) -> None:
    """SIGTERM during a deploy is handled like Ctrl-C: the run stops at its next safe point, the
    report is printed, the run is recorded cancelled, the environment no longer reads
    `deploying`, and the exit code is 143."""
    path = str(write_config(sim(durations="{db: {deploy: 60s}}")))
    proc = cli("deploy", "-f", path, "-e", "staging")
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until db's deploy has started
        if "db deploy started" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, rest + err
    assert "db deploy cancelled" in rest and "terminated (SIGTERM)" in rest
    assert "⊘ deploy cancelled after" in rest
    assert runs(own_state) == [(1, "cancelled")]
    assert listed(path)["staging"] == "failed"


def test_a_killed_run_is_abandoned_and_its_environment_no_longer_deploying(
    write_config: Callable[[str], Path], own_state: Path
) -> None:
    """After SIGKILL (nothing can be handled), the next command that reads the state marks the
    dead process's run `abandoned` and the environment reads `failed`, not `deploying`."""
    path = str(write_config(sim(durations="{db: {deploy: 60s}}")))
    proc = cli("deploy", "-f", path, "-e", "staging")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "db deploy started" in line:
            break
    assert runs(own_state) == [(1, "running")]
    proc.kill()
    proc.communicate(timeout=30)
    assert listed(path)["staging"] == "failed"
    assert runs(own_state) == [(1, "abandoned")]


class CountingClock:
    """The store's clock, counting its readings: each try for a lock reads it once, so a test
    can wait for a waiting run to have tried N times (a counter, not a sleep)."""

    def __init__(self) -> None:
        self.readings = 0
        self.changed = threading.Condition()

    def __call__(self) -> float:
        with self.changed:
            self.readings += 1
            self.changed.notify_all()
        return time.time()

    def wait_for(self, more: int) -> None:
        with self.changed:
            target = self.readings + more
            if not self.changed.wait_for(lambda: self.readings >= target, timeout=30):
                raise AssertionError(f"the waiting run tried the lock {self.readings} times")


def test_a_superseded_run_stops_at_once_not_at_its_next_lock_renewal(
    write_config: Callable[[str], Path], own_state: Path
) -> None:
    """A run asked to stop through the store (as `--supersede` asks) is cancelled within a
    fraction of a second, long before its next lock renewal (every 10 s with the 30 s lease)."""
    from deploy_pipeline.operation import Operation, Request
    from deploy_pipeline.runner import Cancel
    from deploy_pipeline.store.state import open_store

    path = write_config(sim(durations="{db: {deploy: 60s}}"))
    holder = Operation(Request(path, ["staging"], "deploy"))
    cancel = Cancel()
    stopped = threading.Event()
    cancel.listeners.append(stopped.set)
    started = threading.Event()
    runner = threading.Thread(
        target=holder.perform, args=([lambda e: e.status == "started" and started.set()], cancel)
    )
    runner.start()
    try:
        assert started.wait(30), "the run never started"
        store = open_store(path)
        asked = time.monotonic()
        store.supersede("staging", 999)
        assert stopped.wait(5), "the run was not told it was superseded"
        assert time.monotonic() - asked < 2.0
        assert cancel.reason == "superseded by run 999"
        store.close()
    finally:
        cancel.set("the test ended")
        runner.join(30)
        holder.close()


def test_a_superseding_run_asks_every_holder_once_and_says_so_once(
    write_config: Callable[[str], Path], own_state: Path
) -> None:
    """While it waits, a `--supersede` run asks the run holding the environment to stop and
    says so once, however often it tries the lock; when a plain waiter takes the lock first,
    that one is asked (and told of) too; then the superseding run takes the lock."""
    from deploy_pipeline.operation import Operation, Request
    from deploy_pipeline.runner import Cancel
    from deploy_pipeline.store.state import open_store

    path = write_config(sim())
    store = open_store(path)
    store.try_lock("staging", 101)  # a run of this (live) process holds staging
    operation = Operation(Request(path, ["staging"], "deploy", supersede=True))
    clock = CountingClock()
    assert operation.workspace.store is not None
    operation.workspace.store.clock = clock
    said: list[str] = []
    entered = threading.Event()

    def supersede() -> None:
        with operation.locked(Cancel(), on_wait=said.append, poll=0.002):
            entered.set()

    def asked_by(run: int) -> object:
        rows = store.query("SELECT superseded_by FROM locks WHERE run_id = ?", (run,))
        return rows[0][0] if rows else None

    thread = threading.Thread(target=supersede)
    thread.start()
    try:
        clock.wait_for(25)
        me = operation.run_id
        assert asked_by(101) == me
        # 101 lets go and a plain waiter, 102, is quicker to take the lock
        store.query("UPDATE locks SET run_id = 102, superseded_by = NULL WHERE run_id = 101")
        clock.wait_for(25)
        assert asked_by(102) == me
        store.release_lock("staging", 102)
        assert entered.wait(30), "the superseding run never took the lock"
    finally:
        thread.join(30)
        operation.close()
        store.close()
    assert said == [
        "environment staging locked by run 101, asked it to stop",
        "environment staging locked by run 102, asked it to stop",
    ]


def test_a_run_stopped_while_it_waits_leaves_the_environment_to_its_holder(
    write_config: Callable[[str], Path], own_state: Path
) -> None:
    """A run cancelled (Ctrl-C, SIGTERM) while it waits for the lock is recorded cancelled and
    does not mark the environment as its own (`deploying` with its run number)."""
    from deploy_pipeline.model import EnvironmentRecord
    from deploy_pipeline.operation import Operation, Request
    from deploy_pipeline.runner import Cancel
    from deploy_pipeline.store.state import open_store

    path = write_config(sim())
    store = open_store(path)
    store.try_lock("staging", 101)
    store.save_environment(
        EnvironmentRecord(name="staging", origin="file", status="deployed", last_run=100)
    )
    operation = Operation(Request(path, ["staging"], "deploy"))
    cancel = Cancel()
    try:
        with operation.locked(cancel, on_wait=lambda m: cancel.set("terminated (SIGTERM)")):
            assert cancel.is_set()
    finally:
        operation.close()
    rec = store.environments()["staging"]
    assert (rec.status, rec.last_run) == ("deployed", 100)
    assert (store.run(1) or {}).get("status") == "cancelled"
    store.close()
