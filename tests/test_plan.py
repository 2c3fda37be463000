"""Plans: the four actions with their stage order and skip rules, service-level runs, clones that
inherit skip sets, and the `plan --format json` contract (DESIGN.md §2, §5)."""

from __future__ import annotations

import time

import pytest

from deploy_pipeline.config import parse_config
from deploy_pipeline.errors import UsageError
from deploy_pipeline.model import EnvironmentRecord, Plan
from deploy_pipeline.plan import environments, plan_json, plan_run

SHOP = parse_config("""
version: 1
targets: {eu: {kind: simulated}}
services:
  db: {type: database, image: postgres:16}
  migrate: {type: job, build: ./api}
  report: {type: job, build: ./api, schedule: "0 3 * * *"}
  web: {type: container, image: nginx}
  api: {type: application, build: ./api}
environments:
  staging: {target: eu, skip: [report]}
""")


def order(plan: Plan) -> list[tuple[str, list[str]]]:
    return [(sp.name, [p.service.name for p in sp.services]) for sp in plan.targets[0].stages]


def test_deploy_runs_the_default_stages_first_to_last_leaving_skipped_out() -> None:
    """An environment deploy goes database → job → container → application, without report."""
    plan = plan_run(SHOP, environments(SHOP, {})["staging"], "deploy")
    assert order(plan) == [
        ("0.DEFAULT DATABASE", ["db"]),
        ("1.DEFAULT JOB", ["migrate"]),
        ("2.DEFAULT CONTAINER", ["web"]),
        ("3.DEFAULT APPLICATION", ["api"]),
    ]
    assert [s.name for s in plan.skipped] == ["report"]


def test_restart_runs_first_to_last_without_skipped_and_without_builds() -> None:
    """restart keeps the deploy order, leaves skipped services out and builds nothing."""
    plan = plan_run(SHOP, environments(SHOP, {})["staging"], "restart")
    assert next(name for name, _ in order(plan)) == "0.DEFAULT DATABASE"
    assert "report" not in str(order(plan))
    assert not any(p.build for sp in plan.targets[0].stages for p in sp.services)


def test_stop_runs_last_to_first_leaving_skipped_out() -> None:
    """stop goes application → container → job → database and leaves report alone."""
    plan = plan_run(SHOP, environments(SHOP, {})["staging"], "stop")
    assert order(plan) == [
        ("3.DEFAULT APPLICATION", ["api"]),
        ("2.DEFAULT CONTAINER", ["web"]),
        ("1.DEFAULT JOB", ["migrate"]),
        ("0.DEFAULT DATABASE", ["db"]),
    ]


def test_delete_runs_last_to_first_and_deletes_skipped_services_too() -> None:
    """An environment-level delete removes skipped services as well and leaves nothing out."""
    plan = plan_run(SHOP, environments(SHOP, {})["staging"], "delete")
    assert order(plan)[2] == ("1.DEFAULT JOB", ["migrate", "report"])
    assert plan.skipped == ()


def test_a_service_level_run_includes_a_skipped_service() -> None:
    """`deploy --service report` deploys report even though staging skips it."""
    plan = plan_run(SHOP, environments(SHOP, {})["staging"], "deploy", ["report"])
    assert order(plan) == [("1.DEFAULT JOB", ["report"])]
    assert plan.skipped == ()


def test_a_service_level_run_keeps_stage_order_whatever_the_command_line_order() -> None:
    """Named services still run in stage order: api after db, even when named first."""
    plan = plan_run(SHOP, environments(SHOP, {})["staging"], "deploy", ["api", "db"])
    assert order(plan) == [("0.DEFAULT DATABASE", ["db"]), ("3.DEFAULT APPLICATION", ["api"])]


def test_only_deploys_build_and_only_services_with_build() -> None:
    """A deploy builds jobs and applications with `build:`, never databases or containers."""
    plan = plan_run(SHOP, environments(SHOP, {})["staging"], "deploy")
    built = {p.service.name: p.build for sp in plan.targets[0].stages for p in sp.services}
    assert built == {"db": False, "migrate": True, "web": False, "api": True}


