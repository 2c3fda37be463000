"""The docker target on a real engine and registry: builds, reuse, health, failures, volumes,
labels and secrets (DESIGN.md §1–§3). Images are built FROM scratch with busybox."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy_pipeline.cli import main
from tests.support.docker_testbed import HTTPD, DockerBed, busybox_context

MANAGED = "app.kubernetes.io/managed-by=deploy-pipeline"
ENV_LABEL = "io.deploy-pipeline.environment"
SERVICE_LABEL = "io.deploy-pipeline.service"
WAIT = 60.0  # seconds a background watcher may run before it gives up on the deploy it watches

pytestmark = pytest.mark.engine


@dataclass
class Bed:
    """The shared engine and registry, seen through one environment that is this test's own."""

    docker: DockerBed
    env: str

    @property
    def registry(self) -> str:
        return self.docker.registry

    def cli(self, *args: str) -> str:
        return self.docker.cli(*args)

    def ids(self, kind: str, *labels: str) -> list[str]:
        """The containers, volumes or networks of this environment carrying every label given."""
        filters = [
            a
            for label in (f"{ENV_LABEL}={self.env}", *labels)
            for a in ("--filter", f"label={label}")
        ]
        if kind == "container":
            return self.cli("ps", "-aq", *filters).split()
        return self.cli(kind, "ls", "-q", *filters).split()

    def inspect(self, *ids: str) -> list[dict[str, Any]]:
        """`docker inspect` of containers, as the engine's JSON."""
        found: list[dict[str, Any]] = json.loads(self.cli("inspect", *ids)) if ids else []
        return found

    def read_volume(self, volume: str, image: str, file: str) -> str:
        return self.cli(
            "run", "--rm", "-v", f"{volume}:/data", image, "/bin/busybox", "cat", f"/data/{file}"
        )


