"""The kubernetes target on a real control plane (kube-apiserver, controller-manager, scheduler,
etcd, and kwok for the nodes): rollouts, jobs, stage order, stop/restart/delete, the environment
record and secrets (DESIGN.md §1–§3)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from deploy_pipeline.cli import main
from tests.support.docker_testbed import DockerBed, busybox_context
from tests.support.kube_testbed import control_plane_pid

pytestmark = pytest.mark.engine

PIPELINE = """
version: 1
stages: [data, jobs, apps]
targets:
  eu: {{kind: kubernetes, domain: "{{service}}.{{environment}}.example.test"}}
services:
  db: {{type: database, image: postgres:16, port: 5432, stage: data}}
  migrate: {{type: job, image: migrate:1, command: [migrate], stage: jobs}}
  report: {{type: job, image: report:1, schedule: "0 3 * * *", stage: jobs}}
  api: {{type: container, image: api:1, port: 8000, health: /healthz, replicas: 2,
        secrets: [API_TOKEN], stage: apps}}
  web: {{type: container, image: nginx:1.27, port: 80, public: true, stage: apps}}
environments:
  {env}: {{target: eu, skip: [report]}}
"""


@pytest.fixture
def env(kube_namespace: str) -> str:
    """An environment (namespace) of this test's own, removed afterwards."""
    return kube_namespace


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    """Run the CLI with JSON lines; a failure shows what the user would have read on stderr."""
    code = main([*args, "--events", "jsonl"])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    if code not in (0, 1) or (code == 1 and not events):
        pytest.fail(f"deploy-pipeline {' '.join(args)} exited {code}:\n{err}")
    return code, events


