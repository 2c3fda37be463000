"""The Action's entry point in-process, reporting to the GitHub stand-in: what a pull request and
a commit show afterwards (statuses, deployments, the one comment), the step's outputs, summary and
workflow commands, and what happens when GitHub refuses or fails."""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import os
import signal
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_pipeline.store.state import Store
from tests.support.action_step import CANARY, Step
from tests.support.docker_testbed import HTTPD, DockerBed, busybox_context
from tests.support.eventually import eventually
from tests.support.github_standin import REPO, TOKEN, GitHubStandin
from tests.support.kube_testbed import delete_namespace
from tests.support.paths import ROOT
from tests.support.webhooks import pr_event

PIPELINE = """
version: 1
stages: [data, apps]
targets:
  rehearse: {kind: simulated}
services:
  db: {type: database, image: postgres:16, port: 5432, stage: data}
  api: {type: container, image: api:1, port: 8000, stage: apps, secrets: [API_TOKEN]}
  web: {type: container, image: nginx:1.27, port: 80, public: true, stage: apps}
  search: {type: container, image: search:1, stage: apps}
environments:
  staging: {target: rehearse, skip: [search]}
previews: {from: staging}
"""


@pytest.fixture
def step(standin: GitHubStandin, tmp_path: Path, write_config: Callable[[str], Path]) -> Step:
    write_config(PIPELINE)
    return Step(standin, tmp_path)


def contexts(standin: GitHubStandin, sha: str, context: str) -> list[dict[str, Any]]:
    return [s for s in standin.statuses(sha) if s["context"] == context]


def test_a_pull_request_gets_statuses_a_deployment_and_one_comment_edited_in_place(
    step: Step, standin: GitHubStandin, tmp_path: Path
) -> None:
    """opened deploys the preview (pending → success, in_progress → success with the public
    URL, a comment), synchronize edits that same comment, closed deletes the preview and marks
    its deployments inactive; every request matched GitHub's description."""
    number = standin.add_pull("feature", head_sha=step.sha)
    name = f"pr-{number}"

    assert step(action="preview", event=pr_event(tmp_path, "opened", number, step.sha)) == 0
    statuses = contexts(standin, step.sha, f"deploy-pipeline/{name}")
    assert statuses[0]["state"] == "pending"
    assert statuses[-1]["state"] == "success"
    assert all(len(s["description"] or "") <= 140 for s in statuses)
    assert any("stage 2/2 apps" in (s["description"] or "") for s in statuses)
    assert statuses[-1]["target_url"] == f"https://github.example/{REPO}/actions/runs/4242"
    (deployment,) = standin.deployments()
    assert (deployment["environment"], deployment["ref"]) == (name, step.sha)
    assert deployment["transient_environment"] is True
    assert deployment["production_environment"] is False
    states = standin.deployment_statuses(deployment["id"])
    assert [s["state"] for s in states] == ["in_progress", "success"]
    assert states[-1]["environment_url"] == f"http://web.{name}.rehearse.simulated"
    assert states[-1]["log_url"] == f"https://github.example/{REPO}/actions/runs/4242"
    (comment,) = standin.comments(number)
    assert comment["body"].startswith(f"<!-- deploy-pipeline:preview:{name} -->")
    assert "| **web** | apps | ✅ succeeded |" in comment["body"]
    assert f"Skipped in `{name}`: `search`" in comment["body"]
    assert step.outputs["status"] == "succeeded"
    assert step.outputs["environment-url"] == f"http://web.{name}.rehearse.simulated"

    assert step(action="preview", event=pr_event(tmp_path, "synchronize", number, step.sha)) == 0
    (edited,) = standin.comments(number)
    assert edited["id"] == comment["id"]
    assert len(standin.deployments()) == 2

    assert step(action="preview", event=pr_event(tmp_path, "closed", number, step.sha)) == 0
    for d in standin.deployments():
        assert standin.deployment_statuses(d["id"])[-1]["state"] == "inactive"
    (gone,) = standin.comments(number)
    assert gone["id"] == comment["id"]
    assert "is gone" in gone["body"]
    assert standin.violations == []


