"""Private registries and TLS on a real control plane (DESIGN.md §11): the Docker login for the
pipeline's `registry:` becomes an image pull Secret that every workload pulling from it names, a
prebuilt image's `registry_auth:` its own, and a public service's Ingress serves https. The kwok
nodes pull no image, so the pull is proven by the objects: the Secret exists with the login and
the pod templates name it (the kubelet pulls with exactly these on a real node)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from deploy_pipeline.backends import manifests
from deploy_pipeline.backends.registry_login import Login
from deploy_pipeline.cli import main
from deploy_pipeline.model import Service, Tls
from tests.support.action_step import Step
from tests.support.github_standin import GitHubStandin

pytestmark = pytest.mark.engine

PIPELINE = """
version: 1
registry: registry.example.test/acme
stages: [data, jobs, apps]
targets:
  eu: {{kind: kubernetes, domain: "{{service}}.{{environment}}.example.test"{tls}}}
services:
  db: {{type: database, image: registry.example.test/acme/postgres:16, port: 5432, stage: data}}
  migrate: {{type: job, image: registry.example.test/acme/migrate:1, stage: jobs}}
  report: {{type: job, image: registry.example.test/acme/report:1, schedule: "0 3 * * *",
           stage: jobs}}
  api: {{type: container, image: registry.example.test/acme/api:1, port: 8000, stage: apps}}
  tool: {{type: container, image: ghcr.example.test/team/tool:2, stage: apps,
         registry_auth: {{username: TOOL_USER, password: TOOL_TOKEN}}}}
  web: {{type: container, image: nginx:1.27, port: 80, public: true, stage: apps}}
environments:
  {env}: {{target: eu}}
"""
PASSWORD = "registry-pass-0042"
TOOL_TOKEN = "ghcr-token-0042"
OTHER = "other-registry-pass-0042"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The Docker client's config as `docker login` (or the Action) leaves it: a login for the
    pipeline's registry beside logins for other registries, which must stay on this machine."""
    folder = tmp_path / "docker"
    folder.mkdir()
    auths = {
        "registry.example.test": {"auth": b64(f"ci-user:{PASSWORD}")},
        "other.example.test": {"auth": b64(f"someone:{OTHER}")},
        "https://index.docker.io/v1/": {"auth": b64(f"hubuser:{OTHER}")},
    }
    (folder / "config.json").write_text(json.dumps({"auths": auths}), encoding="utf-8")
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.setenv("TOOL_USER", "tool-bot")
    monkeypatch.setenv("TOOL_TOKEN", TOOL_TOKEN)
    return folder


def deploy(
    capsys: pytest.CaptureFixture[str], path: Path, env: str, *more: str
) -> tuple[list[dict[str, Any]], str]:
    """Deploy with JSON lines; the events and what the user read on stderr."""
    code = main(["deploy", "-f", str(path), "-e", env, *more, "--events", "jsonl"])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err + (json.dumps(events[-1]) if events else "")
    return events, err


def pull_secrets(obj: Any) -> list[str]:
    spec = obj.spec.template.spec if hasattr(obj.spec, "template") else None
    if spec is None:  # a CronJob
        spec = obj.spec.job_template.spec.template.spec
    return [ref.name for ref in spec.image_pull_secrets or []]


def dockerconfig(secret: Any) -> Any:
    assert secret.type == "kubernetes.io/dockerconfigjson"
    assert sorted(secret.data) == [".dockerconfigjson"]
    return json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))


