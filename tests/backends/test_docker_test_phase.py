"""The test phase on the real Docker engine and registry (DESIGN.md §9): a service's `test:` runs
in a fresh container of the image just built, with its env and without its secrets, before the
image is pushed or deployed; a failure ends with the test's last lines of output and nothing is
deployed or pushed; an image that passed is reused with its test ended `reused`."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from deploy_pipeline.backends.engine import Engine
from deploy_pipeline.cli import main
from tests.support.docker_testbed import BUSYBOX, DockerBed, busybox_context

pytestmark = pytest.mark.engine

OFFLINE_SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop" / "offline"
WITH_SH = 'RUN ["/bin/busybox", "ln", "-s", "/bin/busybox", "/bin/sh"]'  # for `test: "a line"`


def deploy(path: Path, environment: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list]:
    code = main(["deploy", "-f", str(path), "-e", environment, "--events", "jsonl"])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def ends(events: list[dict[str, object]], service: str) -> list[tuple[object, object]]:
    return [
        (e["phase"], e["status"])
        for e in events
        if e["service"] == service and e["status"] != "started"
    ]


def leftover_tests(bed: DockerBed) -> str:
    """The test containers still on the engine (none: each is removed once it has run)."""
    return bed.cli("ps", "-aq", "--filter", "label=io.deploy-pipeline.test")


def test_a_passing_test_runs_with_the_env_and_no_secrets_then_the_image_is_pushed_and_deployed(
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test (a line run by /bin/sh -c) sees the service's env and not its secret, passes,
    and only then is the image pushed and deployed; its container is gone afterwards."""
    monkeypatch.setenv("SHOP_TOKEN", "s3cret-token")
    busybox_context(tmp_path / "app", "sleep 3600", extra=WITH_SH)
    (tmp_path / "app" / "nonce").write_text(uuid.uuid4().hex)  # new content: built, never found
    path = write_config(
        f"version: 1\nregistry: {docker_env.registry}/tested\ntargets: {{l: {{kind: docker}}}}\n"
        "services:\n"
        "  app:\n    type: application\n    build: ./app\n    env: {GREETING: hello}\n"
        "    secrets: [SHOP_TOKEN]\n"
        '    test: "test \\"$GREETING\\" = hello && test -z \\"$SHOP_TOKEN\\" && echo 3 passed"\n'
        "environments: {e: {}}\n"
    )
    code, events = deploy(path, "e", capsys)
    assert code == 0, events
    assert ends(events, "app") == [
        ("build", "succeeded"),
        ("test", "succeeded"),
        ("deploy", "succeeded"),
    ]
    order = [(e["phase"], e["status"]) for e in events if e["service"] == "app"]
    assert order.index(("test", "succeeded")) < order.index(("deploy", "started"))
    tested = next(e for e in events if e["phase"] == "test" and e["status"] == "succeeded")
    ref = str(tested["message"]).removeprefix("test passed; pushed ")
    assert ref.startswith(f"{docker_env.registry}/tested/app:sha-")
    engine = Engine()
    try:
        assert engine.in_registry(ref)
        digest = engine.registry_digest(ref)
    finally:
        engine.close()
    # what runs is the image tested, by its digest in the registry (DESIGN.md §9)
    deployed = next(e for e in events if e["phase"] == "deploy" and e["status"] == "succeeded")
    assert digest is not None
    assert f"({ref.split(':sha-')[0]}@{digest.rpartition('@')[2]})" in str(deployed["message"])
    assert leftover_tests(docker_env) == ""


