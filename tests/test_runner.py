"""The stage runner: stage order, parallelism bounds, build-ahead, failure, timeouts, retries,
cancellation and waiting reasons (DESIGN.md §2), proven with barriers and counters."""

from __future__ import annotations

import re
import threading

from deploy_pipeline.backends.base import StepContext, StepResult
from deploy_pipeline.config import parse_config
from deploy_pipeline.errors import PermanentError, TransientError
from deploy_pipeline.events import Collect, EventBus, Redactor
from deploy_pipeline.model import Event
from deploy_pipeline.plan import environments, plan_runs
from deploy_pipeline.runner import Cancel, Run
from tests.support.runner import WAIT, GateBackend, Journal, barrier, gate, harness, until_cancelled

TWO_STAGES = """
version: 1
stages: [first, second]
targets: {i1: {kind: simulated}}
services:
  db: {type: database, image: postgres, stage: first}
  cache: {type: database, image: redis, stage: first}
  api: {type: application, build: ./api, stage: second}
  web: {type: container, image: nginx, stage: second}
environments: {test: {target: i1}}
"""


def many(n: int, *, parallelism: int | None = None, sequential: bool = False) -> str:
    defaults = f"defaults: {{parallelism: {parallelism}}}\n" if parallelism else ""
    strategy = ", strategy: {services: sequential}" if sequential else ""
    services = "".join(f"  s{i}: {{type: container, image: x}}\n" for i in range(n))
    return (
        f"version: 1\n{defaults}targets: {{i1: {{kind: simulated}}}}\nservices:\n{services}"
        f"environments: {{test: {{target: i1{strategy}}}}}\n"
    )


def test_stage_k_plus_1_starts_only_after_every_deploy_of_stage_k() -> None:
    """No deploy of the second stage starts before both deploys of the first have ended."""
    both = barrier(2)  # the two first-stage deploys are inside at once, then both leave
    h = harness(TWO_STAGES, hooks={"db.deploy": both, "cache.deploy": both})
    assert h.execute().status == "succeeded"
    j = h.journal
    for first in ("db.deploy@i1", "cache.deploy@i1"):
        for then in ("api.deploy@i1", "web.deploy@i1"):
            assert j.before(first, then)


def test_deploys_inside_a_stage_run_in_parallel_up_to_the_parallelism() -> None:
    """With parallelism 3, nine deploys meet three at a time and never four."""
    shared = barrier(3)
    h = harness(many(9, parallelism=3), hooks={f"s{i}.deploy": shared for i in range(9)})
    assert h.execute().status == "succeeded"
    assert h.journal.peak["main@i1"] == 3


def test_default_parallelism_is_seven() -> None:
    """Fourteen services with no parallelism set run exactly seven at once."""
    shared = barrier(7)
    h = harness(many(14), hooks={f"s{i}.deploy": shared for i in range(14)})
    assert h.execute().status == "succeeded"
    assert h.journal.peak["main@i1"] == 7


def test_sequential_services_run_one_at_a_time_in_file_order() -> None:
    """`services: sequential` deploys one service at a time, in the order of the file."""
    h = harness(many(5, sequential=True))
    assert h.execute().status == "succeeded"
    assert h.journal.peak["main@i1"] == 1
    assert h.journal.started() == [f"s{i}.deploy@i1" for i in range(5)]


def test_build_ahead_builds_the_next_stage_while_this_one_deploys() -> None:
    """With build_ahead (the default) api's build runs while db is still deploying."""
    api_building = threading.Event()

    def api_build(ctx: StepContext) -> None:
        api_building.set()

    h = harness(TWO_STAGES, hooks={"db.deploy": gate(api_building), "api.build": api_build})
    assert h.execute().status == "succeeded"
    assert h.journal.index("start", "api.build@i1") < h.journal.index("end", "db.deploy@i1")


def test_without_build_ahead_a_stage_builds_only_once_the_previous_one_is_up() -> None:
    """`build_ahead: false` builds stage two only after stage one's deploys, then deploys it."""
    text = TWO_STAGES.replace("stages:", "defaults: {build_ahead: false}\nstages:")
    h = harness(text)
    assert h.execute().status == "succeeded"
    assert h.journal.before("db.deploy@i1", "api.build@i1")
    assert h.journal.before("cache.deploy@i1", "api.build@i1")
    assert h.journal.before("api.build@i1", "web.deploy@i1")  # the stage's builds come first