def test_an_unknown_service_lists_the_services() -> None:
    """`--service apj` fails with a did-you-mean and the list of services."""
    with pytest.raises(UsageError) as err:
        plan_run(SHOP, environments(SHOP, {})["staging"], "deploy", ["apj"])
    assert str(err.value) == (
        "no service named 'apj'; did you mean 'api'? "
        "The services are: db, migrate, report, web, api"
    )


def test_a_target_outside_the_environment_is_refused_with_its_targets() -> None:
    """`--target us` on an environment that deploys to eu names the environment's targets."""
    with pytest.raises(
        UsageError, match="does not deploy to target 'us'; the targets of this environment are: eu"
    ):
        plan_run(SHOP, environments(SHOP, {})["staging"], "deploy", targets=["us"])


def test_a_clone_inherits_the_skip_set_and_the_targets_of_its_source() -> None:
    """A clone of staging skips what it skipped when cloned and deploys to staging's targets."""
    records = {"demo": EnvironmentRecord("demo", "clone", "staging", frozenset({"report"}))}
    demo = environments(SHOP, records)["demo"]
    assert demo.skipped == {"report"}
    assert demo.targets == ("eu",)
    assert demo.source == "staging"
    assert [s.name for s in plan_run(SHOP, demo, "deploy").skipped] == ["report"]


def test_a_clone_of_a_clone_resolves_through_its_source() -> None:
    """demo2, cloned from demo, itself cloned from staging, deploys to staging's targets."""
    records = {
        "demo2": EnvironmentRecord("demo2", "clone", "demo", frozenset()),
        "demo": EnvironmentRecord("demo", "clone", "staging", frozenset({"report", "web"})),
    }
    envs = environments(SHOP, records)
    assert envs["demo2"].targets == ("eu",)
    assert envs["demo"].skipped == {"report", "web"}


def test_skip_changes_of_a_file_environment_apply_on_top_of_the_file() -> None:
    """`env skip staging web` and `env unskip staging report` change staging's effective set."""
    records = {
        "staging": EnvironmentRecord(
            "staging", "file", skip_added=frozenset({"web"}), skip_removed=frozenset({"report"})
        )
    }
    assert environments(SHOP, records)["staging"].skipped == {"web"}


def test_plan_json_has_the_contract_shape() -> None:
    """plan_json gives environment, action, targets → stages → services, and skipped names."""
    doc = plan_json(plan_run(SHOP, environments(SHOP, {})["staging"], "deploy"))
    assert doc["environment"] == "staging"
    assert doc["action"] == "deploy"
    assert doc["skipped"] == ["report"]
    targets = doc["targets"]
    assert isinstance(targets, list) and targets[0]["target"] == "eu"
    assert targets[0]["stages"][1] == {
        "name": "1.DEFAULT JOB",
        "services": [{"name": "migrate", "type": "job", "build": True, "env": {}, "replicas": 1}],
    }


def test_sequential_services_mean_parallelism_one() -> None:
    """`strategy: {services: sequential}` plans with parallelism 1; otherwise the default 7."""
    assert plan_run(SHOP, environments(SHOP, {})["staging"], "deploy").parallelism == 7
    seq = parse_config("""
version: 1
services: {a: {type: container, image: x}}
environments: {e: {strategy: {services: sequential}}}
""")
    assert plan_run(seq, environments(seq, {})["e"], "deploy").parallelism == 1


def test_thousands_of_previews_are_resolved_in_linear_time() -> None:
    """10,000 previews are resolved in well under a second of CPU (resolving them was quadratic:
    50 million record comparisons; with a thousand, a tenth of a second per status page read)."""
    pipeline = parse_config(
        "version: 1\nservices: {web: {type: container, image: nginx:1.27}}\n"
        "environments: {staging: {}}\npreviews: {from: staging}\n"
    )
    records = {
        f"pr-{n}": EnvironmentRecord(f"pr-{n}", "preview", "staging", pull_request=n)
        for n in range(1, 10_001)
    }
    started = time.process_time()
    found = environments(pipeline, records)
    took = time.process_time() - started
    assert len(found) == 10_001 and found["pr-10000"].pull_request == 10_000
    assert took < 1.0, f"{took:.1f}s of CPU for 10,000 previews"
