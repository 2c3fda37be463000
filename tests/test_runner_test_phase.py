"""The test phase in the stage runner (DESIGN.md §9): a built service with `test:` is built, then
tested, then deployed; a failed test fails the run like any step; a reused image's test ends
`reused`; builds, tests and deploys of different services overlap. Proven with barriers and
counters on the runner's test backend, and on the simulated target through `--events`."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_pipeline.backends.base import StepContext, StepResult
from deploy_pipeline.cli import main
from deploy_pipeline.errors import PermanentError
from tests.support.runner import barrier, gate, harness

TESTED = """
version: 1
stages: [first, second]
targets: {i1: {kind: simulated}}
services:
  db: {type: database, image: postgres, stage: first}
  api: {type: application, build: ./api, stage: first, test: [pytest, -q]}
  web: {type: application, build: ./web, stage: second, test: "npm test"}
  edge: {type: container, image: nginx, stage: second}
environments: {test: {target: i1}}
"""


def test_a_tested_service_is_built_then_tested_then_deployed_with_the_tested_image() -> None:
    """The test step runs between the build and the deploy, gets the image the build made, and
    the deploy gets the image the test step hands on (the one it pushed)."""
    seen: dict[str, str | None] = {}

    def test(ctx: StepContext) -> StepResult:
        seen["test"] = ctx.artifact
        return StepResult(artifact="api@pushed", message="test passed")

    def deploy(ctx: StepContext) -> None:
        seen["deploy"] = ctx.artifact

    h = harness(TESTED, hooks={"api.test": test, "api.deploy": deploy})
    assert h.execute().status == "succeeded"
    assert h.journal.before("api.build@i1", "api.test@i1")
    assert h.journal.before("api.test@i1", "api.deploy@i1")
    assert seen == {"test": "api:test", "deploy": "api@pushed"}
    phases = [(e.phase, e.status) for e in h.events.events if e.service == "api"]
    assert phases == [
        ("build", "started"),
        ("build", "succeeded"),
        ("test", "started"),
        ("test", "succeeded"),
        ("deploy", "started"),
        ("deploy", "succeeded"),
    ]
    assert "edge.test@i1" not in h.statuses() and "db.test@i1" not in h.statuses()


def test_a_failed_test_fails_the_run_its_service_is_never_deployed_nor_later_stages() -> None:
    """A test that fails is a failed `test` step with the backend's message (the output's last
    lines); its deploy and the later stage never start, and the run's failure names it."""

    def fail(ctx: StepContext) -> None:
        raise PermanentError("api's test exited with code 1; last lines of its output:\nFAILED")

    h = harness(TESTED, hooks={"api.test": fail})
    result = h.execute()
    assert result.status == "failed"
    failed = next(e for e in h.events.events if e.phase == "test" and e.status == "failed")
    assert failed.service == "api" and failed.message.endswith("last lines of its output:\nFAILED")
    statuses = h.statuses()
    assert statuses["api.deploy@i1"] == "cancelled"
    assert statuses["web.deploy@i1"] == "cancelled"
    assert statuses["edge.deploy@i1"] == "cancelled"
    assert not {"api.deploy@i1", "web.deploy@i1", "edge.deploy@i1"} & set(h.journal.started())
    assert result.failures == [
        "test/i1 api test failed: api's test exited with code 1; last lines of its output:\nFAILED"
    ]
    assert h.final().status == "failed"


def test_a_reused_image_s_test_ends_reused_without_running_again() -> None:
    """An image reused from the registry passed its test when it was built: its test step ends
    `reused` (the backend is not asked), and the deploy gets the reused image."""
    seen: list[str | None] = []
    h = harness(
        TESTED,
        hooks={
            "api.build": lambda ctx: StepResult(status="reused", artifact="api:sha-1"),
            "api.deploy": lambda ctx: seen.append(ctx.artifact) and None,
        },
    )
    assert h.execute().status == "succeeded"
    test = [e for e in h.events.events if e.service == "api" and e.phase == "test"]
    assert [e.status for e in test] == ["started", "reused"]
    assert test[-1].message == "the image passed its test when it was built"
    assert "api.test@i1" not in h.journal.started()
    assert seen == ["api:sha-1"]


def test_builds_and_tests_of_different_services_overlap() -> None:
    """One service's test runs while another's build does, and two tests run at once: each
    barrier breaks (failing the test) unless its parties meet."""
    text = TESTED.replace("stage: second, test", "stage: first, test")
    both = barrier(2)
    h = harness(text, hooks={"api.test": both, "web.build": both})
    assert h.execute().status == "succeeded"

    tests = barrier(2)
    h = harness(text, hooks={"api.test": tests, "web.test": tests})
    assert h.execute().status == "succeeded"
    assert h.journal.peak["test@i1"] == 2


def test_a_later_stage_s_test_runs_ahead_while_this_stage_deploys() -> None:
    """With build_ahead, web (stage two) is built and tested while db (stage one) deploys; its
    deploy still waits for stage one."""
    web_tested = threading.Event()

    def web_test(ctx: StepContext) -> None:
        web_tested.set()

    h = harness(TESTED, hooks={"db.deploy": gate(web_tested), "web.test": web_test})
    assert h.execute().status == "succeeded"
    assert h.journal.index("start", "web.test@i1") < h.journal.index("end", "db.deploy@i1")
    assert h.journal.before("db.deploy@i1", "web.deploy@i1")


