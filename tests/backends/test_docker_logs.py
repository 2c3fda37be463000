"""`deploy-pipeline logs` on a real Docker engine (DESIGN.md §10): the containers' own output,
prefixed with the service and replica and aligned, `--tail`, `--follow` until Ctrl-C, and a
run's events and step logs with its secret masked. Images are built FROM scratch with busybox."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy_pipeline.cli import main
from tests.support.docker_testbed import DockerBed, busybox_context

pytestmark = pytest.mark.engine

ENV_LABEL = "io.deploy-pipeline.environment"
SERVICE_LABEL = "io.deploy-pipeline.service"
WAIT = 60.0  # seconds a reader waits for a line before the test gives up
PRINTER = "echo one; echo two; echo three; exec /bin/busybox sleep 3600"
PRINTED = ("one", "two", "three")


@pytest.fixture(scope="module")
def printer(docker_bed: DockerBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local image that prints `one`, `two`, `three`, then sleeps; removed after the module."""
    ref = f"dp-test/printer:{uuid.uuid4().hex[:12]}"
    context = busybox_context(tmp_path_factory.mktemp("printer"), PRINTER)
    docker_bed.cli("build", "-q", "-t", ref, str(context))
    yield ref
    docker_bed.cli("rmi", ref, check=False)


@pytest.fixture
def env(docker_bed: DockerBed, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An environment of this test's own; only its containers and network are removed after."""
    monkeypatch.setenv("DOCKER_HOST", docker_bed.host)
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    label = f"label={ENV_LABEL}={name}"
    found = docker_bed.cli("ps", "-aq", "--filter", label).split()
    if found:
        docker_bed.cli("rm", "-f", *found, check=False)
    docker_bed.cli("network", "rm", f"dp-{name}", check=False)


def pipeline(env: str, services: str) -> str:
    return (
        "version: 1\ntargets: {laptop: {kind: docker}}\n"
        f"services:\n{services}environments: {{{env}: {{target: laptop}}}}\n"
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def deployed(
    env: str, printer: str, write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> Path:
    """`api` with two replicas and `worker` with one, deployed from the printing image."""
    config = write_config(
        pipeline(
            env,
            f"  api: {{type: container, image: '{printer}', replicas: 2}}\n"
            f"  worker: {{type: container, image: '{printer}'}}\n",
        )
    )
    code, out, err = cli(capsys, "deploy", "-f", str(config), "-e", env)
    assert code == 0, out + err
    return config


def test_each_line_is_prefixed_with_its_service_and_replica(
    env: str, deployed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every replica's lines come in order under its own aligned prefix (`api-2  |`, `worker |`);
    --tail 1 keeps each replica's last line; --service keeps that service's."""
    code, out, err = cli(capsys, "logs", "-f", str(deployed), "-e", env)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{source} | {word}" for source in ("api-1 ", "api-2 ", "worker") for word in PRINTED
    ]

    code, out, _ = cli(capsys, "logs", "-f", str(deployed), "-e", env, "--tail", "1")
    assert code == 0
    assert out.splitlines() == ["api-1  | three", "api-2  | three", "worker | three"]

    code, out, _ = cli(capsys, "logs", "-f", str(deployed), "-e", env, "--service", "worker")
    assert code == 0
    assert out.splitlines() == ["worker | one", "worker | two", "worker | three"]


def test_a_service_not_deployed_says_so(
    env: str,
    deployed: Path,
    printer: str,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A service of the file with no container in the environment says so on stderr; the
    others' lines still come, and the command succeeds."""
    config = write_config(
        pipeline(
            env,
            f"  worker: {{type: container, image: '{printer}'}}\n"
            f"  idle: {{type: container, image: '{printer}'}}\n",
        ),
        name="more.yml",
    )
    code, out, err = cli(capsys, "logs", "-f", str(config), "-e", env, "--tail", "1")
    assert code == 0
    assert out.splitlines() == ["worker | three"]
    assert err == f"idle: nothing deployed in {env} on target laptop\n"


def test_follow_streams_new_lines_until_ctrl_c(
    env: str, deployed: Path, docker_bed: DockerBed
) -> None:
    """`logs --follow` prints what a container writes after it started, as it comes, and Ctrl-C
    ends it with exit code 130, `interrupted` and no traceback."""
    args = ["logs", "-f", str(deployed), "-e", env, "--service", "worker", "--follow"]
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        [sys.executable, "-m", "deploy_pipeline", *args],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    ) as proc:
        out, err = proc.stdout, proc.stderr
        assert out is not None and err is not None

        def read() -> None:
            for line in out:
                lines.put(line.rstrip("\n"))

        def until(wanted: str) -> None:
            while (line := lines.get(timeout=WAIT)) != wanted:
                assert line.startswith("worker | "), line

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            until("worker | three")  # what it printed before: then it follows
            (worker,) = docker_bed.cli(
                "ps", "-q", "--filter", f"label={ENV_LABEL}={env}",
                "--filter", f"label={SERVICE_LABEL}=worker",
            ).split()  # fmt: skip
            # written to PID 1's stdout (docker-init's): the container's log, after `logs` began
            docker_bed.cli("exec", worker, "/bin/busybox", "sh", "-c", "echo later > /proc/1/fd/1")
            until("worker | later")
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=WAIT)
        said = err.read()
    assert code == 130, said
    assert said == "interrupted\n"  # and no traceback


def test_a_runs_step_logs_follow_its_events_with_the_secret_masked(
    env: str,
    printer: str,
    write_config: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`logs --run ID` shows a failed job's output (its step log) after the event that ends the
    step and before the run's end, with the secret it printed masked as it was recorded (the
    secret is no longer in the environment when `logs` runs)."""
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("API_TOKEN", token)
    config = write_config(
        pipeline(
            env,
            f"  job: {{type: job, image: '{printer}', secrets: [API_TOKEN], "
            "command: [/bin/busybox, sh, -c, 'echo token=$API_TOKEN; echo done; exit 1']}\n",
        )
    )
    code, _, _ = cli(capsys, "deploy", "-f", str(config), "-e", env)
    assert code == 1
    monkeypatch.delenv("API_TOKEN")

    code, out, err = cli(capsys, "logs", "-f", str(config), "-e", env, "--run", "1")
    assert (code, err) == (0, "")
    assert token not in out
    lines = out.splitlines()
    failed = next(i for i, line in enumerate(lines) if "job deploy failed" in line)
    assert "job exited with code 1" in lines[failed]
    step = lines.index("    job deploy | token=***")
    assert lines[step + 1] == "    job deploy | done"
    end = next(i for i, line in enumerate(lines) if f"{env}: run failed" in line)
    assert failed < step < end

    code, out, _ = cli(capsys, "logs", "-f", str(config), "-e", env, "--run", "1", "--tail", "1")
    assert code == 0
    tailed = [line for line in out.splitlines() if line.startswith("    job deploy | ")]
    assert tailed == ["    job deploy | done"]  # the step log's last line only


def test_a_replica_that_has_written_nothing_says_so(
    env: str,
    docker_bed: DockerBed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A running service with no output yet gives a note on stderr, not an empty screen that
    looks like a broken command; the command succeeds."""
    ref = f"dp-test/quiet:{uuid.uuid4().hex[:12]}"
    docker_bed.cli(
        "build",
        "-q",
        "-t",
        ref,
        str(busybox_context(tmp_path / "quiet", "exec /bin/busybox sleep 3600")),
    )
    try:
        config = write_config(pipeline(env, f"  quiet: {{type: container, image: '{ref}'}}\n"))
        assert cli(capsys, "deploy", "-f", str(config), "-e", env)[0] == 0
        code, out, err = cli(capsys, "logs", "-f", str(config), "-e", env)
        assert (code, out) == (0, "")
        assert err == "quiet: no output (it has written nothing yet)\n"
    finally:
        found = docker_bed.cli("ps", "-aq", "--filter", f"label={ENV_LABEL}={env}").split()
        if found:
            docker_bed.cli("rm", "-f", *found, check=False)
        docker_bed.cli("rmi", ref, check=False)