def test_a_deploy_waits_for_its_own_build_and_gets_its_image() -> None:
    """The deploy of a built service starts after its build and receives the built image."""
    seen: list[str | None] = []

    def deploy(ctx: StepContext) -> None:
        seen.append(ctx.artifact)

    h = harness(TWO_STAGES, hooks={"api.deploy": deploy})
    h.execute()
    assert h.journal.before("api.build@i1", "api.deploy@i1")
    assert seen == ["api:test"]


def test_a_failure_finishes_work_in_flight_cancels_the_rest_and_stops_later_stages() -> None:
    """When one deploy fails, its sibling in flight finishes, queued ones and later stages are
    reported cancelled, the run fails and its report names the service, phase and reason."""
    failing = threading.Event()

    def fail(ctx: StepContext) -> None:
        failing.set()
        raise PermanentError("container exited with code 3")

    text = many(4, parallelism=2).replace("services:\n", "stages: [a, b]\nservices:\n")
    text = text.replace("image: x}", "image: x, stage: a}").replace(
        "environments:", "  later: {type: container, image: y, stage: b}\nenvironments:"
    )
    h = harness(text, hooks={"s0.deploy": fail, "s1.deploy": gate(failing)})
    result = h.execute()
    assert result.status == "failed"
    statuses = h.statuses()
    assert statuses["s0.deploy@i1"] == "failed"
    assert statuses["s1.deploy@i1"] == "succeeded"  # in flight: it finished
    assert statuses["s2.deploy@i1"] == "cancelled"
    assert statuses["s3.deploy@i1"] == "cancelled"
    assert statuses["later.deploy@i1"] == "cancelled"
    assert "later.deploy@i1" not in h.journal.started()
    assert result.failures == ["test/i1 s0 deploy failed: container exited with code 3"]
    cancelled = next(e for e in h.events.events if e.service == "later")
    assert cancelled.message == "not started: " + result.failures[0]
    assert h.final().phase == "run" and h.final().status == "failed"


def test_a_failed_build_fails_the_run_before_its_deploy() -> None:
    """A build that fails is reported with phase build, and its deploy never starts."""

    def fail(ctx: StepContext) -> None:
        raise PermanentError("Dockerfile: COPY failed: no such file")

    h = harness(TWO_STAGES, hooks={"api.build": fail})
    result = h.execute()
    assert result.status == "failed"
    assert h.statuses()["api.build@i1"] == "failed"
    assert h.statuses()["api.deploy@i1"] == "cancelled"
    assert "api build failed: Dockerfile: COPY failed" in result.failures[0]


def test_a_step_past_its_timeout_fails_with_the_timeout_and_is_told_to_stop() -> None:
    """A hung deploy fails at its service's timeout, and the backend sees its cancel flag set."""
    flags: list[threading.Event] = []

    def hang(ctx: StepContext) -> None:
        flags.append(ctx.cancel)
        ctx.cancel.wait(WAIT)

    text = many(1).replace("image: x}", "image: x, timeout: 50ms}")
    h = harness(text, hooks={"s0.deploy": hang})
    result = h.execute()
    assert result.status == "failed"
    assert h.statuses()["s0.deploy@i1"] == "failed"
    assert "s0 deploy failed: timed out after" in result.failures[0]
    assert flags and flags[0].is_set()


def test_transient_errors_are_retried_with_backoff_then_succeed() -> None:
    """Two transient errors then success: three calls, and the step succeeds."""
    calls = []

    def flaky(ctx: StepContext) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("connection refused")

    h = harness(many(1), hooks={"s0.deploy": flaky})
    assert h.execute().status == "succeeded"
    assert h.journal.calls["s0.deploy@i1"] == 3


def test_permanent_errors_are_never_retried() -> None:
    """A failing container is tried once: permanent errors are not retried."""

    def broken(ctx: StepContext) -> None:
        raise PermanentError("CrashLoopBackOff")

    h = harness(many(1), hooks={"s0.deploy": broken})
    assert h.execute().status == "failed"
    assert h.journal.calls["s0.deploy@i1"] == 1


def test_transient_errors_past_the_retries_fail_with_the_last_error() -> None:
    """`retries: 2` means three attempts, then the run fails with the transient message."""

    def down(ctx: StepContext) -> None:
        raise TransientError("503 Service Unavailable")

    text = many(1).replace("version: 1\n", "version: 1\ndefaults: {retries: 2}\n")
    h = harness(text, hooks={"s0.deploy": down})
    result = h.execute()
    assert result.status == "failed"
    assert h.journal.calls["s0.deploy@i1"] == 3
    assert result.failures[0].endswith("503 Service Unavailable")