def test_the_log_masks_secrets_first_and_groups_each_stage(step: Step) -> None:
    """Every secret value is masked before any other line; each stage is a group; the service's
    secret appears in no line but its mask, nor in the outputs or the summary."""
    assert step(environment="staging") == 0
    lines = step.log.splitlines()
    masks = [i for i, line in enumerate(lines) if line.startswith("::add-mask::")]
    first_other = next(i for i, line in enumerate(lines) if not line.startswith("::add-mask::"))
    assert max(masks) < first_other
    assert f"::add-mask::{CANARY}" in lines and f"::add-mask::{TOKEN}" in lines
    rest = "\n".join(lines[first_other:])
    assert CANARY not in rest and TOKEN not in rest
    assert CANARY not in step.summary and CANARY not in json.dumps(step.outputs)
    assert "::group::staging → rehearse: data" in lines
    assert "::group::staging → rehearse: apps" in lines
    assert lines.count("::endgroup::") == 2


def test_outputs_and_the_job_summary_describe_the_run(step: Step) -> None:
    """outputs carry the status, the public URL and every service; the summary has a Mermaid
    picture of the stages with the skipped service greyed, and the table."""
    assert step(environment="staging") == 0
    services = json.loads(step.outputs["services"])
    assert services["web"] == {
        "image": "nginx:1.27",
        "url": "http://web.staging.rehearse.simulated",
        "result": "succeeded",
        "target": "rehearse",
        "stage": "apps",
    }
    assert services["search"]["result"] == "skipped"
    assert "```mermaid\nflowchart LR" in step.summary
    assert "  class rehearse_apps_search skipped" in step.summary
    assert "rehearse_data --> rehearse_apps" in step.summary
    assert "| **api** | apps | ✅ succeeded |" in step.summary


def test_a_missing_permission_is_named_and_the_deploy_still_succeeds(
    step: Step, standin: GitHubStandin
) -> None:
    """A token without statuses: write gets GitHub's 403; the step says which permission to add,
    and the deploy, which succeeded, still does."""
    standin.add_token(TOKEN, permissions={"deployments": "write", "pull_requests": "write"})
    assert step(environment="staging") == 0
    assert (
        "::warning::GitHub refused to set the commit status of staging: the token lacks the "
        "statuses=write permission; give the workflow `permissions: statuses: write`"
    ) in step.log
    assert step.outputs["status"] == "succeeded"
    (deployment,) = standin.deployments()
    assert standin.deployment_statuses(deployment["id"])[-1]["state"] == "success"


def test_github_server_errors_are_retried(step: Step, standin: GitHubStandin) -> None:
    """Two 502s on creating the deployment are retried: one deployment, its statuses, no
    warning."""
    fault = standin.fail("POST", f"/repos/{REPO}/deployments", 502, times=2)
    assert step(environment="staging") == 0
    assert fault.hits == 2
    (deployment,) = standin.deployments()
    assert [s["state"] for s in standin.deployment_statuses(deployment["id"])] == [
        "in_progress",
        "success",
    ]
    assert "::warning::" not in step.log


def test_a_failed_deploy_fails_the_step_the_status_and_the_deployment(
    step: Step, standin: GitHubStandin, write_config: Callable[[str], Path]
) -> None:
    """A service that fails: exit 1, an ::error:: naming it, the commit status `failure` saying
    which service, and the deployment `failure`."""
    write_config(PIPELINE.replace("{kind: simulated}", "{kind: simulated, fail: {api: deploy}}"))
    assert step(environment="staging") == 1
    assert "::error::staging/rehearse api deploy failed: simulated failure" in step.log
    final = contexts(standin, step.sha, "deploy-pipeline/staging")[-1]
    assert final["state"] == "failure"
    assert final["description"].startswith("api deploy failed: simulated failure")
    (deployment,) = standin.deployments()
    assert standin.deployment_statuses(deployment["id"])[-1]["state"] == "failure"
    assert step.outputs["status"] == "failed"


def test_a_missing_required_input_is_a_clear_error(step: Step) -> None:
    """No environment (and not a preview): `::error::` saying what to set, exit 1."""
    assert step() == 1
    assert "::error::input environment is required" in step.log


def test_a_bad_pipeline_file_is_annotated_on_its_line(
    step: Step, write_config: Callable[[str], Path]
) -> None:
    """A config error becomes an annotation on the file's line, so it shows in the PR's diff."""
    write_config(PIPELINE.replace("port: 8000", "port: eighty"))
    assert step(environment="staging") == 1
    assert (
        "::error file=.deploy-pipeline.yml,line=8,title=deploy-pipeline::services.api.port: "
        "expected an integer, got 'eighty'"
    ) in step.log.splitlines()
    assert "::error::1 problem in the pipeline file, annotated on its lines" in step.log