def test_a_failing_test_ends_with_its_output_and_nothing_is_deployed_or_pushed(
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A test that exits 3 fails the run (exit 1): its `test` event's message ends with the last
    lines of its output, the service is never deployed, the image never reaches the registry,
    and the next run tests it again rather than reusing it."""
    busybox_context(tmp_path / "app", "sleep 3600")
    (tmp_path / "app" / "nonce").write_text(uuid.uuid4().hex)  # new content: built, never found
    script = "for i in $(seq 1 14); do echo line-$i; done; echo 'AssertionError: boom'; exit 3"
    path = write_config(
        f"version: 1\nregistry: {docker_env.registry}/failing\ntargets: {{l: {{kind: docker}}}}\n"
        "stages: [first, later]\nservices:\n"
        "  app:\n    type: application\n    build: ./app\n    stage: first\n"
        f"    test: [/bin/busybox, sh, -c, {json.dumps(script)}]\n"
        "  web: {type: container, image: never:1, stage: later}\n"
        "environments: {e: {}}\n"
    )
    code, events = deploy(path, "e", capsys)
    assert code == 1
    failed = next(e for e in events if e["phase"] == "test" and e["status"] == "failed")
    last = [f"line-{i}" for i in range(6, 15)] + ["AssertionError: boom"]
    assert failed["service"] == "app"
    assert failed["message"] == (
        "app's test exited with code 3; last lines of its output:\n" + "\n".join(last)
    )
    assert ("deploy", "succeeded") not in ends(events, "app")
    assert ("deploy", "started") not in [(e["phase"], e["status"]) for e in events]
    assert docker_env.cli("ps", "-aq", "--filter", "label=io.deploy-pipeline.environment=e") == ""
    assert leftover_tests(docker_env) == ""
    built = next(e for e in events if e["phase"] == "build" and e["status"] == "succeeded")
    ref = str(built["message"]).removeprefix("built ")
    engine = Engine()
    try:
        assert not engine.in_registry(ref)
    finally:
        engine.close()
    code, events = deploy(path, "e", capsys)  # not reused: it has not passed its test
    assert code == 1
    assert ends(events, "app")[:2] == [("build", "succeeded"), ("test", "failed")]


def test_a_reused_image_s_test_ends_reused(
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no registry, an image that passed its test gets its name; a second environment from
    the same files reuses it, and its test step ends `reused` without running again."""
    busybox_context(tmp_path / "job", "echo done")
    (tmp_path / "job" / "nonce").write_text(uuid.uuid4().hex)  # new content: built, never found
    path = str(
        write_config(
            "version: 1\ntargets: {l: {kind: docker}}\nservices:\n"
            "  job: {type: job, build: ./job, test: [/bin/busybox, echo, tested]}\n"
            "environments: {staging: {}}\n"
        )
    )
    code, events = deploy(Path(path), "staging", capsys)
    assert code == 0, events
    assert ends(events, "job") == [
        ("build", "succeeded"),
        ("test", "succeeded"),
        ("deploy", "succeeded"),
    ]
    assert main(["env", "clone", "staging", "preview", "-f", path]) == 0
    capsys.readouterr()
    code, events = deploy(Path(path), "preview", capsys)
    assert code == 0, events
    assert ends(events, "job") == [("build", "reused"), ("test", "reused"), ("deploy", "succeeded")]
    test = [e for e in events if e["phase"] == "test" and e["status"] == "reused"]
    assert test[0]["message"] == "the image passed its test when it was built"
    assert leftover_tests(docker_env) == ""


def test_the_offline_shops_api_test_checks_the_files_it_serves(
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The example shop's API test (examples/shop/offline, what scripts/demo deploys) passes on
    an image of the API's files before it deploys, and fails on one whose /healthz is not ok,
    saying so: that image is never deployed."""
    shop = yaml.safe_load((OFFLINE_SHOP / ".deploy-pipeline.yml").read_text(encoding="utf-8"))
    api = {k: v for k, v in shop["services"]["api"].items() if k not in {"secrets", "stage"}}
    shutil.copytree(
        OFFLINE_SHOP / "api", tmp_path / "api", ignore=shutil.ignore_patterns("busybox")
    )
    shutil.copy(BUSYBOX, tmp_path / "api" / "busybox")
    (tmp_path / "api" / "www" / "nonce").write_text(uuid.uuid4().hex)  # new content: built
    environment = f"shop-{uuid.uuid4().hex[:8]}"
    doc = {
        "version": 1,
        "targets": {"laptop": {"kind": "docker"}},
        "services": {"api": {**api, "replicas": 1}},
        "environments": {environment: {}},
    }
    path = write_config(yaml.safe_dump(doc))
    code, events = deploy(path, environment, capsys)
    assert code == 0, events
    assert ends(events, "api") == [
        ("build", "succeeded"),
        ("test", "succeeded"),
        ("deploy", "succeeded"),
    ]
    (tmp_path / "api" / "www" / "healthz").write_text("down\n")
    code, events = deploy(path, environment, capsys)
    assert code == 1
    assert ends(events, "api")[:2] == [("build", "succeeded"), ("test", "failed")]
    failed = next(e for e in events if e["phase"] == "test" and e["status"] == "failed")
    assert str(failed["message"]).endswith("; last lines of its output:\n/healthz is not ok")
    assert ("deploy", "succeeded") not in ends(events, "api")