def test_cancel_stops_work_in_flight_at_its_next_safe_point_and_reports_the_rest() -> None:
    """Ctrl-C cancels the running step (it stops at its safe point) and every step not started."""
    cancel = Cancel()
    h = harness(
        TWO_STAGES,
        hooks={"db.deploy": until_cancelled, "cache.deploy": lambda ctx: cancel.set("interrupted")},
        cancel=cancel,
    )
    result = h.execute()
    assert result.status == "cancelled"
    statuses = h.statuses()
    assert statuses["db.deploy@i1"] == "cancelled"
    assert statuses["web.deploy@i1"] == "cancelled"
    web = [e for e in h.events.events if e.service == "web"][-1]
    assert web.message == "not started: interrupted"
    assert h.final().status == "cancelled"


def test_waiting_reasons_say_what_each_service_waits_for() -> None:
    """While db deploys, api's deploy waits for stage 'first' and names db; with one build
    slot busy, another build waits for a build slot."""
    release = threading.Event()
    seen: dict[str, str | None] = {}
    text = TWO_STAGES.replace("stages:", "defaults: {parallelism: 1}\nstages:").replace(
        "  web: {type: container, image: nginx, stage: second}",
        "  web: {type: application, build: ./web, stage: second}",
    )
    h = harness(text)

    def look(ctx: StepContext) -> None:
        views = {f"{v.service}.{v.phase}": v.waiting for v in h.run.snapshot()}
        seen.update(views)
        release.set()

    h.run.backends["i1"].hooks = {"db.deploy": look, "api.build": gate(release)}  # type: ignore[attr-defined]
    assert h.execute().status == "succeeded"
    assert seen["api.deploy"] is not None
    assert seen["api.deploy"].startswith("waiting: stage first (db deploying, ")
    assert seen["web.build"] == "waiting: a build slot (1/1 busy)"
    assert seen["cache.deploy"] == "waiting: a deploy slot (1/1 busy)"


def test_backend_results_become_events_with_url_reused_and_skipped() -> None:
    """A reused build ends `reused`, a URL rides on the event, a skipped result is `skipped`."""
    h = harness(
        TWO_STAGES,
        hooks={
            "api.build": lambda ctx: StepResult(status="reused", artifact="api:abc"),
            "web.deploy": lambda ctx: StepResult(url="http://web.test"),
            "cache.deploy": lambda ctx: StepResult(
                status="skipped", message="cron jobs need Kubernetes"
            ),
        },
    )
    assert h.execute().status == "succeeded"
    statuses = h.statuses()
    assert statuses["api.build@i1"] == "reused"
    assert statuses["cache.deploy@i1"] == "skipped"
    web = [e for e in h.events.events if e.service == "web" and e.status == "succeeded"]
    assert web[0].url == "http://web.test"


def test_skipped_services_are_reported_and_never_run() -> None:
    """An environment-level deploy reports a skipped service as `skipped` and never calls it."""
    text = TWO_STAGES.replace("test: {target: i1}", "test: {target: i1, skip: [web]}")
    h = harness(text)
    assert h.execute().status == "succeeded"
    assert h.statuses()["web.deploy@i1"] == "skipped"
    assert "web.deploy@i1" not in h.journal.started()


def test_secret_values_never_reach_an_event_or_the_summary() -> None:
    """A backend error that quotes a secret value is reported with the value masked, in the
    events, the steps a summary shows and the run's failures alike."""

    def leak(ctx: StepContext) -> None:
        raise PermanentError(f"auth failed for postgres://app:{ctx.secrets['DB_PASSWORD']}@db")

    text = many(1).replace("image: x}", "image: x, secrets: [DB_PASSWORD]}")
    h = harness(text, hooks={"s0.deploy": leak}, secrets={"s0": {"DB_PASSWORD": "hunter22-secret"}})
    result = h.execute()
    messages = " ".join(e.message for e in h.events.events)
    assert "hunter22-secret" not in messages
    assert "postgres://app:***@db" in messages
    assert result.status == "failed"
    shown = " ".join([*(s.message for s in result.steps), *result.failures])
    assert "hunter22-secret" not in shown
    assert "postgres://app:***@db" in shown