@pytest.fixture
def bed(docker_bed: DockerBed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    """Like `docker_env`, but the test deploys an environment of its own and only that is
    removed afterwards: other sessions use the same engine (and `staging`) at the same time."""
    monkeypatch.setenv("DOCKER_HOST", docker_bed.host)
    b = Bed(docker_bed, f"t-{uuid.uuid4().hex[:10]}")
    yield b
    for kind in ("container", "volume", "network"):
        found = b.ids(kind, MANAGED)
        if found:
            b.cli(*(["rm", "-f"] if kind == "container" else [kind, "rm"]), *found)


@dataclass(frozen=True)
class Images:
    """'Prebuilt' images the engine has locally, so containers and databases need no pull."""

    httpd: str  # serves /healthz on 8080
    sleeper: str  # sleeps for an hour
    crasher: str  # prints crash-line-here, then exits with code 3
    keeper: str  # writes a random id to /data/first unless it is there, then sleeps


@pytest.fixture(scope="module")
def prebuilt(docker_bed: DockerBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """The prebuilt images, built once for this module and removed after it."""
    folder, tag = tmp_path_factory.mktemp("prebuilt"), uuid.uuid4().hex[:12]
    commands = {
        "httpd": HTTPD,
        "sleeper": "exec /bin/busybox sleep 3600",
        "crasher": "echo crash-line-here; exit 3",
        "keeper": "/bin/busybox test -f /data/first || /bin/busybox cat "
        "/proc/sys/kernel/random/uuid > /data/first; exec /bin/busybox sleep 3600",
    }
    refs = {}
    for name, cmd in commands.items():
        refs[name] = f"dp-test/{name}:{tag}"
        docker_bed.cli("build", "-q", "-t", refs[name], str(busybox_context(folder / name, cmd)))
    yield Images(**refs)
    docker_bed.cli("rmi", *refs.values())


def unique_context(folder: Path, cmd: str, files: dict[str, str] | None = None) -> Path:
    """A busybox context no earlier test run has built: the registry keeps every image, and a
    content-addressed tag seen before would make the build a reuse."""
    busybox_context(folder, cmd, files)
    (folder / "nonce").write_text(uuid.uuid4().hex)
    return folder


@dataclass
class Outcome:
    code: int
    events: list[dict[str, object]]
    out: str
    err: str

    def last(self, service: str, phase: str = "deploy") -> dict[str, object]:
        return [e for e in self.events if e["service"] == service and e["phase"] == phase][-1]

    def status(self, service: str, phase: str = "deploy") -> str:
        return str(self.last(service, phase)["status"])

    def message(self, service: str, phase: str = "deploy") -> str:
        return str(self.last(service, phase)["message"])

    def summary(self) -> str:
        """What the terminal shows after the run, unwrapped."""
        return " ".join(self.err.split())


def pipeline(bed: Bed, services: str, extra: str = "") -> str:
    return (
        f"version: 1\nregistry: {bed.registry}/t\ntargets: {{laptop: {{kind: docker}}}}\n"
        f"{extra}services:\n{services}environments: {{{bed.env}: {{target: laptop}}}}\n"
    )


@pytest.fixture
def run(bed: Bed, capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """Run `deploy-pipeline ACTION -f CONFIG -e ENV --events jsonl [ARGS]` as a user would."""

    def go(config: Path, action: str = "deploy", *args: str) -> Outcome:
        code = main([action, "-f", str(config), "-e", bed.env, "--events", "jsonl", *args])
        out, err = capsys.readouterr()
        return Outcome(code, [json.loads(line) for line in out.splitlines()], out, err)

    return go


def test_build_push_then_reuse_on_the_second_deploy(
    bed: Bed, write_config: Callable[[str], Path], tmp_path: Path, run: Callable[..., Outcome]
) -> None:
    """A first deploy builds, pushes and serves the app at its URL; the second builds nothing."""
    unique_context(tmp_path / "app", HTTPD)
    config = write_config(
        pipeline(bed, "  api: {type: application, build: ./app, port: 8080, health: /healthz}\n")
    )
    first = run(config)
    assert first.code == 0, first.summary()
    build = [e for e in first.events if e["phase"] == "build"]
    assert [e["status"] for e in build] == ["started", "succeeded"]
    ref = str(build[-1]["message"]).removeprefix("built ")
    assert ref.startswith(f"{bed.registry}/t/api:sha-")
    assert bed.cli("manifest", "inspect", "--insecure", ref)  # it is in the registry
    url = first.last("api")["url"]
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
        assert response.read() == b"ok\n"

    second = run(config)
    assert second.code == 0, second.summary()
    assert [e["status"] for e in second.events if e["phase"] == "build"] == ["started", "reused"]


def test_a_changed_file_rebuilds_only_its_own_service(
    bed: Bed, write_config: Callable[[str], Path], tmp_path: Path, run: Callable[..., Outcome]
) -> None:
    """Of two services with separate contexts, only the one whose file changed is rebuilt."""
    unique_context(tmp_path / "a", "/bin/busybox true", files={"data.txt": "one"})
    unique_context(tmp_path / "b", "/bin/busybox true", files={"data.txt": "one"})
    config = write_config(
        pipeline(bed, "  a: {type: job, build: ./a}\n  b: {type: job, build: ./b}\n")
    )
    first = run(config)
    assert (first.status("a", "build"), first.status("b", "build")) == ("succeeded", "succeeded")
    assert first.code == 0, first.summary()

    (tmp_path / "a" / "data.txt").write_text("two")
    second = run(config)
    assert second.status("a", "build") == "succeeded"
    assert second.status("b", "build") == "reused"
    assert second.message("a", "build") != first.message("a", "build")  # a new content tag
    assert second.code == 0, second.summary()


def test_two_services_from_one_context_build_once(
    bed: Bed, write_config: Callable[[str], Path], tmp_path: Path, run: Callable[..., Outcome]
) -> None:
    """Two services built from the same context build one image; the other reuses it."""
    unique_context(tmp_path / "app", "/bin/busybox true")
    config = write_config(
        pipeline(bed, "  one: {type: job, build: ./app}\n  two: {type: job, build: ./app}\n")
    )
    result = run(config)
    statuses = sorted([result.status("one", "build"), result.status("two", "build")])
    assert statuses == ["reused", "succeeded"]
    reused = next(s for s in ("one", "two") if result.status(s, "build") == "reused")
    assert "same content" in result.message(reused, "build")
    assert result.code == 0, result.summary()


def test_a_dockerignored_file_does_not_change_the_image(
    bed: Bed, write_config: Callable[[str], Path], tmp_path: Path, run: Callable[..., Outcome]
) -> None:
    """Changing a file that .dockerignore leaves out keeps the content tag: the image is reused."""
    context = unique_context(tmp_path / "app", "/bin/busybox true")
    (context / ".dockerignore").write_text("notes.txt\n")
    (context / "notes.txt").write_text("draft 1")
    config = write_config(pipeline(bed, "  job: {type: job, build: ./app}\n"))
    first = run(config)
    assert first.code == 0, first.summary()
    assert first.status("job", "build") == "succeeded"
    ref = first.message("job", "build").removeprefix("built ")

    (context / "notes.txt").write_text("draft 2")
    second = run(config)
    assert second.code == 0, second.summary()
    assert second.status("job", "build") == "reused"
    assert ref in second.message("job", "build")


def test_a_health_path_that_never_answers_2xx_fails_the_deploy(
    bed: Bed, prebuilt: Images, write_config: Callable[[str], Path], run: Callable[..., Outcome]
) -> None:
    """A health path answering 404 fails the deploy at the service's timeout, saying so and why."""
    config = write_config(
        pipeline(
            bed,
            f"  api: {{type: container, image: {prebuilt.httpd}, port: 8080, health: /missing, "
            "timeout: 3s}\n",
        )
    )
    result = run(config)
    assert result.code == 1
    assert result.status("api") == "failed"
    for told in (result.message("api"), result.summary()):
        assert "not healthy within its timeout" in told
        assert "404" in told
    assert bed.ids("container", f"{SERVICE_LABEL}=api") == []  # the unhealthy one is removed


def test_a_crashing_container_fails_its_stage_and_stops_the_pipeline(
    bed: Bed, prebuilt: Images, write_config: Callable[[str], Path], run: Callable[..., Outcome]
) -> None:
    """A container that exits fails with its exit code and log; later stages never start."""
    config = write_config(
        pipeline(
            bed,
            f"  crash: {{type: container, image: {prebuilt.crasher}, stage: first, timeout: 5s}}\n"
            f"  later: {{type: container, image: {prebuilt.httpd}, port: 8080, health: /healthz, "
            "stage: second}\n",
            extra="stages: [first, second]\n",
        )
    )
    result = run(config)
    assert result.code == 1
    assert result.status("crash") == "failed"
    for told in (result.message("crash"), result.summary()):
        assert "exited with code 3" in told
        assert "crash-line-here" in told
    assert result.status("later") == "cancelled"
    assert [e["status"] for e in result.events if e["service"] == "later"] == ["cancelled"]
    assert bed.ids("container", f"{SERVICE_LABEL}=later") == []


def test_jobs_run_to_completion_and_fail_with_their_exit_code(
    bed: Bed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    run: Callable[..., Outcome],
    own_state: Path,
) -> None:
    """A job exiting 0 succeeds with its output in the run's log file; one exiting 7 fails with
    its exit code and last lines."""
    unique_context(tmp_path / "app", "/bin/busybox true")
    config = write_config(
        pipeline(
            bed,
            "  good: {type: job, build: ./app, stage: first, "
            "command: [/bin/busybox, echo, good-job-output]}\n"
            "  bad: {type: job, build: ./app, stage: second, "
            "command: [/bin/busybox, sh, -c, echo bad-job-last-words; exit 7]}\n",
            extra="stages: [first, second]\n",
        )
    )
    result = run(config)
    assert result.code == 1
    assert result.status("good") == "succeeded"
    assert result.status("bad") == "failed"
    for told in (result.message("bad"), result.summary()):
        assert "exited with code 7" in told
        assert "bad-job-last-words" in told
    logs = list((own_state.parent / "logs").glob(f"run-*/{bed.env}.laptop.good.deploy.log"))
    assert len(logs) == 1, logs
    assert "good-job-output" in logs[0].read_text()


def test_a_cron_job_on_a_docker_target_is_skipped(
    bed: Bed, write_config: Callable[[str], Path], run: Callable[..., Outcome]
) -> None:
    """A job with a schedule is skipped on docker, saying it needs Kubernetes; nothing runs."""
    config = write_config(
        pipeline(
            bed,
            '  report: {type: job, image: dp-test/never-pulled:1, schedule: "0 3 * * *"}\n',
        )
    )
    result = run(config)
    assert result.code == 0, result.summary()
    assert result.status("report") == "skipped"
    assert result.message("report") == "cron jobs need a Kubernetes target"
    assert bed.ids("container") == []


def test_a_database_volume_survives_stop_restart_and_redeploy_but_not_delete(
    bed: Bed, prebuilt: Images, write_config: Callable[[str], Path], run: Callable[..., Outcome]
) -> None:
    """A database's data outlives stop, restart and a redeploy to a new container; delete
    removes its volume."""
    image = prebuilt.keeper
    volume = f"dp-{bed.env}-db-data"

    def config(generation: str) -> Path:
        return write_config(
            pipeline(bed, f"  db: {{type: database, image: {image}, env: {{G: '{generation}'}}}}\n")
        )

    assert run(config("1")).code == 0
    assert bed.ids("volume", f"{SERVICE_LABEL}=db") == [volume]
    written = bed.read_volume(volume, image, "first")
    assert written

    stopped = run(config("1"), "stop")
    assert stopped.code == 0, stopped.summary()
    (container,) = bed.inspect(*bed.ids("container", f"{SERVICE_LABEL}=db"))
    assert container["State"]["Status"] == "exited"
    assert bed.read_volume(volume, image, "first") == written

    restarted = run(config("1"), "restart")
    assert restarted.code == 0, restarted.summary()
    (container,) = bed.inspect(*bed.ids("container", f"{SERVICE_LABEL}=db"))
    assert container["State"]["Status"] == "running"
    assert bed.read_volume(volume, image, "first") == written

    redeployed = run(config("2"))
    assert redeployed.code == 0, redeployed.summary()
    (container,) = bed.inspect(*bed.ids("container", f"{SERVICE_LABEL}=db"))
    assert container["Name"] == f"/dp-{bed.env}-db-2-0"  # a new container on the same volume
    assert bed.read_volume(volume, image, "first") == written

    deleted = run(config("2"), "delete")
    assert deleted.code == 0, deleted.summary()
    assert bed.ids("volume") == []
    assert bed.ids("container") == []


def test_delete_finds_everything_by_label_without_the_state_database(
    bed: Bed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    run: Callable[..., Outcome],
    own_state: Path,
    prebuilt: Images,
) -> None:
    """With the state database gone, delete still removes the containers, volumes and network."""
    unique_context(tmp_path / "app", HTTPD)
    config = write_config(
        pipeline(
            bed,
            f"  db: {{type: database, image: {prebuilt.sleeper}}}\n"
            "  api: {type: application, build: ./app, port: 8080, health: /healthz}\n",
        )
    )
    assert run(config).code == 0
    assert len(bed.ids("container")) == 2
    assert bed.ids("volume")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{own_state}{suffix}").unlink(missing_ok=True)

    result = run(config, "delete")
    assert result.code == 0, result.summary()
    assert bed.ids("container") == []
    assert bed.ids("volume") == []
    assert bed.cli("network", "ls", "-q", "--filter", f"name=^dp-{bed.env}$") == ""


def test_secrets_reach_the_container_and_nothing_else(
    bed: Bed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    run: Callable[..., Outcome],
    own_state: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A secret is in the container's environment, never in labels, the state folder, logs or
    events (a job printing it leaves *** in its log)."""
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("API_TOKEN", token)
    unique_context(
        tmp_path / "app",
        "/bin/busybox mkdir -p /www && /bin/busybox echo ok > /www/healthz && "
        "echo $API_TOKEN > /www/token && echo token=$API_TOKEN && "
        "exec /bin/busybox httpd -f -p 8080 -h /www",
    )
    config = write_config(
        pipeline(
            bed,
            "  show: {type: job, build: ./app, secrets: [API_TOKEN], "
            "command: [/bin/busybox, sh, -c, echo token=$API_TOKEN]}\n"
            "  api: {type: application, build: ./app, port: 8080, health: /healthz, "
            "secrets: [API_TOKEN]}\n",
        )
    )
    result = run(config)
    assert result.code == 0, result.summary()
    with urllib.request.urlopen(f"{result.last('api')['url']}/token", timeout=5) as response:
        assert response.read().decode().strip() == token  # the container sees it

    assert token not in result.out
    assert token not in result.err
    for container in bed.inspect(*bed.ids("container")):
        assert token not in json.dumps(container["Config"]["Labels"])
    files = [p for p in own_state.parent.rglob("*") if p.is_file()]
    assert own_state in files
    for path in files:
        assert token.encode() not in path.read_bytes(), path
    (job_log,) = own_state.parent.glob(f"logs/run-*/{bed.env}.laptop.show.deploy.log")
    assert "token=***" in job_log.read_text()


def test_a_redeploy_with_two_replicas_never_leaves_the_service_down(
    bed: Bed, write_config: Callable[[str], Path], tmp_path: Path, run: Callable[..., Outcome]
) -> None:
    """Replacing two replicas starts the new ones before removing the old: at every moment of
    the redeploy a container of the service is running."""
    unique_context(tmp_path / "app", HTTPD)

    def config(value: str) -> Path:
        return write_config(
            pipeline(
                bed,
                "  api: {type: application, build: ./app, port: 8080, health: /healthz, "
                f"replicas: 2, env: {{V: '{value}'}}}}\n",
            )
        )

    assert run(config("1")).code == 0
    running = ["ps", "--filter", f"label={ENV_LABEL}={bed.env}", "--filter", "status=running"]
    names = [*running, "--format", "{{.Names}}"]
    assert sorted(bed.cli(*names).split()) == [f"dp-{bed.env}-api-1-{i}" for i in (0, 1)]

    samples: list[list[str]] = []
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + WAIT
        while not done.is_set() and time.monotonic() < deadline:
            samples.append(bed.cli(*names).split())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        second = run(config("2"))
    finally:
        done.set()
        watcher.join()
    assert second.code == 0, second.summary()
    assert [s for s in samples if not s] == [], "a moment with no container running"
    seen = {name for sample in samples for name in sample}
    assert f"dp-{bed.env}-api-1-0" in seen  # the watcher saw the old ones…
    assert f"dp-{bed.env}-api-2-0" in seen  # …and the new ones: it watched the whole swap
    assert sorted(bed.cli(*names).split()) == [f"dp-{bed.env}-api-2-{i}" for i in (0, 1)]


def test_restart_restarts_in_place_and_stop_keeps_the_containers(
    bed: Bed, write_config: Callable[[str], Path], tmp_path: Path, run: Callable[..., Outcome]
) -> None:
    """restart keeps the containers and starts them anew; stop keeps them stopped; restarting a
    service never deployed fails, saying to deploy it first."""
    unique_context(tmp_path / "app", HTTPD)
    config = write_config(
        pipeline(
            bed,
            "  api: {type: application, build: ./app, port: 8080, health: /healthz, replicas: 2}\n"
            "  other: {type: container, image: dp-test/never-deployed:1, port: 8080}\n",
        )
    )
    assert run(config, "deploy", "--service", "api").code == 0

    def state() -> dict[str, tuple[str, str]]:
        found = bed.inspect(*bed.ids("container", f"{SERVICE_LABEL}=api"))
        return {str(c["Id"]): (c["State"]["Status"], c["State"]["StartedAt"]) for c in found}

    before = state()
    assert len(before) == 2

    restarted = run(config, "restart", "--service", "api")
    assert restarted.code == 0, restarted.summary()
    after = state()
    assert after.keys() == before.keys()  # the same containers
    for cid, (status, started) in after.items():
        assert status == "running"
        assert started != before[cid][1]

    stopped = run(config, "stop", "--service", "api")
    assert stopped.code == 0, stopped.summary()
    assert stopped.status("api", "stop") == "succeeded"
    kept = state()
    assert kept.keys() == before.keys()
    assert {status for status, _ in kept.values()} == {"exited"}

    never = run(config, "restart", "--service", "other")
    assert never.code == 1
    assert never.status("other", "restart") == "failed"
    for told in (never.message("other", "restart"), never.summary()):
        assert f"other is not deployed in {bed.env}" in told
        assert "deploy it first" in told


def test_every_container_volume_and_network_carries_the_labels(
    bed: Bed,
    prebuilt: Images,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    run: Callable[..., Outcome],
) -> None:
    """Containers, volumes and the network of an environment are labelled as deploy-pipeline's,
    with their environment and (but for the shared network) their service."""
    unique_context(tmp_path / "app", HTTPD)
    config = write_config(
        pipeline(
            bed,
            f"  db: {{type: database, image: {prebuilt.sleeper}}}\n"
            "  init: {type: job, build: ./app, command: [/bin/busybox, true]}\n"
            "  api: {type: application, build: ./app, port: 8080, health: /healthz}\n",
        )
    )
    assert run(config).code == 0
    prefix = f"name=dp-{bed.env}-"  # found by name: the labels are what is being checked
    containers = bed.inspect(*bed.cli("ps", "-aq", "--filter", prefix).split())
    volumes = json.loads(
        bed.cli("volume", "inspect", *bed.cli("volume", "ls", "-q", "--filter", prefix).split())
    )
    network = json.loads(bed.cli("network", "inspect", f"dp-{bed.env}"))[0]

    by_service = {c["Config"]["Labels"][SERVICE_LABEL]: c["Config"]["Labels"] for c in containers}
    assert sorted(by_service) == ["api", "db", "init"]
    assert [v["Labels"][SERVICE_LABEL] for v in volumes] == ["db"]
    for labels in [*by_service.values(), *(v["Labels"] for v in volumes), network["Labels"]]:
        assert labels["app.kubernetes.io/managed-by"] == "deploy-pipeline"
        assert labels[ENV_LABEL] == bed.env


def test_services_deployed_at_once_into_a_new_environment_share_one_network(
    bed: Bed, prebuilt: Images, write_config: Callable[[str], Path], run: Callable[..., Outcome]
) -> None:
    """Four services deployed in parallel into a new environment create one network between
    them, not one each: the engine accepts duplicate network names."""
    services = "".join(
        f"  s{i}: {{type: container, image: {prebuilt.sleeper}}}\n" for i in range(4)
    )
    result = run(write_config(pipeline(bed, services)))
    assert result.code == 0, result.summary()
    assert len(bed.cli("network", "ls", "-q", "--filter", f"name=^dp-{bed.env}$").split()) == 1


def test_containers_run_with_their_environments_resolved_settings(
    bed: Bed,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    run: Callable[..., Outcome],
    own_state: Path,
    prebuilt: Images,
) -> None:
    """The environment's image, replicas and env (precedence and substitutions made, `${url:api}`
    as api's deploy reported it) are what the engine's containers run with (DESIGN.md §8)."""
    unique_context(
        tmp_path / "app",
        "/bin/busybox mkdir -p /www && /bin/busybox echo ok > /www/healthz && "
        "exec /bin/busybox httpd -f -p 8080 -h /www",
    )
    config = write_config(
        f"version: 1\nregistry: {bed.registry}/t\nstages: [backend, frontend]\n"
        "targets: {laptop: {kind: docker}}\n"
        "services:\n"
        "  api: {type: application, build: ./app, port: 8080, health: /healthz, stage: backend}\n"
        f"  web: {{type: container, image: {prebuilt.crasher}, stage: frontend,\n"
        "        env: {LAYER: service, KEEP: kept}}\n"
        "environments:\n"
        f"  {bed.env}:\n"
        "    target: laptop\n"
        "    env: {LAYER: environment, NAME: '${environment}'}\n"
        "    services:\n"
        f"      web: {{image: {prebuilt.sleeper}, replicas: 2,\n"
        "             env: {LAYER: web-here, API: '${url:api}', LIT: '$${x}'}}\n"
    )
    result = run(config)
    assert result.code == 0, result.summary()
    api_url = result.last("api")["url"]
    assert isinstance(api_url, str) and api_url.startswith("http://127.0.0.1:")
    web = bed.inspect(*bed.ids("container", f"{SERVICE_LABEL}=web"))
    assert len(web) == 2  # the environment's replicas
    for container in web:
        assert container["Config"]["Image"] == prebuilt.sleeper  # the environment's image
        env = dict(item.split("=", 1) for item in container["Config"]["Env"])
        assert {k: env.get(k) for k in ("LAYER", "KEEP", "NAME", "API", "LIT")} == {
            "LAYER": "web-here",
            "KEEP": "kept",
            "NAME": bed.env,
            "API": api_url,
            "LIT": "${x}",
        }


RELEASE_LABEL = "io.deploy-pipeline.release"


def releases(bed: Bed, config: Path, capsys: pytest.CaptureFixture[str]) -> list[Any]:
    """`history --format json` of the test's environment: its releases, newest first."""
    assert main(["history", "-f", str(config), "-e", bed.env, "--format", "json"]) == 0
    found: list[Any] = json.loads(capsys.readouterr().out)["releases"]
    return found


def test_a_deploy_records_a_release_by_digest_and_labels_every_container(
    bed: Bed,
    prebuilt: Images,
    write_config: Callable[[str], Path],
    tmp_path: Path,
    run: Callable[..., Outcome],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The built service runs and is recorded by its registry digest (REPO@sha256:…), the
    prebuilt one only this engine has by its image id (sha256:…); each container carries the
    release that deployed it, with its own image and settings."""
    unique_context(tmp_path / "app", HTTPD)
    config = write_config(
        pipeline(
            bed,
            "  api: {type: application, build: ./app, port: 8080, health: /healthz,"
            " env: {MODE: blue}}\n"
            f"  web: {{type: container, image: {prebuilt.sleeper}, replicas: 2}}\n",
        )
    )
    result = run(config)
    assert result.code == 0, result.summary()
    [release] = releases(bed, config, capsys)
    assert (release["id"], release["action"]) == (1, "deploy")
    api, web = release["services"]["api"], release["services"]["web"]
    repository = f"{bed.registry}/t/api"
    assert (
        api["image"].startswith(f"{repository}@sha256:")
        and len(api["image"]) == len(repository) + len("@sha256:") + 64
    )
    assert (api["target"], api["env"], api["replicas"]) == ("laptop", {"MODE": "blue"}, 1)
    local_id = bed.cli("image", "inspect", "--format", "{{.Id}}", prebuilt.sleeper).strip()
    assert web["image"] == local_id and local_id.startswith("sha256:")
    assert web["replicas"] == 2
    containers = bed.inspect(*bed.ids("container"))
    assert len(containers) == 3
    for c in containers:
        labels = c["Config"]["Labels"]
        part = json.loads(labels[RELEASE_LABEL])
        service = labels[SERVICE_LABEL]
        assert (part["id"], part["run"], part["image"]) == (
            1,
            1,
            release["services"][service]["image"],
        )
        if service == "api":  # what runs is the digest, never the moving tag
            assert c["Config"]["Image"] == api["image"]


def test_a_second_deploy_of_one_service_carries_the_others_over_and_recover_restores_it(
    bed: Bed,
    prebuilt: Images,
    write_config: Callable[[str], Path],
    run: Callable[..., Outcome],
    capsys: pytest.CaptureFixture[str],
    own_state: Path,
) -> None:
    """Deploying only `web` again (new settings) makes release 2 with `api` as release 1 had
    it; with the state database deleted, `env recover` reads release 2 back from the
    containers' labels, every service's image and settings as they were."""
    services = (
        f"  api: {{type: container, image: {prebuilt.httpd}, port: 8080, health: /healthz}}\n"
        f"  web: {{type: container, image: {prebuilt.sleeper}, env: {{COLOR: {{color}}}}}}\n"
    )
    first = write_config(pipeline(bed, services.replace("{color}", "red")))
    assert run(first).code == 0
    second = write_config(pipeline(bed, services.replace("{color}", "blue")))
    outcome = run(second, "deploy", "--service", "web")
    assert outcome.code == 0, outcome.summary()
    newer, older = releases(bed, second, capsys)
    assert (newer["id"], older["id"]) == (2, 1)
    assert newer["services"]["api"] == older["services"]["api"]
    assert newer["services"]["web"]["env"] == {"COLOR": "blue"}
    assert older["services"]["web"]["env"] == {"COLOR": "red"}

    for path in own_state.parent.glob("state.db*"):
        path.unlink()
    assert main(["env", "recover", bed.env, "-f", str(second)]) == 0
    said = capsys.readouterr().out
    assert f"✔ {bed.env}: release v2 on laptop (run 2, 2 services)" in said
    [restored] = releases(bed, second, capsys)
    assert restored["id"] == 2 and restored["run"] == 2
    assert restored["services"] == newer["services"]


def test_a_deploy_after_the_state_database_is_lost_goes_on_from_the_targets_release(
    bed: Bed,
    prebuilt: Images,
    write_config: Callable[[str], Path],
    run: Callable[..., Outcome],
    capsys: pytest.CaptureFixture[str],
    own_state: Path,
) -> None:
    """With the state database deleted, a deploy of one service reads the latest release back
    from the containers first: it records release 2, with the other service carried over."""
    config = write_config(
        pipeline(
            bed,
            f"  api: {{type: container, image: {prebuilt.httpd}, port: 8080}}\n"
            f"  web: {{type: container, image: {prebuilt.sleeper}}}\n",
        )
    )
    assert run(config).code == 0
    [first] = releases(bed, config, capsys)
    for path in own_state.parent.glob("state.db*"):
        path.unlink()
    outcome = run(config, "deploy", "--service", "web")
    assert outcome.code == 0, outcome.summary()
    newer, older = releases(bed, config, capsys)
    assert (newer["id"], older["id"]) == (2, 1)
    assert newer["services"] == first["services"]