def test_an_environment_rolls_out_stage_by_stage(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deployments become Available, the Job completes, the CronJob appears (when deployed on
    its own), and no deploy of a stage starts before the one before is done."""
    monkeypatch.setenv("API_TOKEN", "token-for-the-test-0042")
    path = str(write_config(PIPELINE.format(env=env)))
    code, events = run(capsys, "deploy", "-f", path, "-e", env)
    assert code == 0, events[-1]
    ends = {e["service"]: e for e in events if e["status"] == "succeeded"}
    starts = {e["service"]: e for e in events if e["status"] == "started"}
    assert ends["db"]["ts"] <= starts["migrate"]["ts"]
    assert ends["migrate"]["ts"] <= min(starts["api"]["ts"], starts["web"]["ts"])
    assert ends["web"]["url"] == f"http://web.{env}.example.test"
    api = k8s["apps"].read_namespaced_deployment("api", env)
    assert api.status.available_replicas == 2
    assert k8s["apps"].read_namespaced_stateful_set("db", env).status.ready_replicas == 1
    jobs = k8s["batch"].list_namespaced_job(env).items
    assert [j.status.succeeded for j in jobs] == [1]
    assert not k8s["batch"].list_namespaced_cron_job(env).items  # report is skipped
    code, _ = run(capsys, "deploy", "-f", path, "-e", env, "--service", "report")
    assert code == 0
    assert [c.spec.schedule for c in k8s["batch"].list_namespaced_cron_job(env).items] == [
        "0 3 * * *"
    ]


def test_the_namespace_records_the_environment_and_secrets_stay_in_the_secret(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The environment's record (skipped services) is read back from the namespace with no
    store; the secret's value is in the Secret only, not in any annotation or event."""
    monkeypatch.setenv("API_TOKEN", "token-for-the-test-0042")
    path = str(write_config(PIPELINE.format(env=env)))
    code, events = run(capsys, "deploy", "-f", path, "-e", env)
    assert code == 0
    ns = k8s["core"].read_namespace(env)
    record = json.loads(ns.metadata.annotations["deploy-pipeline.io/environment-record"])
    assert record["skipped"] == ["report"]
    secret = k8s["core"].read_namespaced_secret("deploy-pipeline-secrets", env)
    assert sorted(secret.data) == ["API_TOKEN"]
    deployment = k8s["apps"].read_namespaced_deployment("api", env)
    assert "token-for-the-test-0042" not in json.dumps(deployment.to_dict(), default=str)
    assert "token-for-the-test-0042" not in json.dumps(events)


def test_stop_scales_to_zero_restart_rolls_and_delete_removes_the_namespace(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """stop scales to 0 (and a later deploy scales back), restart stamps restartedAt and rolls
    out, delete removes the namespace, skipped services included."""
    monkeypatch.setenv("API_TOKEN", "token-t")
    path = str(write_config(PIPELINE.format(env=env)))
    assert run(capsys, "deploy", "-f", path, "-e", env)[0] == 0
    assert run(capsys, "deploy", "-f", path, "-e", env, "--service", "report")[0] == 0
    assert run(capsys, "stop", "-f", path, "-e", env)[0] == 0
    assert k8s["apps"].read_namespaced_deployment("api", env).spec.replicas == 0
    assert k8s["apps"].read_namespaced_stateful_set("db", env).spec.replicas == 0
    assert run(capsys, "deploy", "-f", path, "-e", env)[0] == 0  # takes replicas back
    assert k8s["apps"].read_namespaced_deployment("api", env).status.available_replicas == 2
    assert run(capsys, "restart", "-f", path, "-e", env)[0] == 0
    template = k8s["apps"].read_namespaced_deployment("api", env).spec.template.metadata
    assert "kubectl.kubernetes.io/restartedAt" in template.annotations
    code, events = run(capsys, "delete", "-f", path, "-e", env)
    assert code == 0, events[-1]
    assert "report" in {e["service"] for e in events if e["status"] == "succeeded"}
    names = [n.metadata.name for n in k8s["core"].list_namespace().items]
    assert env not in names


def test_restart_of_a_service_never_deployed_says_to_deploy_it(
    env: str,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A restart before any deploy fails with what to do."""
    path = str(write_config(PIPELINE.format(env=env)))
    code, events = run(capsys, "restart", "-f", path, "-e", env, "--service", "web")
    assert code == 1
    assert f"web is not deployed in {env} on target eu: deploy it first" in events[-1]["message"]


def test_a_wrong_context_is_a_clear_error(
    kube_env: Path,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A target naming a context the kubeconfig lacks says so before anything runs."""
    path = write_config(
        "version: 1\ntargets: {eu: {kind: kubernetes, context: nowhere}}\n"
        "services: {web: {type: container, image: nginx}}\nenvironments: {e: {}}\n"
    )
    assert main(["deploy", "-f", str(path), "-e", "e"]) == 1
    err = capsys.readouterr().err
    assert "target 'eu' cannot reach its cluster (context nowhere of KUBECONFIG)" in err


def test_a_pod_that_cannot_be_scheduled_fails_the_stage_with_the_reason(
    env: str,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Asking for more CPU than any node has leaves the pod Pending: the deploy fails at its
    timeout saying why, and the next stage never starts."""
    path = write_config(
        "version: 1\nstages: [big, after]\ntargets: {eu: {kind: kubernetes}}\nservices:\n"
        "  huge: {type: container, image: huge:1, resources: {cpu: '1000'}, timeout: 4s,"
        " stage: big}\n"
        "  later: {type: container, image: later:1, stage: after}\n"
        f"environments: {{{env}: {{}}}}\n"
    )
    code, events = run(capsys, "deploy", "-f", str(path), "-e", env)
    assert code == 1
    failed = next(e for e in events if e["status"] == "failed")
    assert failed["service"] == "huge"
    assert "Deployment huge: 0/1 ready at the timeout" in failed["message"]
    assert "Unschedulable" in failed["message"] and "Insufficient cpu" in failed["message"]
    later = [e["status"] for e in events if e["service"] == "later"]
    assert later == ["cancelled"]


def test_fields_another_tool_owns_are_a_clear_error_until_forced(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After someone scales a Deployment by hand, a deploy names the owner and refuses;
    `--force-conflicts` takes the field back."""
    path = str(
        write_config(
            "version: 1\ntargets: {eu: {kind: kubernetes}}\nservices:\n"
            "  web: {type: container, image: web:1, replicas: 2}\n"
            f"environments: {{{env}: {{}}}}\n"
        )
    )
    assert run(capsys, "deploy", "-f", path, "-e", env)[0] == 0
    k8s["apps"].patch_namespaced_deployment(
        "web", env, {"spec": {"replicas": 5}}, field_manager="kubectl-edit"
    )
    path_text = Path(path).read_text().replace("replicas: 2", "replicas: 3")
    Path(path).write_text(path_text)
    code, events = run(capsys, "deploy", "-f", path, "-e", env)
    assert code == 1
    message = next(e["message"] for e in events if e["status"] == "failed")
    assert "owned by kubectl-edit" in message
    assert "--force-conflicts to take them over" in message
    assert run(capsys, "deploy", "-f", path, "-e", env, "--force-conflicts")[0] == 0
    assert k8s["apps"].read_namespaced_deployment("web", env).spec.replicas == 3


def test_an_api_server_paused_for_ten_seconds_mid_deploy_is_ridden_out(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
) -> None:
    """With the API server frozen for 10 s while a deploy runs, the deploy finishes once it is
    back (requests answer late, transient errors are retried), and a delete leaves nothing."""
    apiserver = control_plane_pid("kube-apiserver")
    services = "".join(
        f"  s{i}: {{type: container, image: s:{i}, stage: {'ab'[i % 2]}}}\n" for i in range(6)
    )
    path = str(
        write_config(
            "version: 1\nstages: [a, b]\ntargets: {eu: {kind: kubernetes}}\n"
            f"services:\n{services}environments: {{{env}: {{}}}}\n"
        )
    )
    deploy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploy_pipeline",
            "deploy",
            "-f",
            path,
            "-e",
            env,
            "--events",
            "jsonl",
        ],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert deploy.stdout is not None
    for line in deploy.stdout:  # the first deploy has started: freeze the API server
        if '"started"' in line:
            break
    os.kill(apiserver, signal.SIGSTOP)
    try:
        time.sleep(10)  # the outage itself, not a wait for something to happen
    finally:
        os.kill(apiserver, signal.SIGCONT)
    rest, err = deploy.communicate(timeout=120)
    events = [json.loads(x) for x in rest.splitlines()]
    assert deploy.returncode == 0, err + json.dumps(events[-1:])
    assert events[-1]["status"] == "succeeded"
    available = [
        d.status.available_replicas for d in k8s["apps"].list_namespaced_deployment(env).items
    ]
    assert available == [1] * 6
    assert main(["delete", "-f", path, "-e", env]) == 0
    assert env not in [n.metadata.name for n in k8s["core"].list_namespace().items]


def test_deleting_a_clone_removes_a_skipped_service_deployed_on_its_own(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A clone inherits the skip set (report is left out), report is then deployed on its own,
    and deleting the clone removes it too, with the clone's namespace and its record."""
    monkeypatch.setenv("API_TOKEN", "token-t")
    path = str(write_config(PIPELINE.format(env=env)))
    clone = f"{env}-pr1"
    assert main(["env", "clone", env, clone, "-f", path]) == 0
    capsys.readouterr()
    try:
        code, events = run(capsys, "deploy", "-f", path, "-e", clone)
        assert code == 0
        assert [e["service"] for e in events if e["status"] == "skipped"] == ["report"]
        assert run(capsys, "deploy", "-f", path, "-e", clone, "--service", "report")[0] == 0
        assert k8s["batch"].list_namespaced_cron_job(clone).items
        record = json.loads(
            k8s["core"]
            .read_namespace(clone)
            .metadata.annotations["deploy-pipeline.io/environment-record"]
        )
        assert record == {"pull_request": None, "skipped": ["report"], "source": env}
        assert run(capsys, "delete", "-f", path, "-e", clone)[0] == 0
        assert clone not in [n.metadata.name for n in k8s["core"].list_namespace().items]
        main(["env", "list", "-f", path])
        assert clone not in capsys.readouterr().out
    finally:
        with contextlib.suppress(client.ApiException):
            k8s["core"].delete_namespace(clone)


def test_environments_are_read_back_from_the_cluster_when_the_store_is_gone(
    env: str,
    k8s: dict[str, Any],
    own_state: Path,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the state database deleted, `env recover` restores a clone's source and skip set and
    the file environment's skip change from the namespaces, and a delete of a clone nobody here
    knows reads its record by itself and removes it."""
    monkeypatch.setenv("API_TOKEN", "token-t")
    path = str(write_config(PIPELINE.format(env=env)))
    clones = [f"{env}-a", f"{env}-b"]
    try:
        assert main(["env", "skip", env, "web", "-f", path]) == 0
        for clone in clones:
            assert main(["env", "clone", env, clone, "-f", path]) == 0
        assert main(["env", "unskip", clones[0], "report", "-f", path]) == 0
        capsys.readouterr()
        for name in [env, *clones]:
            assert run(capsys, "deploy", "-f", path, "-e", name, "--service", "api")[0] == 0
        for leftover in own_state.parent.glob("state.db*"):
            leftover.unlink()
        capsys.readouterr()
        main(["env", "list", "-f", path, "--format", "json"])
        assert [e["name"] for e in json.loads(capsys.readouterr().out)["environments"]] == [env]

        assert main(["env", "recover", clones[0], env, "-f", path]) == 0
        said = capsys.readouterr().out.splitlines()
        assert said[:2] == [
            f"✔ {env} skips report, web",
            f"✔ {clones[0]}, clone of {env}, skips web",
        ]
        assert sorted(said[2:]) == sorted(  # and their latest releases, from the namespaces
            [
                f"✔ {env}: release v1 on eu (run 1, 1 service)",
                f"✔ {clones[0]}: release v1 on eu (run 2, 1 service)",
            ]
        )
        main(["env", "list", "-f", path, "--format", "json"])
        listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)["environments"]}
        assert sorted(listed) == [env, clones[0]]
        assert listed[clones[0]]["source"] == env
        assert listed[clones[0]]["skipped"] == ["web"]
        assert listed[env]["skipped"] == ["report", "web"]

        code = main(["delete", "-f", path, "-e", clones[1]])
        assert code == 0
        out = capsys.readouterr().out
        assert f"read back from the targets: {clones[1]}, clone of {env}, skips report, web" in out
        assert clones[1] not in [n.metadata.name for n in k8s["core"].list_namespace().items]
        # this test's environments only: the cluster is shared with other tests and sessions
        assert main(["env", "recover", env, *clones, "-f", path]) == 0
        assert "nothing to read back" in capsys.readouterr().out
    finally:
        for clone in clones:
            with contextlib.suppress(client.ApiException):
                k8s["core"].delete_namespace(clone)


def test_a_rehearsal_of_a_kubernetes_target_says_which_images_it_would_reuse(
    env: str,
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After a real deploy, `plan` and `deploy --dry-run` of a kubernetes target say, by content
    hash against the registry, that the unchanged build would be reused and the edited one
    built; the rehearsal's steps last what they last took."""
    for name in ("same", "edited"):
        busybox_context(tmp_path / name, f"echo {name}")
        (tmp_path / name / "nonce").write_text(f"{name} {time.time_ns()}")
    path = str(
        write_config(
            f"version: 1\nregistry: {docker_env.registry}/kube-rehearse\n"
            "targets: {eu: {kind: kubernetes}}\nservices:\n"
            "  same: {type: job, build: ./same}\n  edited: {type: job, build: ./edited}\n"
            f"environments: {{{env}: {{target: eu}}}}\n"
        )
    )
    code, real = run(capsys, "deploy", "-f", path, "-e", env)
    assert code == 0, real
    took = {
        (e["service"], e["phase"]): e["duration"]
        for e in real
        if e["status"] == "succeeded" and e["phase"] != "run"
    }
    (tmp_path / "edited" / "nonce").write_text(f"changed {time.time_ns()}")
    assert main(["plan", "-f", path, "-e", env]) == 0
    planned = capsys.readouterr().out
    code, rehearsal = run(capsys, "deploy", "-f", path, "-e", env, "--dry-run")
    assert code == 0
    builds = {
        e["service"]: (e["status"], e["message"].split(" (rehearsal")[0], e["duration"])
        for e in rehearsal
        if e["phase"] == "build" and e["status"] != "started"
    }
    assert builds["same"][0] == "reused"
    assert builds["same"][1].startswith(f"reused: {docker_env.registry}/kube-rehearse/same:")
    assert builds["edited"][0] == "succeeded"
    assert builds["edited"][1].startswith("to build: ")
    assert builds["same"][1] in planned and builds["edited"][1] in planned
    assert builds["edited"][2] >= took[("edited", "build")] > 0


def test_deployments_run_with_their_environments_resolved_settings(
    env: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Deployment gets the environment's replicas, image and env (DESIGN.md §8), `${url:web}`
    being the URL web's deploy reported from the earlier stage."""
    path = write_config(
        "version: 1\nstages: [front, back]\n"
        'targets: {eu: {kind: kubernetes, domain: "{service}.{environment}.example.test"}}\n'
        "services:\n"
        "  web: {type: container, image: nginx:1.27, port: 80, public: true, stage: front}\n"
        "  api: {type: container, image: api:1, port: 8000, stage: back, env: {LAYER: service}}\n"
        "environments:\n"
        f"  {env}:\n"
        "    target: eu\n"
        "    env: {LAYER: environment, NAME: '${environment}'}\n"
        "    services:\n"
        "      api: {replicas: 3, image: 'api:2', env: {WEB: '${url:web}'}}\n"
    )
    code, events = run(capsys, "deploy", "-f", str(path), "-e", env)
    assert code == 0, events[-1]
    api = k8s["apps"].read_namespaced_deployment("api", env)
    assert api.spec.replicas == 3
    [container] = api.spec.template.spec.containers
    assert container.image == "api:2"
    assert {e.name: e.value for e in container.env} == {
        "LAYER": "environment",
        "NAME": env,
        "WEB": f"http://web.{env}.example.test",
    }


def test_the_namespace_keeps_the_latest_release_and_recover_restores_it(
    env: str,
    k8s: dict[str, Any],
    own_state: Path,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After two deploys the namespace's `deploy-pipeline.io/release` annotation holds release
    2, every service with its image and settings (api carried over from release 1); with the
    state database deleted, `env recover` restores it and `history` shows it again."""
    monkeypatch.setenv("API_TOKEN", "token-for-the-test-0042")
    path = str(write_config(PIPELINE.format(env=env)))
    assert run(capsys, "deploy", "-f", path, "-e", env)[0] == 0
    assert run(capsys, "deploy", "-f", path, "-e", env, "--service", "web")[0] == 0
    ns = k8s["core"].read_namespace(env)
    kept = json.loads(ns.metadata.annotations["deploy-pipeline.io/release"])
    assert (kept["id"], kept["run"], kept["target"]) == (2, 2, "eu")
    assert sorted(kept["services"]) == ["api", "db", "migrate", "web"]
    assert kept["services"]["api"]["image"] == "api:1"  # prebuilt, not pushed by us: its name
    assert kept["services"]["api"]["replicas"] == 2
    assert "token-for-the-test-0042" not in json.dumps(kept)

    for leftover in own_state.parent.glob("state.db*"):
        leftover.unlink()
    assert main(["env", "recover", env, "-f", path]) == 0
    assert f"✔ {env}: release v2 on eu (run 2, 4 services)" in capsys.readouterr().out
    assert main(["history", "-f", path, "-e", env, "--format", "json"]) == 0
    [restored] = json.loads(capsys.readouterr().out)["releases"]
    assert restored["id"] == 2
    assert restored["services"] == kept["services"]