def test_workloads_pull_through_the_registrys_login_and_their_own(
    kube_namespace: str,
    k8s: dict[str, Any],
    docker_config: Path,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The pipeline registry's login (and no other registry's) is a dockerconfigjson Secret
    that the Deployment, StatefulSet, Job and CronJob pulling from it name; the prebuilt image
    from another registry names its own Secret of its `registry_auth:` (gone with the service's
    delete); Docker Hub's nginx names none; no password reaches the events, the output or any
    container's env."""
    env = kube_namespace
    path = write_config(PIPELINE.format(env=env, tls=""))
    events, err = deploy(capsys, path, env)
    core, apps, batch = k8s["core"], k8s["apps"], k8s["batch"]

    registry = dockerconfig(core.read_namespaced_secret("deploy-pipeline-registry", env))
    assert registry == {
        "auths": {
            "registry.example.test": {
                "username": "ci-user",
                "password": PASSWORD,
                "auth": b64(f"ci-user:{PASSWORD}"),
            }
        }
    }
    own = dockerconfig(core.read_namespaced_secret("tool-registry-auth", env))
    assert own == {
        "auths": {
            "ghcr.example.test": {
                "username": "tool-bot",
                "password": TOOL_TOKEN,
                "auth": b64(f"tool-bot:{TOOL_TOKEN}"),
            }
        }
    }

    workloads = {
        "api": apps.read_namespaced_deployment("api", env),
        "db": apps.read_namespaced_stateful_set("db", env),
        "report": batch.read_namespaced_cron_job("report", env),
        "migrate": batch.list_namespaced_job(env).items[0],
        "tool": apps.read_namespaced_deployment("tool", env),
        "web": apps.read_namespaced_deployment("web", env),
    }
    assert {name: pull_secrets(w) for name, w in workloads.items()} == {
        "api": ["deploy-pipeline-registry"],
        "db": ["deploy-pipeline-registry"],
        "report": ["deploy-pipeline-registry"],
        "migrate": ["deploy-pipeline-registry"],
        "tool": ["tool-registry-auth"],
        "web": [],
    }
    # the login's variables are the pull Secret's only: not a container's env, not the Secret
    # of the services' own secrets (which, with no `secrets:` here, is not made at all)
    assert workloads["tool"].spec.template.spec.containers[0].env is None
    names = [s.metadata.name for s in core.list_namespaced_secret(env).items]
    assert "deploy-pipeline-secrets" not in names

    shown = json.dumps(events) + err
    for secret in (PASSWORD, TOOL_TOKEN, OTHER, b64(f"ci-user:{PASSWORD}")):
        assert secret not in shown
    for obj in workloads.values():
        assert PASSWORD not in json.dumps(obj.to_dict(), default=str)

    # the service's own login goes with it; the environment's stays for the others
    code = main(["delete", "-f", str(path), "-e", env, "--service", "tool", "--events", "jsonl"])
    assert code == 0, capsys.readouterr().err
    names = [s.metadata.name for s in core.list_namespaced_secret(env).items]
    assert "tool-registry-auth" not in names
    assert "deploy-pipeline-registry" in names


