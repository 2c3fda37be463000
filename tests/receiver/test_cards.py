"""receiver/cards.py: an environment's stages and service cards from the stored events of its
runs, as the receiver's status page and `GET /api/environments/{name}` show them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from deploy_pipeline import plan
from deploy_pipeline.config import parse_config
from deploy_pipeline.model import ACTIONS, Action, Environment, Pipeline
from deploy_pipeline.plan import environments, plan_run
from deploy_pipeline.receiver.cards import RunEvents, card_urls, stage_columns
from deploy_pipeline.steps import environment_url

PIPELINE = parse_config("""
version: 1
stages: [data, backend, frontend]
targets:
  eu: {kind: simulated}
  us: {kind: simulated}
services:
  db: {type: database, image: postgres:16, stage: data}
  cache: {type: database, image: redis:7, stage: data}
  api: {type: application, build: ./api, port: 8000, stage: backend}
  search: {type: container, image: search:1, port: 9200, stage: backend}
  web: {type: container, image: nginx:1.27, port: 80, public: true, stage: frontend}
environments:
  staging: {target: eu, skip: [search]}
  world: {targets: [eu, us]}
""")
STAGING = environments(PIPELINE, {})["staging"]


def event(
    ts: float,
    service: str | None,
    phase: str,
    status: str,
    message: str = "",
    *,
    url: str | None = None,
    duration: float | None = None,
    target: str = "eu",
    environment: str = "staging",
) -> dict[str, Any]:
    """An event as the store keeps it (DESIGN.md §5)."""
    data: dict[str, Any] = {
        "ts": ts,
        "environment": environment,
        "target": target if service else None,
        "stage": PIPELINE.services[service].stage if service else None,
        "service": service,
        "phase": phase,
        "status": status,
        "message": message,
    }
    if url:
        data["url"] = url
    if duration is not None:
        data["duration"] = duration
    return data


def deployed(service: str, ts: float, took: float, **kw: Any) -> list[dict[str, Any]]:
    url = f"http://{service}.example" if PIPELINE.services[service].port else None
    return [
        event(ts, service, "deploy", "started", **kw),
        event(ts + took, service, "deploy", "succeeded", "running", url=url, duration=took, **kw),
    ]


def cards(
    runs: list[RunEvents], environment: Environment = STAGING, pipeline: Pipeline = PIPELINE
) -> dict[str, dict[str, Any]]:
    return {
        card.name: card.to_json()
        for column in stage_columns(pipeline, environment, runs)
        for card in column.services
    }


def test_a_running_run_shows_each_service_where_it_is_and_why_the_later_ones_wait() -> None:
    """Three seconds in: db deployed, cache deploying for 3 s, api's image building ahead, search
    skipped (greyed, no URL), and web waiting on stage data, named by its busiest service."""
    run = RunEvents(
        1,
        "deploy",
        "running",
        [
            event(0.0, "search", "deploy", "skipped", "skipped in staging"),
            *deployed("db", 0.0, 1.0),
            event(0.0, "cache", "deploy", "started"),
            event(0.0, "api", "build", "started"),
        ],
        elapsed=3.0,
    )
    columns = stage_columns(PIPELINE, STAGING, [run])
    assert [(c.name, [s.name for s in c.services]) for c in columns] == [
        ("data", ["db", "cache"]),
        ("backend", ["api", "search"]),
        ("frontend", ["web"]),
    ]
    found = cards([run])
    assert {n: c["status"] for n, c in found.items()} == {
        "db": "deployed",
        "cache": "deploying",
        "api": "building",
        "search": "skipped",
        "web": "waiting",
    }
    assert found["cache"]["elapsed"] == 3.0 and found["db"]["elapsed"] == 1.0
    assert found["search"]["skipped"] is True and found["search"]["url"] is None
    assert found["web"]["waiting"] == "waiting: stage data (cache deploying, 3.0s)"
    assert all(c["waiting"] is None for n, c in found.items() if n != "web")


def test_a_stage_with_several_services_busy_says_how_many_more() -> None:
    """While db and cache both deploy, a later service waits on the longer-running one, +1 more;
    once stage backend is on, a service of it with its image ready waits for a deploy slot."""
    busy = RunEvents(
        1,
        "deploy",
        "running",
        [event(0.5, "cache", "deploy", "started"), event(0.2, "db", "deploy", "started")],
        elapsed=41.0,
    )
    assert cards([busy])["web"]["waiting"] == "waiting: stage data (db deploying, 41s; +1 more)"
    later = RunEvents(
        1,
        "deploy",
        "running",
        [
            *deployed("db", 0.0, 1.0),
            *deployed("cache", 0.0, 2.0),
            event(0.0, "api", "build", "started"),
            event(1.5, "api", "build", "succeeded", duration=1.5),
        ],
        elapsed=2.0,
    )
    assert cards([later])["api"]["waiting"] == "waiting: a deploy slot"


def test_a_failed_run_names_the_reason_and_untouched_services_keep_their_last_card() -> None:
    """api's build fails: its card is failed with the build's reason; web, never started in that
    run, keeps the card (and URL) of the run before, which deployed it."""
    before = RunEvents(
        1,
        "deploy",
        "succeeded",
        deployed("db", 0.0, 1.0)
        + deployed("cache", 0.0, 1.0)
        + deployed("api", 1.0, 1.0)
        + deployed("web", 2.0, 1.0),
    )
    failed = RunEvents(
        2,
        "deploy",
        "failed",
        [
            *deployed("db", 0.0, 1.0),
            *deployed("cache", 0.0, 1.0),
            event(0.0, "api", "build", "started"),
            event(0.7, "api", "build", "failed", "docker build: exit 2", duration=0.7),
            event(1.0, "api", "deploy", "cancelled", "not started: api build failed"),
            event(1.0, "web", "deploy", "cancelled", "not started: api build failed"),
        ],
    )
    found = cards([failed, before])
    assert (found["api"]["status"], found["api"]["message"]) == ("failed", "docker build: exit 2")
    assert found["api"]["run"] == 2
    assert (found["web"]["status"], found["web"]["run"]) == ("deployed", 1)
    assert found["web"]["url"] == "http://web.example"
    alone = cards([failed])  # the first run of the environment: web was never deployed
    assert alone["web"]["status"] == "not deployed"
    assert alone["web"]["message"] == "not started: api build failed"


def test_a_run_that_stopped_mid_step_leaves_the_service_interrupted() -> None:
    """A run abandoned (its receiver killed) while cache deployed: cache is interrupted, saying
    which run, rather than deploying forever."""
    run = RunEvents(3, "deploy", "abandoned", [event(0.0, "cache", "deploy", "started")])
    found = cards([run])
    assert found["cache"]["status"] == "interrupted"
    assert found["cache"]["message"] == "run 3 ended before this step did"


def test_stop_and_delete_say_stopped_and_not_deployed_and_take_the_url_away() -> None:
    """After a stop a service is stopped, after a delete it is not deployed; neither links to
    the URL it had."""
    up = RunEvents(1, "deploy", "succeeded", deployed("web", 0.0, 1.0))
    for action, shown in (("stop", "stopped"), ("delete", "not deployed")):
        down = RunEvents(
            2,
            action,
            "succeeded",
            [event(0.0, "web", action, "started"), event(0.5, "web", action, "succeeded")],
        )
        web = cards([down, up])["web"]
        assert (web["status"], web["url"], web["run"]) == (shown, None, 2)


def test_the_second_of_sequential_targets_waits_for_the_first() -> None:
    """With targets eu then us, us's services wait on target eu while eu deploys; the card shows
    the more urgent of the two and lists both."""
    world = environments(PIPELINE, {})["world"]
    run = RunEvents(
        1,
        "deploy",
        "running",
        [event(0.0, "db", "deploy", "started", environment="world")],
        elapsed=1.0,
    )
    found = cards([run], world)
    assert found["db"]["status"] == "deploying"
    assert found["db"]["targets"] == [
        {"name": "eu", "status": "deploying", "url": None, "waiting": None},
        {"name": "us", "status": "waiting", "url": None, "waiting": "waiting: target eu"},
    ]


def test_the_environment_url_is_a_public_service_s() -> None:
    """The link to open an environment is its public service's URL, though api has one too."""
    run = RunEvents(1, "deploy", "succeeded", deployed("api", 0.0, 1.0) + deployed("web", 1.0, 1.0))
    assert environment_url(card_urls(PIPELINE, stage_columns(PIPELINE, STAGING, [run]))) == (
        "http://web.example"
    )
    assert environment_url(card_urls(PIPELINE, stage_columns(PIPELINE, STAGING, []))) is None


