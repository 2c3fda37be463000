"""`deploy-pipeline logs` with no engine (DESIGN.md §10): a run's events read back as the plain
lines the run printed, its errors (unknown run, another environment's run, unknown service) and
what a simulated target says of its services' output. The real targets' output is tested in
tests/backends/test_docker_logs.py and test_kubernetes_logs.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_pipeline.cli import main

EVENT_LINE = re.compile(r" *\d+\.\d\ds  ")  # how format_event starts a line
TIME = re.compile(r"\d+\.\d\ds")
SIM = """
version: 1
stages: [data, apps]
targets:
  sim: {kind: simulated, fail: {web: deploy}}
services:
  db: {type: database, image: postgres:16, stage: data}
  api: {type: container, image: api:1, port: 8000, stage: apps}
  web: {type: container, image: nginx, port: 80, stage: apps}
environments:
  staging: {target: sim}
  production: {target: sim}
"""


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Path:
    return write_config(SIM)


def untimed(line: str) -> str:
    """An event line with its times (`12.03s`, `in 0.50s`) as `…s`."""
    return TIME.sub("…s", line)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_runs_events_read_back_as_the_lines_the_run_printed(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logs --run ID` prints the run's events as the run printed them (plain lines, in order,
    the failure's message included; the times were recorded to the millisecond, so a hundredth
    may round the other way); --service keeps that service's and the run's own."""
    code, printed, _ = cli(capsys, "deploy", "-f", str(config), "-e", "staging")
    assert code == 1  # web's deploy fails on purpose
    events = [untimed(line) for line in printed.splitlines() if EVENT_LINE.match(line)]
    assert any("web deploy failed" in line for line in events)

    code, out, err = cli(capsys, "logs", "-f", str(config), "-e", "staging", "--run", "1")
    assert (code, err) == (0, "")
    assert [untimed(line) for line in out.splitlines()] == events

    code, out, _ = cli(capsys, "logs", "-f", str(config), "-e", "staging", "--run", "1",
                       "--service", "web")  # fmt: skip
    assert code == 0
    assert [untimed(line) for line in out.splitlines()] == [
        line for line in events if " web " in line or "staging: run failed" in line
    ]


def test_an_unknown_run_is_refused_with_the_latest_one_named(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown run id, and a run of another environment, exit 2 with a sentence naming the
    latest run of the environment asked for."""
    code, _, err = cli(capsys, "logs", "-f", str(config), "-e", "staging", "--run", "3")
    assert code == 2
    assert err == "error: no run 3 in this state database; no run of staging is recorded here yet\n"
    cli(capsys, "deploy", "-f", str(config), "-e", "staging")
    cli(capsys, "deploy", "-f", str(config), "-e", "production")

    code, _, err = cli(capsys, "logs", "-f", str(config), "-e", "staging", "--run", "3")
    assert (code, err) == (2, "error: no run 3 in this state database; the latest run of "
                              "staging is 1\n")  # fmt: skip
    code, _, err = cli(capsys, "logs", "-f", str(config), "-e", "staging", "--run", "2")
    assert code == 2
    assert err == (
        "error: run 2 was a run of production, not staging; the latest run of staging is 1\n"
    )


def test_numbers_past_a_database_column_are_refused_or_mean_all_not_a_traceback(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run id no database column holds is an unknown run (exit 2, a sentence), and a --tail
    or --limit that large means all, where each once ended in an OverflowError traceback or a
    datatype mismatch."""
    huge = "9" * 30
    cli(capsys, "deploy", "-f", str(config), "-e", "staging")
    code, _, err = cli(capsys, "logs", "-f", str(config), "-e", "staging", "--run", huge)
    assert code == 2
    assert err == (
        "error: no run 9223372036854775807 in this state database; the latest run of staging is 1\n"
    )
    assert (
        cli(capsys, "logs", "-f", str(config), "-e", "staging", "--run", "1", "--tail", huge)[0]
        == 0
    )
    code, out, err = cli(capsys, "history", "-f", str(config), "-e", "staging", "--limit", huge)
    assert (code, err) == (0, "")
    assert out == cli(capsys, "history", "-f", str(config), "-e", "staging")[1]  # all of it


def test_an_unknown_service_is_refused_with_the_known_ones_listed(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--service` naming no service exits 2 and lists the services, for the output and --run."""
    code, _, err = cli(capsys, "logs", "-f", str(config), "-e", "staging", "--service", "apx")
    assert code == 2
    assert (
        err == "error: no service named 'apx'; did you mean 'api'? The services are: db, api, web\n"
    )
    cli(capsys, "deploy", "-f", str(config), "-e", "staging")
    code, _, err = cli(
        capsys, "logs", "-f", str(config), "-e", "staging", "--run", "1", "--service", "nope"
    )
    assert (code, err) == (2, "error: no service named 'nope'; the services are: db, api, web\n")


def test_follow_and_run_together_are_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--follow (the services' output) with --run (a recorded run) exits 2 saying to pick one."""
    code, _, err = cli(capsys, "logs", "-f", str(config), "-e", "staging", "--run", "1", "--follow")
    assert code == 2
    assert "leave out one of them" in err


def test_a_simulated_target_says_its_services_have_no_output(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a simulated target nothing runs: each service says so on stderr, stdout stays empty,
    and the command succeeds."""
    cli(capsys, "deploy", "-f", str(config), "-e", "staging")
    code, out, err = cli(capsys, "logs", "-f", str(config), "-e", "staging", "--service", "api")
    assert (code, out) == (0, "")
    assert err == (
        "api: target sim is simulated: nothing runs there, so api has no output "
        "(a run's events and step logs are in `logs --run ID`)\n"
    )
