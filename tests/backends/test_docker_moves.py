"""`rollback` and `promote` on a real engine and registry (DESIGN.md §10): the containers run
the release's image by digest with the right settings and answer with the old code; an
interrupted promotion records nothing and its re-run converges; an image gone from the engine
fails that service's step with what to do, and what ran keeps running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy_pipeline.cli import main
from deploy_pipeline.model import Event
from deploy_pipeline.operation import Operation, Request
from deploy_pipeline.runner import Cancel
from tests.support.docker_testbed import HTTPD, DockerBed, busybox_context

pytestmark = pytest.mark.engine

ENV_LABEL = "io.deploy-pipeline.environment"
SERVICE_LABEL = "io.deploy-pipeline.service"
RELEASE_LABEL = "io.deploy-pipeline.release"
SLEEP = "exec /bin/busybox sleep 3600"


class Shop:
    """Two environments of this test's own (staging and production) on the shared engine: a
    `db` (stage 1), an `api` built from ./api that serves /version (stage 2), a `web` (stage
    3); the api's answer and MODE change between deploys."""

    def __init__(
        self, docker: DockerBed, folder: Path, registry: bool = True, wired: bool = False
    ) -> None:
        self.docker, self.folder, self.registry, self.wired = docker, folder, registry, wired
        tag = uuid.uuid4().hex[:10]
        self.staging, self.production = f"s-{tag}", f"p-{tag}"
        self.config = folder / ".deploy-pipeline.yml"
        self.sleeper = busybox_context(folder / "sleeper", SLEEP)
        self.write("one", "blue")

    def write(self, version: str, mode: str) -> None:
        busybox_context(
            self.folder / "api", HTTPD, {"www/version": version, "nonce": uuid.uuid4().hex}
        )
        registry = f"registry: {self.docker.registry}/moves\n" if self.registry else ""
        self.config.write_text(
            f"version: 1\n{registry}stages: [data, apps, edge]\n"
            "targets: {laptop: {kind: docker}}\n"
            "services:\n"
            "  db: {type: application, build: ./sleeper, stage: data}\n"
            "  api: {type: application, build: ./api, port: 8080, health: /healthz, stage: apps,"
            f" env: {{MODE: {mode}}}}}\n"
            "  web: {type: application, build: ./sleeper, stage: edge"
            + (", env: {API: '${url:api}'}}\n" if self.wired else "}\n")
            + "environments:\n"
            f"  {self.staging}: {{target: laptop, env: {{TIER: staging}}}}\n"
            f"  {self.production}: {{target: laptop, env: {{TIER: production}},"
            " services: {api: {replicas: 2}}}\n"
        )

    def containers(self, env: str, service: str) -> list[dict[str, Any]]:
        ids = self.docker.cli(
            "ps",
            "-q",
            "--filter",
            f"label={ENV_LABEL}={env}",
            "--filter",
            f"label={SERVICE_LABEL}={service}",
        ).split()
        found: list[dict[str, Any]] = json.loads(self.docker.cli("inspect", *ids)) if ids else []
        return found

    def answer(self, env: str) -> set[str]:
        """What every api container of `env` answers on /version."""
        answers = set()
        for c in self.containers(env, "api"):
            port = c["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=10) as r:
                answers.add(r.read().decode().strip())
        return answers

    def clean(self) -> None:
        for env in (self.staging, self.production):
            ids = self.docker.cli("ps", "-aq", "--filter", f"label={ENV_LABEL}={env}").split()
            if ids:
                self.docker.cli("rm", "-f", *ids)
            nets = self.docker.cli("network", "ls", "-q", "--filter", f"label={ENV_LABEL}={env}")
            if nets.split():
                self.docker.cli("network", "rm", *nets.split())


@pytest.fixture
def shop(docker_bed: DockerBed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    monkeypatch.setenv("DOCKER_HOST", docker_bed.host)
    made = Shop(docker_bed, tmp_path)
    yield made
    made.clean()


def run(
    capsys: pytest.CaptureFixture[str], shop: Shop, *args: str
) -> tuple[int, list[dict[str, Any]], str]:
    code = main([*args, "-f", str(shop.config), "--events", "jsonl"])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], " ".join(err.split())


def history(capsys: pytest.CaptureFixture[str], shop: Shop, env: str) -> list[dict[str, Any]]:
    assert main(["history", "-f", str(shop.config), "-e", env, "--format", "json"]) == 0
    found: list[dict[str, Any]] = json.loads(capsys.readouterr().out)["releases"]
    return found


def test_rollback_then_promote_run_the_old_image_by_digest_with_each_environments_settings(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    """Staging deployed with api 'one' then 'two'; rollback brings 'one' back (its digest, its
    MODE=blue) with no build; promote puts that same digest in production with production's
    TIER and two replicas; history records both, and the containers' labels say so."""
    shop.wired = True  # web's API is ${url:api}: a rollback points it where api runs now
    shop.write("one", "blue")
    assert run(capsys, shop, "deploy", "-e", shop.staging)[0] == 0
    shop.write("two", "green")
    assert run(capsys, shop, "deploy", "-e", shop.staging)[0] == 0
    assert shop.answer(shop.staging) == {"two"}
    v2, v1 = history(capsys, shop, shop.staging)
    assert v1["services"]["api"]["image"] != v2["services"]["api"]["image"]

    code, seen, err = run(capsys, shop, "rollback", "-e", shop.staging)
    assert code == 0, err
    assert {e["phase"] for e in seen} == {"deploy", "run"}
    assert shop.answer(shop.staging) == {"one"}
    [api] = shop.containers(shop.staging, "api")
    assert api["Config"]["Image"] == v1["services"]["api"]["image"]
    assert "MODE=blue" in api["Config"]["Env"] and "TIER=staging" in api["Config"]["Env"]
    assert json.loads(api["Config"]["Labels"][RELEASE_LABEL])["rolled_back_to"] == 1
    port = api["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    [web] = shop.containers(shop.staging, "web")  # its URL of api is where api runs now
    assert f"API=http://127.0.0.1:{port}" in web["Config"]["Env"]
    v3 = history(capsys, shop, shop.staging)[0]
    assert (v3["id"], v3["action"], v3["rolled_back_to"]) == (3, "rollback", 1)
    for name in ("db", "api", "web"):  # v1's images and settings, but where api runs now
        assert v3["services"][name]["image"] == v1["services"][name]["image"]
    assert v3["services"]["api"] == v1["services"]["api"]
    assert v3["services"]["web"]["env"] == {"API": f"http://127.0.0.1:{port}", "TIER": "staging"}

    code, seen, err = run(capsys, shop, "promote", "--from", shop.staging, "-e", shop.production)
    assert code == 0, err
    assert {e["phase"] for e in seen} == {"deploy", "run"}
    assert shop.answer(shop.production) == {"one"}
    replicas = shop.containers(shop.production, "api")
    assert len(replicas) == 2
    for c in replicas:
        assert c["Config"]["Image"] == v1["services"]["api"]["image"]
        assert "TIER=production" in c["Config"]["Env"] and "MODE=green" in c["Config"]["Env"]
    [promoted] = history(capsys, shop, shop.production)
    assert (promoted["action"], promoted["source"]) == ("promote", shop.staging)
    assert promoted["services"]["api"]["replicas"] == 2


def test_without_a_registry_a_move_leaves_alone_what_runs_the_same_image(
    docker_bed: DockerBed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no registry a release names each image by the engine's id, where the deploy named
    it by its tag: rollback and promote replace only api, whose image changed, and leave db and
    web (the same image, the same settings) running as they are, as a second deploy would."""
    monkeypatch.setenv("DOCKER_HOST", docker_bed.host)
    shop = Shop(docker_bed, tmp_path, registry=False)
    try:
        assert run(capsys, shop, "deploy", "-e", shop.staging)[0] == 0
        shop.write("two", "blue")
        assert run(capsys, shop, "deploy", "-e", shop.staging)[0] == 0
        assert run(capsys, shop, "deploy", "-e", shop.production)[0] == 0
        for env, args in (
            (shop.staging, ("rollback", "-e", shop.staging)),
            (shop.production, ("promote", "--from", shop.staging, "-e", shop.production)),
        ):
            ids = {s: [c["Id"] for c in shop.containers(env, s)] for s in ("db", "api", "web")}
            code, seen, err = run(capsys, shop, *args)
            assert code == 0, err
            said = {e["service"]: e["message"] for e in seen if e["status"] == "succeeded"}
            assert said["db"] == said["web"] == "unchanged, already running", said
            assert " running (sha256:" in said["api"]
            assert [c["Id"] for c in shop.containers(env, "db")] == ids["db"]
            assert [c["Id"] for c in shop.containers(env, "web")] == ids["web"]
            assert shop.answer(env) == {"one"}
    finally:
        shop.clean()


class StopAfter:
    """Ctrl-C, in effect, the moment `service`'s deploy succeeds."""

    def __init__(self, service: str, cancel: Cancel) -> None:
        self.service, self.cancel = service, cancel

    def __call__(self, event: Event) -> None:
        done = (event.service, event.phase, event.status) == (self.service, "deploy", "succeeded")
        if done:
            self.cancel.set("interrupted")


def test_an_interrupted_promotion_records_no_release_and_a_rerun_converges(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interrupted once api (stage 2) is promoted: production has no release (history: the
    promotion, cancelled, no id) while its api runs the new image; running promote again
    leaves api as it runs, deploys web, and records release 1 with every service."""
    assert run(capsys, shop, "deploy", "-e", shop.staging)[0] == 0
    [staged] = history(capsys, shop, shop.staging)
    cancel = Cancel()
    request = Request(shop.config, [shop.production], "promote", source=shop.staging)
    with Operation(request) as operation:
        result = operation.perform([StopAfter("api", cancel)], cancel)
        assert result is not None and result.status == "cancelled"
        assert operation.releases == []
    [cut] = history(capsys, shop, shop.production)
    assert (cut["id"], cut["action"], cut["status"]) == (None, "promote", "failed")
    assert shop.containers(shop.production, "web") == []
    assert shop.answer(shop.production) == {"one"}

    code, seen, err = run(capsys, shop, "promote", "--from", shop.staging, "-e", shop.production)
    assert code == 0, err
    said = {e["service"]: e["message"] for e in seen if e["status"] == "succeeded"}
    assert said["api"].startswith("unchanged, already running")
    [release, _] = history(capsys, shop, shop.production)
    assert release["id"] == 1
    assert {n: s["image"] for n, s in release["services"].items()} == {
        n: s["image"] for n, s in staged["services"].items()
    }


def test_a_release_whose_image_is_gone_fails_at_its_step_and_what_runs_keeps_running(
    docker_bed: DockerBed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no registry, release 1's api image is the engine's id; once it is removed from the
    engine, rollback fails api's step (exit 1) with a sentence saying what to do, release 2's
    api keeps answering, and no release is recorded."""
    monkeypatch.setenv("DOCKER_HOST", docker_bed.host)
    shop = Shop(docker_bed, tmp_path, registry=False)
    try:
        assert run(capsys, shop, "deploy", "-e", shop.staging)[0] == 0
        shop.write("two", "green")
        assert run(capsys, shop, "deploy", "-e", shop.staging)[0] == 0
        _v2, v1 = history(capsys, shop, shop.staging)
        gone = v1["services"]["api"]["image"]
        assert gone.startswith("sha256:")
        docker_bed.cli("rmi", "-f", gone)
        code, seen, _err = run(capsys, shop, "rollback", "-e", shop.staging)
        assert code == 1
        [failed] = [e for e in seen if e["service"] == "api" and e["status"] == "failed"]
        assert failed["message"] == (
            f"api: the image of release v1 ({gone[:19]}…) is no longer on this engine or "
            f"in a registry it can reach, so it cannot run again: deploy {shop.staging} to "
            "build it anew, or roll back to a later release"
        )
        assert shop.answer(shop.staging) == {"two"}
        assert [r["id"] for r in history(capsys, shop, shop.staging)] == [None, 2, 1]
    finally:
        shop.clean()


def test_a_promotion_killed_half_way_is_no_release_and_the_next_promotion_converges(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    """`promote` SIGKILLed the moment api (stage 2) is up: the next command sees the run
    abandoned and no release, and promoting again converges on every service, release 1."""
    assert run(capsys, shop, "deploy", "-e", shop.staging)[0] == 0
    [staged] = history(capsys, shop, shop.staging)
    argv = [sys.executable, "-m", "deploy_pipeline", "promote", "-f", str(shop.config)]
    argv += ["--from", shop.staging, "-e", shop.production, "--events", "jsonl"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as p:
        assert p.stdout is not None
        for line in p.stdout:
            event = json.loads(line)
            if (event["service"], event["status"]) == ("api", "succeeded"):
                p.send_signal(signal.SIGKILL)
                break
        assert p.wait() == -signal.SIGKILL
    [killed] = history(capsys, shop, shop.production)
    assert (killed["id"], killed["action"], killed["status"]) == (None, "promote", "failed")
    code, _, err = run(capsys, shop, "promote", "--from", shop.staging, "-e", shop.production)
    assert code == 0, err
    release = history(capsys, shop, shop.production)[0]
    assert release["id"] == 1
    assert {n: s["image"] for n, s in release["services"].items()} == {
        n: s["image"] for n, s in staged["services"].items()
    }


def test_a_promotion_with_no_state_database_reads_the_sources_release_from_its_containers(
    shop: Shop, capsys: pytest.CaptureFixture[str], own_state: Path
) -> None:
    """On another machine (the state database gone) promote reads staging's latest release
    back from its containers' labels, says so, and promotes it: release 1 of production with
    staging's images."""
    assert run(capsys, shop, "deploy", "-e", shop.staging)[0] == 0
    [staged] = history(capsys, shop, shop.staging)
    for path in own_state.parent.glob("state.db*"):
        path.unlink()
    code = main(["promote", "-f", str(shop.config), "--from", shop.staging, "-e", shop.production])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0, out
    assert f"read back from laptop: release v1 of {shop.staging} on laptop: deployed" in out
    [promoted] = history(capsys, shop, shop.production)
    assert promoted["source"] == shop.staging
    assert {n: s["image"] for n, s in promoted["services"].items()} == {
        n: s["image"] for n, s in staged["services"].items()
    }
