"""The test phase (DESIGN.md §9) as every view shows a run: the terminal's live view and summary,
the Markdown job summary, the commit status's progress, the Action's log groups and the status
page's cards. Each reads a real run of the stage runner with a tested service."""

from __future__ import annotations

import dataclasses
import io

from rich.console import Console

from deploy_pipeline.backends.base import StepContext, StepResult
from deploy_pipeline.errors import PermanentError
from deploy_pipeline.plan import environments
from deploy_pipeline.receiver.cards import RunEvents, stage_columns
from deploy_pipeline.reporting.markdown import Progress, job_summary
from deploy_pipeline.reporting.terminal import print_summary, render_steps
from deploy_pipeline.steps import RunResult
from deploy_pipeline.workflow_commands import Commands, StageGroups
from tests.support.runner import Harness, harness

TESTED = """
version: 1
stages: [first, second]
targets: {i1: {kind: simulated}}
services:
  db: {type: database, image: postgres:16, stage: first}
  api: {type: application, build: ./api, port: 8000, stage: first, test: [pytest, -q]}
  web: {type: container, image: nginx:1.27, port: 80, stage: second}
environments: {test: {target: i1}}
"""
OUTPUT = "E   assert 1 == 2\n1 failed, 11 passed in 0.41s"
FAILURE = f"api's test exited with code 1; last lines of its output:\n{OUTPUT}"


def fail(ctx: StepContext) -> None:
    raise PermanentError(FAILURE)


def passed(ctx: StepContext) -> StepResult:
    return StepResult(message="test passed; pushed api:tested", artifact="api:tested")


def text_of(result: RunResult) -> str:
    out = io.StringIO()
    print_summary(Console(file=out, width=220, force_terminal=False), result, "deploy")
    return out.getvalue()


def row(text: str, service: str) -> str:
    return next(line for line in text.splitlines() if f"│ {service} " in line)


def test_the_terminal_summary_has_a_test_column_only_when_a_service_is_tested() -> None:
    """With a tested service the summary's columns are stage, service, build, test, step, note,
    and api's row shows its build, test and deploy each done; without one there is no column."""
    text = text_of(harness(TESTED, hooks={"api.test": passed}).execute())
    header = next(line for line in text.splitlines() if "service" in line)
    assert [c.strip() for c in header.split("┃")] == [
        "stage",
        "service",
        "build",
        "test",
        "step",
        "note",
    ]
    assert row(text, "api").count("✔") == 3 and row(text, "db").count("✔") == 1
    plain = text_of(harness(TESTED.replace(", test: [pytest, -q]", "")).execute())
    header = next(line for line in plain.splitlines() if "service" in line)
    assert "test" not in header


def test_the_terminal_shows_a_failed_test_and_its_output() -> None:
    """A failed test reads `✖ failed` in its column, its output's last lines in the note, and
    the run's failure names the service's test."""
    text = text_of(harness(TESTED, hooks={"api.test": fail}).execute())
    assert "✖ failed" in row(text, "api")
    assert "1 failed, 11 passed in 0.41s" in text
    assert "  test/i1 api test failed: api's test exited with code 1" in text


def test_the_live_view_says_a_service_is_testing() -> None:
    """While api's test runs, the live view's note for api reads `testing`, its deploy pending."""
    seen: list[str] = []
    h: Harness

    def look(ctx: StepContext) -> None:
        out = io.StringIO()
        Console(file=out, width=220).print(render_steps(h.run.snapshot(), live=True))
        seen.append(row(out.getvalue(), "api"))

    h = harness(TESTED, hooks={"api.test": look})
    assert h.execute().status == "succeeded"
    assert "testing" in seen[0] and "deploy ○ pending" in seen[0]