def test_the_actions_token_permissions_are_enough(step: Step, standin: GitHubStandin) -> None:
    """A token with only what the README's workflow grants (statuses, deployments and
    pull-requests write) reports a preview completely, with no warning."""
    standin.add_token(
        TOKEN,
        permissions={"statuses": "write", "deployments": "write", "pull_requests": "write"},
    )
    number = standin.add_pull("feature", head_sha=step.sha)
    event = pr_event(step.workspace, "opened", number, step.sha)
    assert step(action="preview", event=event) == 0
    assert "::warning::" not in step.log
    assert len(standin.comments(number)) == 1
    assert standin.violations == []


def test_a_secondary_rate_limit_is_waited_out(step: Step, standin: GitHubStandin) -> None:
    """GitHub's secondary rate limit (403 with Retry-After) on a commit status is waited for and
    retried: the status is set, and nothing is reported as lost."""
    fault = standin.rate_limit("POST", f"/repos/{REPO}/statuses/*", secondary=True, retry_after=1)
    assert step(environment="staging") == 0
    assert fault.hits == 1
    assert contexts(standin, step.sha, "deploy-pipeline/staging")[-1]["state"] == "success"
    assert "::warning::" not in step.log


def test_a_kubeconfig_input_is_written_privately_and_its_credentials_masked(
    step: Step, tmp_path: Path
) -> None:
    """The kubeconfig input lands in a 0600 file under RUNNER_TEMP, and its token and key are
    masked before anything else is printed."""
    kubeconfig = (
        "apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n"
        "    token: kube-token-0f9e8d7c\n    client-key-data: a2V5LWRhdGEtc2VjcmV0\n"
    )
    assert step(environment="staging", kubeconfig=kubeconfig) == 0
    written = tmp_path / "tmp" / "deploy-pipeline" / "kubeconfig"
    assert written.stat().st_mode & 0o777 == 0o600
    lines = step.log.splitlines()
    assert lines[:2] == [
        f"::add-mask::{TOKEN}",
        "::add-mask::kube-token-0f9e8d7c",
    ]
    assert "::add-mask::a2V5LWRhdGEtc2VjcmV0" in lines[:4]


def test_cancelling_the_workflow_stops_the_run_and_says_so(
    step: Step, standin: GitHubStandin, write_config: Callable[[str], Path]
) -> None:
    """SIGTERM (GitHub cancelling the run) while the apps stage deploys: the run stops at its
    next safe point, the step fails, the commit status is `error` and the deployment `failure`."""
    write_config(
        PIPELINE.replace("{kind: simulated}", "{kind: simulated, durations: {web: {deploy: 30s}}}")
    )

    def cancel_when_web_deploys() -> None:
        eventually(
            lambda: any(
                "stage 2/2 apps" in (s["description"] or "") for s in standin.statuses(step.sha)
            ),
            timeout=20,
            message="the run reaching its apps stage",
        )
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=cancel_when_web_deploys)
    killer.start()
    code = step(environment="staging")
    killer.join()
    assert code == 1
    assert "run cancelled" in step.log
    assert contexts(standin, step.sha, "deploy-pipeline/staging")[-1]["state"] == "error"
    (deployment,) = standin.deployments()
    assert standin.deployment_statuses(deployment["id"])[-1]["state"] == "failure"
    assert step.outputs["status"] == "cancelled"


def test_on_pull_request_target_services_get_only_the_secrets_the_step_grants(
    step: Step, write_config: Callable[[str], Path]
) -> None:
    """On pull_request_target (the workspace's file may be the pull request's) a service naming
    a variable of the step that the `secrets` input does not list is refused on its line, and
    its value is neither handed out nor printed; listed, it is handed and masked."""
    write_config(PIPELINE.replace("secrets: [API_TOKEN]", "secrets: [API_TOKEN, RUNNER_TOKEN]"))
    assert step(environment="staging", event_name="pull_request_target") == 1
    advice = (
        "add it to the step's `secrets:` input (in the base branch's workflow) to hand it to "
        "the service"
    )
    assert [line for line in step.log.splitlines() if line.startswith("::error file=")] == [
        "::error file=.deploy-pipeline.yml,line=8,title=deploy-pipeline::services.api.secrets[0]: "
        f"'API_TOKEN' is not granted to 'api' by the step's `secrets` input (granted: none); "
        f"{advice}",
        "::error file=.deploy-pipeline.yml,line=8,title=deploy-pipeline::services.api.secrets[1]: "
        f"'RUNNER_TOKEN' is not granted to 'api' by the step's `secrets` input (granted: none); "
        f"{advice}",
    ]
    assert CANARY not in step.log
    write_config(PIPELINE)
    assert step(environment="staging", event_name="pull_request_target", secrets="API_TOKEN") == 0
    assert f"::add-mask::{CANARY}" in step.log.splitlines()