def test_without_a_login_nothing_is_made_and_nothing_named(
    kube_namespace: str,
    k8s: dict[str, Any],
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A registry the Docker client has no login for is pulled anonymously: no pull Secret in
    the namespace, and no workload names one."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no config.json at all
    env = kube_namespace
    text = PIPELINE.format(env=env, tls="").replace(
        "  tool: {type: container, image: ghcr.example.test/team/tool:2, stage: apps,\n"
        "         registry_auth: {username: TOOL_USER, password: TOOL_TOKEN}}\n",
        "",
    )
    assert "tool" not in text
    deploy(capsys, write_config(text), env, "--service", "api", "--service", "report")
    assert [s.type for s in k8s["core"].list_namespaced_secret(env).items].count(
        "kubernetes.io/dockerconfigjson"
    ) == 0
    assert pull_secrets(k8s["apps"].read_namespaced_deployment("api", env)) == []
    assert pull_secrets(k8s["batch"].read_namespaced_cron_job("report", env)) == []


def test_a_public_service_serves_https_through_cert_manager_or_an_existing_secret(
    kube_namespace: str,
    k8s: dict[str, Any],
    docker_config: Path,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With `tls: {issuer}` the Ingress carries cert-manager's annotation and a `tls:` section
    for its host, and the deploy reports an https URL; switched to `tls: {secret}`, the same
    Ingress serves that Secret and the annotation is gone."""
    env = kube_namespace
    path = write_config(PIPELINE.format(env=env, tls=", tls: {issuer: letsencrypt}"))
    events, _ = deploy(capsys, path, env, "--service", "web")
    host = f"web.{env}.example.test"
    done = [e for e in events if e["service"] == "web" and e["status"] == "succeeded"]
    assert done[-1]["url"] == f"https://{host}"
    ingress = k8s["net"].read_namespaced_ingress("web", env)
    assert ingress.metadata.annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert [(t.hosts, t.secret_name) for t in ingress.spec.tls] == [([host], "web-tls")]

    path = write_config(PIPELINE.format(env=env, tls=", tls: {secret: wildcard-tls}"))
    events, _ = deploy(capsys, path, env, "--service", "web")
    assert [e["url"] for e in events if e.get("url")] == [f"https://{host}"]
    ingress = k8s["net"].read_namespaced_ingress("web", env)
    assert "cert-manager.io/cluster-issuer" not in (ingress.metadata.annotations or {})
    assert [(t.hosts, t.secret_name) for t in ingress.spec.tls] == [([host], "wildcard-tls")]


PLURALS = {
    "Deployment": "apps/v1/namespaces/{ns}/deployments",
    "StatefulSet": "apps/v1/namespaces/{ns}/statefulsets",
    "Job": "batch/v1/namespaces/{ns}/jobs",
    "CronJob": "batch/v1/namespaces/{ns}/cronjobs",
    "Ingress": "networking.k8s.io/v1/namespaces/{ns}/ingresses",
    "Service": "v1/namespaces/{ns}/services",
    "Secret": "v1/namespaces/{ns}/secrets",
}


def strict_dry_run(api: client.ApiClient, obj: dict[str, Any]) -> None:
    """Server-side apply with dryRun=All and fieldValidation=Strict: the API server checks the
    object against its own OpenAPI schema (an unknown or misplaced field is an error) and keeps
    nothing."""
    meta = obj["metadata"]
    group = "api" if obj["apiVersion"] == "v1" else "apis"
    path = f"/{group}/{PLURALS[obj['kind']].format(ns=meta['namespace'])}/{meta['name']}"
    query = "dryRun=All&fieldManager=t&fieldValidation=Strict"
    reply = api.call_api(
        "PATCH",
        f"{api.configuration.host}{path}?{query}",
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "*/*"},
        body=json.dumps(obj),
        _request_timeout=30,
    )
    reply.read()
    if reply.status >= 300:
        raise AssertionError(f"{obj['kind']} {meta['name']}: {reply.status} {reply.data!r}")


def test_the_objects_pass_the_api_servers_own_schema_strictly(
    kube_namespace: str, kube_env: Path
) -> None:
    """Every workload naming pull Secrets, the dockerconfigjson Secret and both kinds of TLS
    Ingress are accepted by a strict server-side dry run; a misspelt field is refused, so the
    check is not a formality."""
    env = kube_namespace
    api = config.new_client_from_config(config_file=str(kube_env))
    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": env}})
        services = [
            Service("web", "container", "apps", image="nginx:1.27", port=80, public=True),
            Service("db", "database", "data", image="postgres:16", port=5432),
            Service("migrate", "job", "jobs", image="migrate:1"),
            Service("report", "job", "jobs", image="report:1", schedule="0 3 * * *"),
        ]
        objects = [manifests.pull_secret(env, "pull", Login("r.example", "u", "p-0042"), "web")]
        for tls in (Tls(issuer="letsencrypt"), Tls(secret="wildcard-tls")):
            for svc in services:
                objects += manifests.service_objects(
                    env,
                    svc,
                    "r.example/x:1",
                    run="r1",
                    host="h.example",
                    tls=tls,
                    pull_secrets=["pull", "web-registry-auth"],
                )
        kinds = {o["kind"] for o in objects}
        assert kinds == {
            "Secret",
            "Deployment",
            "Service",
            "Ingress",
            "StatefulSet",
            "Job",
            "CronJob",
        }
        for obj in objects:
            strict_dry_run(api, obj)
        bad = json.loads(json.dumps(objects[1]))
        assert bad["kind"] == "Deployment"
        bad["spec"]["template"]["spec"]["imagePullSecret"] = [{"name": "pull"}]
        with pytest.raises(AssertionError) as caught:
            strict_dry_run(api, bad)
        assert ".spec.template.spec.imagePullSecret: field not declared in schema" in str(
            caught.value
        )
    finally:
        api.close()


ACTION_PIPELINE = """
version: 1
registry: registry.example.test/acme
targets:
  eu: {{kind: kubernetes, domain: "{{service}}.{{environment}}.example.test",
       tls: {{issuer: letsencrypt}}}}
services:
  web: {{type: container, image: registry.example.test/acme/web:1, port: 80, public: true}}
environments:
  {env}: {{target: eu}}
"""


def test_the_actions_registry_inputs_become_the_pull_secret_and_urls_are_https(
    kube_namespace: str,
    k8s: dict[str, Any],
    standin: GitHubStandin,
    kubeconfig: Path,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Action's registry-username and registry-password (with the kubeconfig input only)
    become the environment's pull Secret; the GitHub Deployment's environment_url, the job
    summary and the url output are https, and the password is in none of them nor the log
    (but its mask)."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    env = kube_namespace
    write_config(ACTION_PIPELINE.format(env=env))
    step = Step(standin, tmp_path)
    code = step(
        environment=env,
        kubeconfig=kubeconfig.read_text(),
        registry_username="ci-bot",
        registry_password=PASSWORD,
    )
    assert code == 0, step.log
    secret = k8s["core"].read_namespaced_secret("deploy-pipeline-registry", env)
    assert dockerconfig(secret)["auths"]["registry.example.test"]["password"] == PASSWORD
    assert pull_secrets(k8s["apps"].read_namespaced_deployment("web", env)) == [
        "deploy-pipeline-registry"
    ]
    url = f"https://web.{env}.example.test"
    (deployment,) = standin.deployments()
    states = standin.deployment_statuses(deployment["id"])
    assert states[-1]["environment_url"] == url
    assert url in step.summary
    assert step.outputs["environment-url"] == url
    shown = step.log.replace(f"::add-mask::{PASSWORD}", "")
    for text in (shown, step.summary, json.dumps(step.outputs), json.dumps(states)):
        assert PASSWORD not in text
        assert b64(f"ci-bot:{PASSWORD}") not in text