def test_tests_run_at_most_parallelism_at_once() -> None:
    """Tests have slots like builds and deploys: with parallelism 2, four tests run two by two."""
    services = "".join(
        f"  s{i}: {{type: application, build: ./s{i}, test: [make, test]}}\n" for i in range(4)
    )
    text = (
        "version: 1\ndefaults: {parallelism: 2}\ntargets: {i1: {kind: simulated}}\n"
        f"services:\n{services}environments: {{test: {{target: i1}}}}\n"
    )
    pair = barrier(2)
    h = harness(text, hooks={f"s{i}.test": pair for i in range(4)})
    assert h.execute().status == "succeeded"
    assert h.journal.peak["test@i1"] == 2


def test_a_deploy_waiting_for_its_test_says_so() -> None:
    """While api's test runs, its deploy reads `waiting: its test (…)`, and the test step is
    shown as a step of its own."""
    seen: dict[str, str | None] = {}
    h = harness(TESTED)

    def look(ctx: StepContext) -> None:
        seen.update({f"{v.service}.{v.phase}": v.waiting for v in h.run.snapshot()})
        seen["api.test state"] = next(
            v.state for v in h.run.snapshot() if (v.service, v.phase) == ("api", "test")
        )

    h.run.backends["i1"].hooks = {"api.test": look}  # type: ignore[attr-defined]
    assert h.execute().status == "succeeded"
    assert (seen["api.deploy"] or "").startswith("waiting: its test (")
    assert seen["api.test state"] == "running"


def test_without_build_ahead_a_stage_deploys_once_its_images_are_built_and_tested() -> None:
    """`build_ahead: false`: the stage's deploys wait for its builds and its tests."""
    text = TESTED.replace("stages:", "defaults: {build_ahead: false}\nstages:")
    h = harness(text)
    assert h.execute().status == "succeeded"
    assert h.journal.before("api.test@i1", "db.deploy@i1")
    assert h.journal.before("db.deploy@i1", "web.build@i1")
    assert h.journal.before("web.test@i1", "edge.deploy@i1")


# --- the simulated target ---------------------------------------------------------------------

SIMULATED = """\
version: 1
targets:
  sim:
    kind: simulated
    durations: {api: {test: 50ms}}
    fail: {FAIL}
services:
  api: {type: application, build: ./api, port: 80, test: [pytest]}
  web: {type: container, image: nginx, port: 80}
environments: {staging: {target: sim}}
"""


def deploy_events(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str], fail: str
) -> tuple[int, list[dict[str, object]]]:
    path = write_config(SIMULATED.replace("{FAIL}", fail))
    code = main(["deploy", "-f", str(path), "-e", "staging", "--events", "jsonl"])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_simulated_target_takes_test_durations(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """On a simulated target a test lasts its `durations` entry and `--events` shows the phase."""
    code, events = deploy_events(write_config, capsys, "{}")
    assert code == 0
    api = [(e["phase"], e["status"]) for e in events if e["service"] == "api"]
    assert api == [
        ("build", "started"),
        ("build", "succeeded"),
        ("test", "started"),
        ("test", "succeeded"),
        ("deploy", "started"),
        ("deploy", "succeeded"),
    ]
    test = next(e for e in events if e["phase"] == "test" and e["status"] == "succeeded")
    assert isinstance(test["duration"], float) and test["duration"] >= 0.05


def test_the_simulated_target_fails_a_test_when_told(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`fail: {api: test}` fails api's test step: exit 1, `"phase": "test", "status": "failed"`,
    api is never deployed and the run's last line names the failed test."""
    code, events = deploy_events(write_config, capsys, "{api: test}")
    assert code == 1
    failed = [e for e in events if e["status"] == "failed" and e["phase"] != "run"]
    assert [(e["service"], e["phase"]) for e in failed] == [("api", "test")]
    assert failed[0]["message"] == "simulated failure: target sim fails api's test"
    assert ("api", "deploy", "succeeded") not in {
        (e["service"], e["phase"], e["status"]) for e in events
    }
    assert events[-1]["phase"] == "run" and events[-1]["status"] == "failed"
    assert "api test failed: simulated failure" in str(events[-1]["message"])


def test_a_long_test_output_keeps_its_last_lines_within_an_event_s_message() -> None:
    """However long a failed test's output, the lines ending its message fit in an event's
    message (2000 characters) with the very last line whole at the end."""
    from deploy_pipeline.backends.build import _output_tail
    from deploy_pipeline.errors import MAX_MESSAGE

    output = (
        "\n".join(f"{i} " + "x" * 500 for i in range(50)) + "\nFAILED tests/test_api.py::test_x"
    )
    tail = _output_tail(output)
    assert tail.startswith("; last lines of its output:\n")
    assert tail.endswith("\nFAILED tests/test_api.py::test_x")
    assert len("api's test exited with code 1" + tail) < MAX_MESSAGE
    assert _output_tail("") == "; it wrote no output"