def test_the_job_summary_has_a_test_column() -> None:
    """The Markdown table gains a test column: api's test succeeded; its failure's message shows
    in the cell when it failed."""
    h = harness(TESTED, hooks={"api.test": passed})
    summary = job_summary(h.execute(), h.run.run_plan, action="deploy")
    assert "| service | stage | status | URL | image | test | took |" in summary
    api = next(line for line in summary.splitlines() if line.startswith("| **api**"))
    assert "✅ succeeded" in api and "`api:tested`" in api
    h = harness(TESTED, hooks={"api.test": fail})
    summary = job_summary(h.execute(), h.run.run_plan, action="deploy")
    api = next(line for line in summary.splitlines() if line.startswith("| **api**"))
    assert "❌ failed: api's test exited with code 1" in api


def test_a_passed_test_does_not_count_its_service_done_in_the_commit_status() -> None:
    """The commit status's progress counts a service once its deploy ends, not its test."""
    h = harness(TESTED, hooks={"api.test": passed})
    h.execute()
    progress = Progress(h.run.run_plan)
    for event in h.events.events:
        progress(event)
        if (event.service, event.phase, event.status) == ("api", "test", "succeeded"):
            assert "i1/api" not in progress.envs["test"].done.get("first", set())
    assert "i1/api" in progress.envs["test"].done["first"]


def test_a_test_s_lines_stand_in_its_stage_s_group_which_waits_for_the_deploy() -> None:
    """In the Action's log, api's test lines are in stage first's group, and the group stays
    open until api's deploy ends (a test is not the end of a service's step)."""
    h = harness(TESTED, hooks={"api.test": passed})
    h.execute()
    out = io.StringIO()
    groups = StageGroups(Commands(out), h.run.run_plan)
    # db done first: the stage's one other service, so a test counted as an end would close it
    for event in sorted(h.events.events, key=lambda e: (e.phase == "run", e.service != "db")):
        groups(event)
    group, seen = None, []
    for line in out.getvalue().splitlines():
        if line.startswith("::group::"):
            group = line.rsplit(": ", 1)[1]
        elif line == "::endgroup::":
            group = None
        elif "  api " in line:
            seen.append((line.split("  api ", 1)[1].split(" —")[0], group))
    assert any(what.startswith("test succeeded") for what, _ in seen), seen
    assert all(group == "first" for _, group in seen), seen


def cards(h: Harness, status: str) -> dict[str, dict[str, object]]:
    events = [e.to_json() for e in h.events.events]
    env = environments(h.pipeline, {})["test"]
    run = RunEvents(1, "deploy", status, events, elapsed=1.0)
    return {
        c.name: c.to_json() for col in stage_columns(h.pipeline, env, [run]) for c in col.services
    }


def test_the_status_page_shows_a_service_testing_and_a_failed_test() -> None:
    """A card reads `testing` while its test runs, and `failed` with the test's message (its
    output's last lines) when the test failed."""
    seen: dict[str, dict[str, object]] = {}
    h: Harness

    def look(ctx: StepContext) -> None:
        seen.update(cards(h, "running"))

    h = harness(TESTED, hooks={"api.test": look})
    h.execute()
    assert seen["api"]["status"] == "testing"
    assert str(seen["web"]["waiting"]).startswith("waiting: stage first (")
    h = harness(TESTED, hooks={"api.test": fail})
    h.execute()
    found = cards(h, "failed")
    assert (found["api"]["status"], found["api"]["message"]) == ("failed", FAILURE)
    assert found["web"]["status"] == "not deployed"


def test_a_reused_image_s_test_shows_reused() -> None:
    """An image reused from the registry: the summary's test column and the table say reused."""
    h = harness(
        TESTED, hooks={"api.build": lambda ctx: StepResult(status="reused", artifact="api:1")}
    )
    result = h.execute()
    assert "♻ reused" in row(text_of(result), "api")
    summary = job_summary(result, h.run.run_plan, action="deploy")
    api = next(line for line in summary.splitlines() if line.startswith("| **api**"))
    assert "✅ reused" in api
    steps = [dataclasses.asdict(v) for v in result.steps if v.service == "api"]
    assert [(s["phase"], s["state"]) for s in steps] == [
        ("build", "reused"),
        ("test", "reused"),
        ("deploy", "succeeded"),
    ]