def test_the_secrets_input_limits_every_event_when_given(step: Step) -> None:
    """Given on any event, `secrets` is the list services may draw from; without it (and not on
    pull_request_target), the file's `secrets:` are the step's variables as before."""
    assert step(environment="staging", secrets="OTHER_TOKEN") == 1
    assert "services.api.secrets[0]: 'API_TOKEN' is not granted to 'api'" in step.log
    assert step(environment="staging") == 0


def test_on_pull_request_target_registry_credentials_go_only_to_the_named_registry(
    step: Step, write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    """On pull_request_target the registry password needs the `registry` input, and the
    credentials are written for that registry only, whatever `registry:` the file names."""
    write_config("registry: evil.example.com/x\n" + PIPELINE)
    credentials = {"registry_username": "ci", "registry_password": "registry-pass-77"}
    code = step(environment="staging", event_name="pull_request_target", **credentials)
    assert code == 1
    assert "::error::input registry is required with registry-password on " in step.log
    assert not (tmp_path / "tmp" / "deploy-pipeline" / "docker").exists()
    code = step(
        environment="staging",
        event_name="pull_request_target",
        secrets="API_TOKEN",
        registry="registry.example.com/acme",
        **credentials,
    )
    assert code == 0
    written = json.loads(
        (tmp_path / "tmp" / "deploy-pipeline" / "docker" / "config.json").read_text()
    )
    assert list(written["auths"]) == ["registry.example.com"]


BUILDS = """
version: 1
defaults: {build_ahead: true}
stages: [data, apps, web]
targets:
  rehearse:
    kind: simulated
    durations: {db: {deploy: 300ms}, api: {build: 50ms}, site: {build: 50ms}}
services:
  db: {type: database, image: postgres:16, stage: data}
  api: {type: application, build: ./api, port: 8000, stage: apps}
  worker: {type: application, build: ./api, stage: apps}
  site: {type: application, build: ./site, port: 80, stage: web}
environments:
  staging: {target: rehearse}
"""


def test_each_stage_is_one_group_while_builds_run_ahead(
    step: Step, write_config: Callable[[str], Path]
) -> None:
    """Builds of later stages run while the first deploys: each stage's group still opens once,
    and every line of a service stands in its own stage's group."""
    write_config(BUILDS)
    assert step(environment="staging") == 0, step.log
    lines = step.log.splitlines()
    titles = [line for line in lines if line.startswith("::group::")]
    assert titles == [f"::group::staging → rehearse: {s}" for s in ("data", "apps", "web")]
    stage_of = {"db": "data", "api": "apps", "worker": "apps", "site": "web"}
    group = None
    for line in lines:
        if line.startswith("::group::"):
            group = line.rsplit(": ", 1)[1]
        elif line == "::endgroup::":
            group = None
        elif "[" in line and "]  " in line:
            service = line.split("]  ", 1)[1].split()[0]
            assert group == stage_of[service], f"{line!r} printed in group {group}"


def test_without_a_token_the_log_says_the_input_is_empty(step: Step) -> None:
    """With no github-token input, the log says in a sentence that reporting is off and why."""
    assert step(environment="staging", **{"github-token": ""}) == 0
    assert "GitHub reporting is off: the github-token input is empty" in step.log.splitlines()


def test_hostile_text_never_starts_a_workflow_command_in_the_log() -> None:
    """Names and engine messages with line breaks and `::set-output`/`##[` commands are printed
    on one line each, shown and never obeyed: no line the runner would read as a command but
    the Action's own groups."""
    from deploy_pipeline.backends.base import StepContext, StepResult
    from deploy_pipeline.workflow_commands import Commands, StageGroups
    from tests.support.runner import harness

    hostile = "x\n::warning::owned\r\n  ::set-output name=status::hacked\n##[set-output name=a;]b"

    def answer(ctx: StepContext) -> StepResult:
        return StepResult(message=hostile, url=f"http://web/{hostile}")

    run = harness(BUILDS, ("staging",), hooks={"site.deploy": answer})
    run.execute()
    out = io.StringIO()
    groups = StageGroups(Commands(out), run.run.run_plan)
    for event in run.events.events:
        if event.service == "worker":  # a name from a hostile file, in a stage it names
            groups(dataclasses.replace(event, service=hostile, stage=f"apps{hostile}"))
        else:
            groups(event)
    groups.close()
    groups.flush(None)
    lines = out.getvalue().splitlines()
    commands = [line for line in lines if line.lstrip().startswith("::")]
    assert commands and all(c.startswith(("::group::", "::endgroup::")) for c in commands)
    assert all("\r" not in c and "##[" not in c for c in lines)
    (shown,) = [line for line in lines if "site deploy succeeded" in line]
    assert shown.split(" — ", 1)[1] == (
        "x⏎::warning::owned⏎  ::set-output name=status::hacked⏎# #[set-output name=a;]b  "
        "http://web/x⏎::warning::owned⏎  ::set-output name=status::hacked⏎# #[set-output name=a;]b"
    )


def test_the_release_a_deploy_makes_names_the_workflow_commit(step: Step, own_state: Path) -> None:
    """The Action's deploy records its release with GITHUB_SHA as the commit (DESIGN.md §9)."""
    assert step(environment="staging") == 0, step.log
    store = Store(own_state)
    try:
        release = store.latest_release("staging")
    finally:
        store.close()
    assert release is not None and release.commit == step.sha
    assert sorted(release.services) == ["api", "db", "web"]  # search is skipped in staging


MOVES = """
version: 1
stages: [data, apps]
targets:
  rehearse: {kind: simulated}
services:
  db: {type: database, image: postgres:16, port: 5432, stage: data}
  api: {type: application, build: ./api, port: 8000, stage: apps, env: {MODE: "${environment}"}}
  web: {type: container, image: nginx:1.27, port: 80, public: true, stage: apps}
environments:
  staging: {target: rehearse}
  production: {target: rehearse, production: true}
"""


def test_a_deploy_names_its_release_in_the_outputs_and_the_summary(
    step: Step, write_config: Callable[[str], Path]
) -> None:
    """The `release` output is the number the deploy recorded; with several environments a
    JSON object of environment → number, as `services` keys them; the summary names it."""
    write_config(MOVES)
    assert step(environment="staging") == 0, step.log
    assert step.outputs["release"] == "1"
    assert "Recorded as release **v1** of `staging`." in step.summary
    assert step.log.splitlines()[-2].startswith("deploy succeeded in ")
    assert step.log.splitlines()[-1] == (
        f"release v1 of staging on rehearse: deployed (commit {step.sha[:7]})"
    )
    assert step(environment="staging, production") == 0, step.log
    assert json.loads(step.outputs["release"]) == {"staging": 2, "production": 1}


@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        (
            {"action": "promote", "environment": "production"},
            "input from is required with action: promote: the environment whose latest "
            "release's images to deploy (e.g. `from: staging`)",
        ),
        (
            {"action": "deploy", "environment": "production", "from": "staging"},
            "input from is only for action: promote, and this step's action is deploy; remove "
            "`from:`, or set `action: promote` to deploy that environment's images",
        ),
        (
            {"action": "promote", "environment": "production", "from": "staging", "to": "1"},
            "input to is only for action: rollback, and this step's action is promote; remove "
            "`to:`, or set `action: rollback` to go back to that release",
        ),
        (
            {"action": "rollback", "environment": "staging", "to": "two"},
            "input to: expected a release number, a whole number from 1 up (3 for the v3 that "
            "`deploy-pipeline history` lists), got 'two'; leave it empty to roll back to the "
            "release before the latest",
        ),
        (
            {"action": "rollback", "environment": "staging", "to": "0"},
            "input to: expected a release number, a whole number from 1 up (3 for the v3 that "
            "`deploy-pipeline history` lists), got '0'; leave it empty to roll back to the "
            "release before the latest",
        ),
        (
            {"action": "rollback", "environment": "staging", "to": "²"},
            "input to: expected a release number, a whole number from 1 up (3 for the v3 that "
            "`deploy-pipeline history` lists), got '²'; leave it empty to roll back to the "
            "release before the latest",
        ),
    ],
)
def test_bad_promote_and_rollback_inputs_fail_the_step_saying_what_is_right(
    step: Step,
    standin: GitHubStandin,
    write_config: Callable[[str], Path],
    inputs: dict[str, str],
    error: str,
) -> None:
    """`promote` without `from`, `from` or `to` with another action, and a `to` that is not a
    whole number from 1 up: exit 1 and one ::error:: saying what would be right, before
    anything is touched (no commit status)."""
    write_config(MOVES)
    assert step(**inputs) == 1
    assert [line for line in step.log.splitlines() if line.startswith("::error")] == [
        f"::error::{error}"
    ]
    assert standin.statuses(step.sha) == []