def _waiting_cards(action: str, services: Sequence[str] = ()) -> dict[str, str | None]:
    """Each service's waiting reason while a run that has not started a step yet is running."""
    run = RunEvents(1, action, "running", [], services=tuple(services))
    columns = stage_columns(PIPELINE, STAGING, [run])
    return {card.name: card.main.waiting for column in columns for card in column.services}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("services", [(), ("search",), ("web", "db")])
def test_the_cards_wait_for_what_the_plan_takes_in_its_stage_order(
    action: Action, services: tuple[str, ...]
) -> None:
    """The cards of a run not started yet wait for exactly the services plan_run takes: the first
    stage's for a slot, the later ones for that stage; the services it leaves out do not wait."""
    stages = plan_run(PIPELINE, STAGING, action, services).targets[0].stages
    expected: dict[str, str | None] = dict.fromkeys(PIPELINE.services)
    for i, stage in enumerate(stages):
        for planned in stage.services:
            why = f"a {action} slot" if i == 0 else f"stage {stages[0].name}"
            expected[planned.service.name] = f"waiting: {why}"
    assert _waiting_cards(action, services) == expected


def test_a_changed_skip_rule_shows_on_the_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cards take the plan's rule of which services a run takes: change the rule in plan.py
    (here: a deploy also leaves web out) and the cards stop waiting for web, as the runner does."""
    rule = plan.taken

    def leaves_web_out(*args: Any) -> tuple[list[str], list[str]]:
        chosen, skipped = rule(*args)
        return [s for s in chosen if s != "web"], [*skipped, "web"]

    assert _waiting_cards("deploy")["web"] == "waiting: stage data"
    monkeypatch.setattr(plan, "taken", leaves_web_out)
    assert [s.name for s in plan_run(PIPELINE, STAGING, "deploy").skipped] == ["search", "web"]
    assert _waiting_cards("deploy")["web"] is None
