"""Content-addressed image tags, and builds stopped at their timeout on a real engine."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_pipeline.backends.build import content_tag
from deploy_pipeline.backends.engine import Engine
from deploy_pipeline.cli import main
from deploy_pipeline.errors import PermanentError
from deploy_pipeline.model import BuildSpec
from deploy_pipeline.operation import Operation, Request
from deploy_pipeline.runner import Cancel
from tests.support.docker_testbed import DockerBed, busybox_context
from tests.support.eventually import eventually


def tag(context: Path, spec: BuildSpec | None = None) -> str:
    spec = spec or BuildSpec(".")
    return content_tag(context, spec, Engine.context_files(context, spec.dockerfile))


@pytest.fixture
def context(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    (folder / "src").mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM scratch\nCOPY src /src\n")
    (folder / "src" / "main.txt").write_text("v1\n")
    (folder / "notes.md").write_text("draft\n")
    (folder / ".dockerignore").write_text("# docs are not shipped\n*.md\n")
    return folder


def test_the_same_content_gives_the_same_tag(context: Path, tmp_path: Path) -> None:
    """The tag depends on content only: a copy of the context elsewhere has the same tag."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in context.rglob("*"):
        if f.is_file():
            (copy / f.relative_to(context)).parent.mkdir(parents=True, exist_ok=True)
            (copy / f.relative_to(context)).write_bytes(f.read_bytes())
    assert tag(context) == tag(copy)
    assert tag(context).startswith("sha-") and len(tag(context)) == 24


def test_a_changed_file_changes_the_tag(context: Path) -> None:
    """Editing a file that is sent to the build gives a new tag."""
    before = tag(context)
    (context / "src" / "main.txt").write_text("v2\n")
    assert tag(context) != before


def test_files_in_dockerignore_do_not_count(context: Path) -> None:
    """Editing a file `.dockerignore` leaves out keeps the tag."""
    before = tag(context)
    (context / "notes.md").write_text("rewritten\n")
    assert tag(context) == before


def test_args_target_and_dockerfile_count(context: Path) -> None:
    """Build args, the target stage and the Dockerfile's content each change the tag."""
    base = tag(context)
    assert tag(context, BuildSpec(".", args=(("VERSION", "2"),))) != base
    assert tag(context, BuildSpec(".", target="test")) != base
    (context / "Dockerfile").write_text("FROM scratch\nCOPY src /srv\n")
    assert tag(context) != base


def test_a_dockerignore_linking_out_of_the_context_is_not_read(
    context: Path, tmp_path: Path
) -> None:
    """A committed `.dockerignore` that links to a file outside the context (any file of the
    machine, or /dev/zero) is an error saying so, not read; a link inside the context is read."""
    (tmp_path / "outside.txt").write_text("src\n")
    (context / ".dockerignore").unlink()
    (context / ".dockerignore").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(PermanentError, match=r"^the build context's \.dockerignore links outside"):
        Engine.context_files(context, "Dockerfile")
    (context / "ignored").write_text("*.md\n")
    (context / ".dockerignore").unlink()
    (context / ".dockerignore").symlink_to("ignored")
    assert "notes.md" not in Engine.context_files(context, "Dockerfile")