def test_a_secret_in_a_url_is_masked_in_the_event_and_the_summary() -> None:
    """A URL a backend reports is masked like a message: in the event and the steps shown."""
    text = many(1).replace("image: x}", "image: x, secrets: [TOKEN]}")
    h = harness(
        text,
        hooks={"s0.deploy": lambda ctx: StepResult(url=f"https://{ctx.secrets['TOKEN']}@s0.test")},
        secrets={"s0": {"TOKEN": "tok-hunter22"}},
    )
    result = h.execute()
    assert result.status == "succeeded"
    urls = [e.url for e in h.events.events if e.url]
    assert urls == ["https://***@s0.test"]
    assert [s.url for s in result.steps if s.url] == ["https://***@s0.test"]


def test_the_event_bus_masks_an_events_url_as_it_masks_its_message() -> None:
    """Whoever emits it, an event's URL reaches no sink with a secret value in it."""
    seen = Collect()
    bus = EventBus([seen], Redactor(["tok-hunter22"]))
    bus(
        Event(
            ts=0.0,
            environment="test",
            target="i1",
            stage="s",
            service="api",
            phase="deploy",
            status="succeeded",
            url="https://tok-hunter22@x",
        )
    )
    assert [e.url for e in seen.events] == ["https://***@x"]


def test_the_steps_shown_are_masked_by_the_bus_s_one_redactor() -> None:
    """The steps and failures a summary shows are masked by the event bus's redactor: the run
    builds no masker of its own from the secrets, so what the bus masks the views mask too."""

    def leak(ctx: StepContext) -> None:
        raise PermanentError("the registry refused token tok-hunter22")

    pipeline = parse_config(many(1))
    run_plan = plan_runs(pipeline, environments(pipeline, {}), ["test"], "deploy")
    journal, events = Journal(), Collect()
    backends = {
        n: GateBackend(t, journal, {"s0.deploy": leak}) for n, t in pipeline.targets.items()
    }
    result = Run(run_plan, backends, EventBus([events], Redactor(["tok-hunter22"]))).execute()
    assert result.status == "failed"
    assert [e.message for e in events.events if e.status == "failed" and e.service] == [
        "the registry refused token ***"
    ]
    assert [s.message for s in result.steps if s.state == "failed"] == [
        "the registry refused token ***"
    ]
    assert result.failures == ["test/i1 s0 deploy failed: the registry refused token ***"]


def test_stop_and_delete_run_the_stages_last_to_first() -> None:
    """stop takes stage 'second' down before stage 'first'."""
    h = harness(TWO_STAGES, action="stop")
    assert h.execute().status == "succeeded"
    assert h.journal.before("api.stop@i1", "db.stop@i1")
    assert h.journal.before("web.stop@i1", "cache.stop@i1")
    assert not [k for k in h.journal.started() if ".build" in k]


def test_an_unexpected_backend_exception_fails_the_step_with_its_type() -> None:
    """A bug in a backend fails its step with the exception's type and text, not the runner."""

    def bug(ctx: StepContext) -> None:
        raise KeyError("replicas")

    h = harness(many(1), hooks={"s0.deploy": bug})
    result = h.execute()
    assert result.failures == ["test/i1 s0 deploy failed: unexpected error: KeyError: 'replicas'"]


def test_a_reason_given_just_after_the_deadline_is_kept() -> None:
    """A backend told to stop at its deadline that then says why it failed is reported with its
    own reason, not a bare timeout."""

    def unhealthy(ctx: StepContext) -> None:
        ctx.cancel.wait(WAIT)
        raise PermanentError("not healthy within its timeout (GET /healthz answered 503)")

    text = many(1).replace("image: x}", "image: x, timeout: 50ms}")
    h = harness(text, hooks={"s0.deploy": unhealthy})
    result = h.execute()
    assert result.failures == [
        "test/i1 s0 deploy failed: not healthy within its timeout (GET /healthz answered 503)"
    ]


def test_a_step_that_succeeds_after_its_deadline_still_timed_out() -> None:
    """Finishing after being told to stop is a timeout: the deadline is the deadline."""

    def late(ctx: StepContext) -> None:
        ctx.cancel.wait(WAIT)

    text = many(1).replace("image: x}", "image: x, timeout: 50ms}")
    h = harness(text, hooks={"s0.deploy": late})
    failure = h.execute().failures[0]
    assert re.fullmatch(r"test/i1 s0 deploy failed: timed out after 5\dms", failure), failure