def read_inputs() -> set[str]:
    """The inputs the Action's code reads: every `inputs.get/flag/names("name")`."""
    found = set()
    for module in ("action.py", "action_inputs.py"):
        tree = ast.parse((ROOT / "src" / "deploy_pipeline" / module).read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get", "flag", "names")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "inputs"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(str(node.args[0].value))
    return found


def test_action_yml_declares_every_input_read_and_every_output_written(step: Step) -> None:
    """action.yml lists exactly the inputs the code reads (promote's `from`, rollback's `to`
    among them) and the outputs a run writes (`release` among them)."""
    declared = yaml.safe_load((ROOT / "action.yml").read_text())
    assert set(declared["inputs"]) == read_inputs()
    assert {"from", "to"} <= set(declared["inputs"])
    assert step(environment="staging") == 0, step.log
    assert set(step.outputs) == set(declared["outputs"])
    assert "release" in step.outputs


def latest_images(state: Path, environment: str) -> dict[str, object]:
    """Each service's image in the environment's latest release, as the state database has it."""
    store = Store(state)
    try:
        release = store.latest_release(environment)
    finally:
        store.close()
    assert release is not None, f"{environment} has no release"
    return {name: entry["image"] for name, entry in release.services.items()}


def test_a_promotion_moves_stagings_images_to_production_and_reports_like_a_deploy(
    step: Step, standin: GitHubStandin, write_config: Callable[[str], Path], own_state: Path
) -> None:
    """action: promote with `from: staging` deploys staging's images to production with no
    build: the outputs give production's URL, services and release, the summary says what
    was promoted from where and the release made, and GitHub gets production's commit
    statuses and a Deployment with its URL, as for a deploy."""
    write_config(MOVES)
    assert step(environment="staging") == 0, step.log
    staging = latest_images(own_state, "staging")
    deployments_before = len(standin.deployments())

    assert step(action="promote", environment="production", **{"from": "staging"}) == 0, step.log
    assert step.outputs["status"] == "succeeded"
    assert step.outputs["release"] == "1"
    assert step.outputs["environment-url"] == "http://web.production.rehearse.simulated"
    services = json.loads(step.outputs["services"])
    assert {s: v["image"] for s, v in services.items()} == staging  # by digest
    assert latest_images(own_state, "production") == staging
    assert {v["result"] for v in services.values()} == {"succeeded"}
    assert " build " not in step.log and " test " not in step.log  # no build, no test step
    assert (
        "Promotion of the images of `staging`'s latest release, with `production`'s own "
        f"settings: recorded as release **v1** of `production` (commit `{step.sha[:7]}`)."
    ) in step.summary
    assert "## ✅ deploy-pipeline promote `production`: succeeded" in step.summary
    assert "(promoted)" in step.summary
    assert step.log.splitlines()[-1] == (
        f"release v1 of production on rehearse: promoted from staging (commit {step.sha[:7]})"
    )

    statuses = contexts(standin, step.sha, "deploy-pipeline/production")
    assert statuses[0]["state"] == "pending"
    assert statuses[-1]["state"] == "success"
    assert statuses[-1]["description"].startswith("promote succeeded in ")
    assert len(standin.deployments()) == deployments_before + 1
    deployment = standin.deployments()[-1]
    assert (deployment["environment"], deployment["ref"]) == ("production", step.sha)
    assert deployment["production_environment"] is True
    assert deployment["description"] == "deploy-pipeline promote of production from staging"
    states = standin.deployment_statuses(deployment["id"])
    assert [s["state"] for s in states] == ["in_progress", "success"]
    assert states[-1]["environment_url"] == "http://web.production.rehearse.simulated"
    assert standin.violations == []


def test_a_rollback_goes_back_to_the_release_before_or_the_one_named(
    step: Step, standin: GitHubStandin, write_config: Callable[[str], Path], own_state: Path
) -> None:
    """action: rollback with no `to` deploys again the release before the latest, with `to:
    2` that release; each records a new release, named in the `release` output and the
    summary, and GitHub gets a Deployment with the environment's URL."""
    write_config(MOVES)
    assert step(environment="staging") == 0, step.log
    first = latest_images(own_state, "staging")
    write_config(MOVES.replace("nginx:1.27", "nginx:1.28"))
    assert step(environment="staging") == 0, step.log
    second = latest_images(own_state, "staging")
    assert first["web"] != second["web"]

    assert step(action="rollback", environment="staging") == 0, step.log
    assert step.outputs["release"] == "3"
    assert json.loads(step.outputs["services"])["web"]["image"] == first["web"]
    assert (
        "Rollback to v1, its images and its settings: recorded as release **v3** of "
        f"`staging` (commit `{step.sha[:7]}`)."
    ) in step.summary
    deployment = standin.deployments()[-1]
    assert deployment["description"] == "deploy-pipeline rollback of staging to v1"
    states = standin.deployment_statuses(deployment["id"])
    assert [s["state"] for s in states] == ["in_progress", "success"]
    assert states[-1]["environment_url"] == "http://web.staging.rehearse.simulated"

    assert step(action="rollback", environment="staging", to="2") == 0, step.log
    assert step.outputs["release"] == "4"
    assert json.loads(step.outputs["services"])["web"]["image"] == second["web"]
    assert "Rollback to v2, its images and its settings" in step.summary
    assert standin.deployments()[-1]["description"] == ("deploy-pipeline rollback of staging to v2")
    assert standin.violations == []


def test_a_service_the_promoted_release_lacks_is_named_in_the_summary(
    step: Step, write_config: Callable[[str], Path]
) -> None:
    """A service staging skips is not in its release: promoting it to production leaves that
    service as it runs there, and the summary says so and why instead of calling it skipped
    by production."""
    write_config(
        MOVES.replace("staging: {target: rehearse}", "staging: {target: rehearse, skip: [web]}")
    )
    assert step(environment="staging") == 0, step.log
    assert step(action="promote", environment="production", **{"from": "staging"}) == 0, step.log
    assert json.loads(step.outputs["services"])["web"]["result"] == "skipped"
    assert "`web` keeps what it runs: not in staging's release v1." in step.summary
    assert "Skipped in `production`" not in step.summary


@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        (
            {"action": "rollback", "environment": "staging"},
            "::error::staging has no release to roll back: ",
        ),
        (
            {"action": "promote", "environment": "production", "from": "staging"},
            "::error::staging has no release to promote: ",
        ),
        (
            {"action": "rollback", "environment": "staging", "to": "99999999999999999999999"},
            "::error::staging has no release 9223372036854775807; its releases are v1 ",
        ),
        (  # past Python's 4,300 digits for int(): still a number no release has
            {"action": "rollback", "environment": "staging", "to": "9" * 5000},
            "::error::staging has no release 9223372036854775807; its releases are v1 ",
        ),
        (
            {"action": "rollback", "environment": "staging", "to": "0" * 30 + "7"},
            "::error::staging has no release 7; its releases are v1 ",
        ),
    ],
)
def test_nothing_to_move_fails_the_step_before_anything_is_touched(
    step: Step,
    standin: GitHubStandin,
    write_config: Callable[[str], Path],
    inputs: dict[str, str],
    error: str,
) -> None:
    """A rollback with no earlier release or to an unknown one, and a promotion from an
    environment with no release: exit 1, an ::error:: saying what to do, and no commit status
    or Deployment for the move."""
    write_config(MOVES)
    if "to" in inputs:
        assert step(environment="staging") == 0, step.log
    statuses, deployments = len(standin.statuses(step.sha)), len(standin.deployments())
    assert step(**inputs) == 1
    (line,) = [line for line in step.log.splitlines() if line.startswith("::error")]
    assert line.startswith(error)
    assert len(standin.statuses(step.sha)) == statuses
    assert len(standin.deployments()) == deployments