def test_a_build_past_its_timeout_is_stopped_on_the_engine(
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A build still running at its timeout fails as timed out at once, and the engine drops
    it: no image is tagged later."""
    marker = f"slow-build-{time.time_ns()}"  # this build's own: no other container has it
    busybox_context(
        tmp_path / "slow", "true", extra=f'RUN ["/bin/busybox", "sh", "-c", "sleep 30 # {marker}"]'
    )
    path = write_config(
        "version: 1\ntargets: {l: {kind: docker}}\nservices:\n"
        "  slow: {type: application, build: ./slow, timeout: 2s}\n"
        "environments: {e: {}}\n"
    )
    assert main(["deploy", "-f", str(path), "-e", "e", "--events", "jsonl"]) == 1
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    build = [e for e in events if e["phase"] == "build"]
    assert build[-1]["status"] == "failed"
    assert str(build[-1]["message"]).startswith("timed out after 2")
    assert float(str(events[-1]["ts"])) < 10  # the run did not wait for the 30 s build
    # the engine abandons the build: its container goes long before its 30 s are up
    eventually(
        lambda: marker not in docker_env.cli("ps", "-a", "--no-trunc", "--format", "{{.Command}}"),
        timeout=10,
        every=0.2,
        message="the engine dropping the build after its timeout",
    )
    assert docker_env.cli("images", "-q", "deploy-pipeline/slow") == ""


def test_a_failed_build_shows_the_last_lines_of_its_log(
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A RUN step that fails puts the engine's reason and the build's last output in the error."""
    busybox_context(
        tmp_path / "app",
        "true",
        extra='RUN ["/bin/busybox", "sh", "-c", "echo compiling the shop; exit 7"]',
    )
    path = write_config(
        "version: 1\ntargets: {l: {kind: docker}}\nservices:\n"
        "  app: {type: application, build: ./app}\nenvironments: {e: {}}\n"
    )
    assert main(["deploy", "-f", str(path), "-e", "e"]) == 1
    out = capsys.readouterr().out
    assert (
        "e/l app build failed: The command '/bin/busybox sh -c echo compiling the shop; "
        "exit 7' returned a non-zero code: 7"
    ) in out
    assert "last lines of the build log:" in out
    assert "compiling the shop" in out


def test_a_second_environment_from_the_same_commit_reuses_every_image(
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A clone of staging deployed from the same files builds nothing: every build is reused."""
    busybox_context(tmp_path / "app", "sleep 3600")
    busybox_context(tmp_path / "job", "echo done")
    path = str(
        write_config(
            f"version: 1\nregistry: {docker_env.registry}/share\n"
            "targets: {l: {kind: docker}}\nservices:\n"
            "  app: {type: application, build: ./app}\n  job: {type: job, build: ./job}\n"
            "environments: {staging: {}}\n"
        )
    )
    assert main(["deploy", "-f", path, "-e", "staging"]) == 0
    assert main(["env", "clone", "staging", "preview", "-f", path]) == 0
    capsys.readouterr()
    assert main(["deploy", "-f", path, "-e", "preview", "--events", "jsonl"]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    ends = {
        e["service"]: e["status"]
        for e in events
        if e["phase"] == "build" and e["status"] != "started"
    }
    assert ends == {"app": "reused", "job": "reused"}
    names = docker_env.cli("ps", "--format", "{{.Names}}").split()
    assert "dp-preview-app-1-0" in names and "dp-staging-app-1-0" in names


def test_an_image_reused_from_the_registry_is_pulled_when_the_engine_lost_it(
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The registry has the image, this engine no longer does: the build is reused and the
    deploy pulls the image back instead of failing with "No such image"."""
    busybox_context(tmp_path / "job", "echo done")
    (tmp_path / "job" / "nonce").write_text(str(time.time_ns()))
    path = str(
        write_config(
            f"version: 1\nregistry: {docker_env.registry}/pull\ntargets: {{l: {{kind: docker}}}}\n"
            "services:\n  job: {type: job, build: ./job}\nenvironments: {e: {}}\n"
        )
    )
    assert main(["deploy", "-f", path, "-e", "e", "--events", "jsonl"]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    ref = str(
        next(e["message"] for e in events if e["phase"] == "build" and e["status"] == "succeeded")
    )
    ref = ref.removeprefix("built ")
    docker_env.cli("rm", "-f", *docker_env.cli("ps", "-aq", "--filter", f"ancestor={ref}").split())
    docker_env.cli("rmi", ref)
    assert main(["deploy", "-f", path, "-e", "e", "--events", "jsonl"]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    ends = [(e["phase"], e["status"]) for e in events if e["status"] not in ("started",)]
    assert ("build", "reused") in ends and ("deploy", "succeeded") in ends


def test_a_deploy_needs_its_secrets_but_a_delete_does_not(
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a secret unset, a deploy stops before touching anything and names it, once, with
    the services that need it; stop and delete need no secret and go ahead."""
    monkeypatch.delenv("SHOP_TOKEN", raising=False)
    path = str(
        write_config(
            "version: 1\ntargets: {l: {kind: docker}}\nservices:\n"
            "  a: {type: container, image: x:1, secrets: [SHOP_TOKEN]}\n"
            "  b: {type: container, image: y:1, secrets: [SHOP_TOKEN]}\nenvironments: {e: {}}\n"
        )
    )
    assert main(["deploy", "-f", path, "-e", "e"]) == 2
    assert capsys.readouterr().err == (
        "error: secrets not set in the environment: SHOP_TOKEN (for a, b); export them before "
        "deploying, or rehearse with --dry-run\n"
    )
    assert main(["stop", "-f", path, "-e", "e"]) == 0
    assert main(["delete", "-f", path, "-e", "e"]) == 0


def test_a_context_that_turns_into_a_link_out_of_the_repository_after_loading_is_not_built(
    docker_env: DockerBed, write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    """The build checks again what the file was checked for: a context replaced by a link to
    /etc between loading and building fails the build, and the engine is sent nothing."""
    busybox_context(tmp_path / "app", "true")
    path = write_config(
        "version: 1\ntargets: {l: {kind: docker}}\nservices:\n"
        "  app: {type: job, build: ./app}\nenvironments: {e: {}}\n"
    )
    operation = Operation(Request(path, ["e"], "deploy"))
    try:
        (tmp_path / "app").rename(tmp_path / "gone")
        (tmp_path / "app").symlink_to("/etc")
        result = operation.perform([], Cancel())
    finally:
        operation.close()
    assert result is not None and result.status == "failed"
    assert result.failures == [
        "e/l app build failed: services.app.build.context: must stay inside the repository: "
        "'./app' leads outside the pipeline file's folder (paths are relative to it, links "
        "followed)"
    ]


def test_a_rehearsal_says_which_images_it_would_reuse_and_takes_the_measured_time(
    docker_env: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`deploy --dry-run` of a docker target, after a real deploy: the build whose files did not
    change ends `reused`, the changed one `to build` (by content hash against the registry, as
    `plan` says), and every step lasts what it last took, not 0 s."""
    busybox_context(tmp_path / "same", "echo same")
    busybox_context(tmp_path / "edited", "echo edited")
    for name in ("same", "edited"):
        (tmp_path / name / "nonce").write_text(f"{name} {time.time_ns()}")
    path = str(
        write_config(
            f"version: 1\nregistry: {docker_env.registry}/rehearse\n"
            "targets: {l: {kind: docker}}\nservices:\n"
            "  same: {type: job, build: ./same}\n  edited: {type: job, build: ./edited}\n"
            "environments: {e: {}}\n"
        )
    )
    assert main(["deploy", "-f", path, "-e", "e", "--events", "jsonl"]) == 0
    real = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    took = {
        (e["service"], e["phase"]): e["duration"]
        for e in real
        if e["status"] == "succeeded" and e["phase"] != "run"
    }
    (tmp_path / "edited" / "nonce").write_text(f"changed {time.time_ns()}")
    assert main(["plan", "-f", path, "-e", "e"]) == 0
    planned = capsys.readouterr().out
    assert main(["deploy", "-f", path, "-e", "e", "--dry-run", "--events", "jsonl"]) == 0
    rehearsal = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    builds = {
        e["service"]: (e["status"], e["message"].split(" (rehearsal")[0])
        for e in rehearsal
        if e["phase"] == "build" and e["status"] != "started"
    }
    assert builds["same"][0] == "reused" and builds["same"][1].startswith("reused: ")
    assert builds["edited"][0] == "succeeded" and builds["edited"][1].startswith("to build: ")
    for _, note in builds.values():  # the same verdict and image as `plan` gives
        assert note in planned
    deploys = {
        e["service"]: e["duration"]
        for e in rehearsal
        if e["phase"] == "deploy" and e["status"] == "succeeded"
    }
    for service in ("same", "edited"):
        assert deploys[service] >= took[(service, "deploy")] > 0
    edited_build = next(
        e["duration"]
        for e in rehearsal
        if e["service"] == "edited" and e["phase"] == "build" and e["status"] == "succeeded"
    )
    assert edited_build >= took[("edited", "build")] > 0