def test_a_failed_promotion_records_no_release_and_fails_like_a_deploy(
    step: Step, standin: GitHubStandin, write_config: Callable[[str], Path]
) -> None:
    """A promotion whose deploy step fails: exit 1, an empty `release` output, the summary
    saying no release was recorded, and production's status and Deployment `failure`."""
    write_config(
        MOVES.replace(
            "  rehearse: {kind: simulated}\n",
            "  rehearse: {kind: simulated}\n  live: {kind: simulated, fail: {web: deploy}}\n",
        ).replace("production: {target: rehearse", "production: {target: live")
    )
    assert step(environment="staging") == 0, step.log
    assert step(action="promote", environment="production", **{"from": "staging"}) == 1
    assert "::error::production/live web deploy failed: simulated failure" in step.log
    assert step.outputs["status"] == "failed"
    assert step.outputs["release"] == ""
    assert (
        "Promotion of the images of `staging`'s latest release, with `production`'s own "
        "settings: failed, no release recorded."
    ) in step.summary
    assert contexts(standin, step.sha, "deploy-pipeline/production")[-1]["state"] == "failure"
    deployment = standin.deployments()[-1]
    assert deployment["environment"] == "production"
    assert standin.deployment_statuses(deployment["id"])[-1]["state"] == "failure"


DOCKER_MOVES = """
version: 1
targets:
  laptop: {kind: docker}
services:
  web: {type: application, build: ./web, port: 8080, health: /healthz, public: true}
environments:
  STAGING: {target: laptop}
  PRODUCTION: {target: laptop}
"""


@pytest.mark.engine
def test_on_a_fresh_runner_a_promotion_reads_the_source_release_back_from_the_target(
    step: Step,
    standin: GitHubStandin,
    write_config: Callable[[str], Path],
    docker_env: DockerBed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A workflow run whose workspace has no state database (a fresh runner) promotes what an
    earlier run deployed to staging: the source's release is read back from the containers'
    labels, as `env recover` does, and production runs staging's image; a rollback there, with
    no history to go back to, says how to keep the history between workflow runs."""
    suffix = uuid.uuid4().hex[:6]
    staging, production = f"stg-{suffix}", f"prd-{suffix}"
    write_config(DOCKER_MOVES.replace("STAGING", staging).replace("PRODUCTION", production))
    busybox_context(tmp_path / "web", HTTPD, extra="EXPOSE 8080")
    monkeypatch.setenv("DEPLOY_PIPELINE_STATE", str(tmp_path / "first-runner" / "state.db"))
    assert step(environment=staging) == 0, step.log

    monkeypatch.setenv("DEPLOY_PIPELINE_STATE", str(tmp_path / "second-runner" / "state.db"))
    assert step(action="promote", environment=production, **{"from": staging}) == 0, step.log
    assert f"read back from laptop: release v1 of {staging} on laptop: deployed" in step.log
    assert step.outputs["release"] == "1"
    assert step.log.splitlines()[-1].startswith(
        f"release v1 of {production} on laptop: promoted from {staging}"
    )

    def image(environment: str) -> str:
        (container,) = docker_env.cli(
            "ps", "-q", "--filter", f"label=io.deploy-pipeline.environment={environment}"
        ).split()
        return docker_env.cli("inspect", "-f", "{{.Image}}", container)

    assert image(production) == image(staging) != ""

    monkeypatch.setenv("DEPLOY_PIPELINE_STATE", str(tmp_path / "third-runner" / "state.db"))
    assert step(action="rollback", environment=production) == 1
    (error,) = [line for line in step.log.splitlines() if line.startswith("::error")]
    assert error.startswith(f"::error::{production} has only one release (v1)")
    assert error.endswith(
        f"had no release of {production}: a target keeps only its latest release, and the "
        "ones before it are in the state database of the runs that made them (.deploy-pipeline/ "
        "beside the pipeline file). Keep that folder between runs (in a GitHub workflow: "
        "actions/cache) to roll back past the latest release"
    )


KUBE_MOVES = """
version: 1
targets:
  eu: {kind: kubernetes}
services:
  api: {type: container, image: "api:1", port: 8000, env: {TIER: "${environment}"}}
environments:
  STAGING: {target: eu}
  PRODUCTION: {target: eu, services: {api: {replicas: 2}}}
"""


@pytest.mark.engine
def test_the_kubeconfig_input_reaches_the_cluster_for_a_deploy_and_a_promotion(
    step: Step,
    write_config: Callable[[str], Path],
    kubeconfig: Path,
    kube_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the cluster's kubeconfig given only as the `kubeconfig` input (no KUBECONFIG, no
    ~/.kube/config), a deploy of staging and its promotion to production by a runner with no
    state database reach the cluster: production reads staging's release back from its
    namespace and records its own."""
    production = f"t-{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_config(KUBE_MOVES.replace("STAGING", kube_namespace).replace("PRODUCTION", production))
    content = kubeconfig.read_text()
    try:
        assert step(environment=kube_namespace, kubeconfig=content) == 0, step.log
        assert step.outputs["release"] == "1"
        monkeypatch.setenv("DEPLOY_PIPELINE_STATE", str(tmp_path / "second-runner" / "state.db"))
        assert (
            step(
                action="promote",
                environment=production,
                kubeconfig=content,
                **{"from": kube_namespace},
            )
            == 0
        ), step.log
        assert f"read back from eu: release v1 of {kube_namespace} on eu: deployed" in step.log
        assert step.outputs["release"] == "1"
        assert json.loads(step.outputs["services"])["api"]["image"].startswith("api")
    finally:
        delete_namespace(kubeconfig, production)
    assert "KUBECONFIG" not in os.environ  # the step's, not left behind in the process
