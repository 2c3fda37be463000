"""Benchmark of the docker target against Debian's docker-compose, on the same ~10-service shop.

Every round generates a shop in a temporary folder (a database, a cache, two jobs, five
applications built from busybox contexts, an edge container; four stages) and measures, on the
local engine and registry: deploy-pipeline's first deploy (builds, pushes, deploys stage by stage,
waits for health) and its second deploy of unchanged code, through the real CLI; then
`docker-compose up -d --build` and a second `up -d` of the same services from the same contexts,
with `depends_on` for the stage order, and `docker-compose build --parallel` + `up -d`; each compose
run is also timed until every service answers. Rounds are independent (fresh contexts, registry
repository, images and state; every build starts from a cold cache). See bench/README.md for what
is measured and the figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common import timed, workdir

BUSYBOX = Path("/bin/busybox")
STAGES = ("data", "migrations", "backend", "frontend")
ROUND_LABEL = "io.deploy-pipeline.bench-round"  # on every image a round builds, intermediates too
BASE_LABEL = "io.deploy-pipeline.bench-base"
MANAGED_LABEL = "app.kubernetes.io/managed-by=deploy-pipeline"  # on every container it starts
ENV_LABEL = "io.deploy-pipeline.environment"
HEALTH = "/healthz"
WAIT_POLL = 0.05  # seconds between checks of the compose + wait figure
WAIT_LIMIT = 120.0
SECOND_MAX = 0.10  # second deploy ≤ 10 % of the first
COMPOSE_MAX = 1.0  # deploy-pipeline ≤ 1.0 × docker-compose
COMPOSE_ENV = {"COMPOSE_DOCKER_CLI_BUILD": "0", "DOCKER_BUILDKIT": "0"}  # the engine's builder
BB = "/bin/busybox"
PARALLELISM = 7  # deploy-pipeline's defaults.parallelism (its own default); --parallelism


# --- the workload -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Svc:
    name: str
    type: str  # database, container, job, application
    stage: str
    script: str  # the shell command the container runs
    port: int | None = None
    health: bool = False  # serves HTTP 2xx on /healthz (else: up for 1.5 s counts as started)

    @property
    def built(self) -> bool:
        return self.type in {"job", "application"}


def httpd(port: int, root: str) -> str:
    return f"exec {BB} httpd -f -p {port} -h {root}"


SHOP: tuple[Svc, ...] = (
    Svc("db", "database", "data", httpd(5432, "/data"), port=5432),
    Svc("cache", "container", "data", httpd(6379, "/www"), port=6379),
    Svc("migrate", "job", "migrations", "echo applying 3 migrations; echo done"),
    Svc("seed", "job", "migrations", "echo loading the catalog; echo 120 products"),
    Svc("api", "application", "backend", httpd(8080, "/app"), port=8080, health=True),
    Svc("catalog", "application", "backend", httpd(8080, "/app"), port=8080, health=True),
    Svc("cart", "application", "backend", httpd(8080, "/app"), port=8080, health=True),
    Svc("worker", "application", "backend", f"exec {BB} sleep 2147483647"),
    Svc("web", "application", "frontend", httpd(8080, "/app"), port=8080, health=True),
    Svc("edge", "container", "frontend", httpd(8080, "/www"), port=8080, health=True),
)
BY_NAME = {s.name: s for s in SHOP}


def command(svc: Svc) -> list[str]:
    return [BB, "sh", "-c", svc.script]


def write_context(folder: Path, svc: Svc, nonce: str) -> None:
    """A build context FROM scratch: busybox, an /app folder (with /healthz), the service's CMD.
    The first instruction names the round, so no layer is shared with any other round's."""
    (folder / "app").mkdir(parents=True)
    shutil.copy(BUSYBOX, folder / "busybox")
    (folder / "app" / "healthz").write_text("ok\n")
    (folder / "app" / "index.html").write_text(f"<h1>{svc.name}</h1> round {nonce}\n")
    (folder / "Dockerfile").write_text(
        "FROM scratch\n"
        f"LABEL {ROUND_LABEL}={nonce}\n"
        "COPY busybox /bin/busybox\n"
        "COPY app /app\n"
        f"CMD {json.dumps(command(svc))}\n"
    )


def write_base(folder: Path, tag: str) -> None:
    """The prebuilt image of the database and the two containers (built once, untimed)."""
    (folder / "www").mkdir(parents=True)
    shutil.copy(BUSYBOX, folder / "busybox")
    (folder / "www" / "healthz").write_text("ok\n")
    (folder / "Dockerfile").write_text(
        f"FROM scratch\nLABEL {BASE_LABEL}={tag}\nCOPY busybox /bin/busybox\n"
        f'COPY www /www\nCMD ["{BB}", "sh"]\n'
    )


@dataclass(frozen=True)
class Round:
    index: int
    folder: Path
    nonce: str
    registry_repo: str  # deploy-pipeline's images: <registry>/bench-<nonce>/<service>:sha-…
    environment: str
    project: str  # the compose project
    base: str  # the prebuilt image

    @property
    def config(self) -> Path:
        return self.folder / ".deploy-pipeline.yml"

    @property
    def compose_file(self) -> Path:
        return self.folder / "docker-compose.yml"

    def compose_image(self, name: str) -> str:
        return f"{self.project}/{name}:latest"  # local only: compose never pushes on `up`


def make_round(root: Path, index: int, registry: str, base: str) -> Round:
    nonce = secrets.token_hex(4)
    rnd = Round(
        index=index,
        folder=root / f"round-{index}",
        nonce=nonce,
        registry_repo=f"{registry}/bench-{nonce}",
        environment=f"bench-{nonce}",
        project=f"dpbench{nonce}",
        base=base,
    )
    for svc in SHOP:
        if svc.built:
            write_context(rnd.folder / svc.name, svc, nonce)
    rnd.config.write_text(yaml.safe_dump(pipeline_doc(rnd), sort_keys=False))
    rnd.compose_file.write_text(yaml.safe_dump(compose_doc(rnd), sort_keys=False))
    return rnd


def pipeline_doc(rnd: Round) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for svc in SHOP:
        entry: dict[str, Any] = {"type": svc.type, "stage": svc.stage}
        if svc.built:
            entry["build"] = f"./{svc.name}"
        else:
            entry["image"] = rnd.base
            entry["command"] = command(svc)
        if svc.port:
            entry["port"] = svc.port
        if svc.health:
            entry["health"] = HEALTH
        services[svc.name] = entry
    return {
        "version": 1,
        "registry": rnd.registry_repo,
        "defaults": {"parallelism": PARALLELISM, "timeout": "2m", "build_ahead": True},
        "stages": list(STAGES),
        "targets": {"local": {"kind": "docker"}},
        "services": services,
        "environments": {rnd.environment: {"target": "local"}},
    }


def compose_doc(rnd: Round) -> dict[str, Any]:
    """The same services for docker-compose: each depends on every service of the stage before."""
    services: dict[str, Any] = {}
    for svc in SHOP:
        k = STAGES.index(svc.stage)
        entry: dict[str, Any] = {}
        if svc.built:
            entry["build"] = f"./{svc.name}"
            entry["image"] = rnd.compose_image(svc.name)
        else:
            entry["image"] = rnd.base
            entry["command"] = command(svc)
        entry["init"] = True  # as deploy-pipeline runs containers: a PID 1 that forwards SIGTERM
        entry["restart"] = "no" if svc.type == "job" else "unless-stopped"
        if svc.port:
            entry["ports"] = [f"127.0.0.1::{svc.port}"]
        if svc.type == "database":
            entry["volumes"] = ["db-data:/data"]
        if k:
            entry["depends_on"] = [s.name for s in SHOP if s.stage == STAGES[k - 1]]
        services[svc.name] = entry
    return {"version": "2.4", "services": services, "volumes": {"db-data": {}}}


# --- the engine -------------------------------------------------------------------------------


def docker_sdk() -> Any:
    """The Docker SDK. This file is bench/docker.py: with its folder on sys.path (as it is when
    run as a script), `import docker` would import this file, here and in deploy_pipeline; and
    when another bench imports this file as `docker`, the SDK takes the name back from it."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if sys.modules.get("docker") is sys.modules.get(__name__):
        del sys.modules["docker"]
    import docker  # (its `errors` module comes with it)

    return docker


class Bed:
    """The engine (DOCKER_HOST) and the loopback registry (DP_TEST_REGISTRY)."""

    def __init__(self) -> None:
        self.registry = os.environ.get("DP_TEST_REGISTRY", "")
        if not os.environ.get("DOCKER_HOST") or not self.registry:
            raise SystemExit(
                "DOCKER_HOST and DP_TEST_REGISTRY are not set: run "
                '`eval "$(scripts/docker-testenv env)"` first (scripts/docker-testenv start)'
            )
        if not BUSYBOX.is_file():
            raise SystemExit("no /bin/busybox to build images from (apt install busybox-static)")
        if shutil.which("docker-compose") is None:
            raise SystemExit("no docker-compose (apt install docker-compose)")
        self.sdk = docker_sdk()
        self.client = self.sdk.from_env(timeout=300)
        self.engine = str(self.client.version().get("Version", "?"))
        self.watch = Watch(self.sdk)

    def build_base(self, folder: Path, tag: str) -> None:
        write_base(folder, tag)
        self.client.images.build(path=str(folder), tag=tag, rm=True, forcerm=True)

    def purge_images(self, label: str) -> int:
        """Remove every image carrying `label` (tags, then the untagged intermediates), and any
        container made from one (a build step's container, left when a build is interrupted)."""
        for c in self.client.api.containers(all=True, filters={"label": label}):
            with suppress(self.sdk.errors.NotFound):
                self.client.api.remove_container(c["Id"], force=True)
        removed = 0
        for _ in range(5):
            found = self.client.images.list(all=True, filters={"label": label})
            if not found:
                return removed
            for image in sorted(found, key=lambda i: -len(i.tags)):
                for ref in image.tags or [image.id]:
                    with suppress(self.sdk.errors.APIError):
                        self.client.images.remove(ref, force=True)
                        removed += 1
        left = self.client.images.list(all=True, filters={"label": label})
        if left:
            raise RuntimeError(f"{len(left)} images with {label} could not be removed")
        return removed

    def round_images(self, nonce: str) -> int:
        return len(self.client.images.list(all=True, filters={"label": f"{ROUND_LABEL}={nonce}"}))

    def delete_from_registry(self, repo: str) -> int:
        """Delete the tags of deploy-pipeline's repositories (blobs stay until a registry GC)."""
        host, _, prefix = repo.partition("/")
        accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        deleted = 0
        for name in (f"{prefix}/{svc.name}" for svc in SHOP if svc.built):
            with suppress(OSError):  # (an HTTPError too: no such repository)
                for tag in _get_json(f"http://{host}/v2/{name}/tags/list").get("tags") or []:
                    url = f"http://{host}/v2/{name}/manifests/"
                    head = urllib.request.Request(url + tag, method="HEAD", headers=accept)
                    with urllib.request.urlopen(head, timeout=10) as response:
                        digest = response.headers["Docker-Content-Digest"]
                    delete = urllib.request.Request(url + digest, method="DELETE")
                    urllib.request.urlopen(delete, timeout=10).close()
                    deleted += 1
        return deleted

    def compose_state(self, project: str) -> dict[str, dict[str, Any]]:
        """Each compose container's state, by service: status, exit code, start time, ports."""
        out: dict[str, dict[str, Any]] = {}
        label = f"com.docker.compose.project={project}"
        for c in self.client.api.containers(all=True, filters={"label": label}):
            name = c["Labels"].get("com.docker.compose.service", "")
            ports = {p["PrivatePort"]: p["PublicPort"] for p in c["Ports"] if "PublicPort" in p}
            out[name] = {"id": c["Id"], "state": c["State"], "ports": ports}
        for name, info in out.items():
            if BY_NAME[name].type == "job":
                state = self.client.api.inspect_container(info["id"])["State"]
                info["exit"], info["started"] = state["ExitCode"], state["StartedAt"]
        return out

    def remove_leftovers(self, rnd: Round) -> None:
        label = f"{ENV_LABEL}={rnd.environment}"
        for c in self.client.containers.list(all=True, sparse=True, filters={"label": label}):
            with suppress(self.sdk.errors.NotFound):
                c.remove(force=True)
        for v in self.client.volumes.list(filters={"label": label}):
            v.remove(force=True)
        for n in self.client.networks.list(filters={"label": label}):
            n.remove()

    def leftovers(self, rnd: Round) -> list[str]:
        labels = [
            f"{ENV_LABEL}={rnd.environment}",
            f"com.docker.compose.project={rnd.project}",
        ]
        found = []
        for label in labels:
            found += [
                c["Names"][0]
                for c in self.client.api.containers(all=True, filters={"label": label})
            ]
            found += [v.name for v in self.client.volumes.list(filters={"label": label})]
            found += [n.name for n in self.client.networks.list(filters={"label": label})]
        return found


class Watch:
    """Counts the engine's container events that belong to someone else's deploy-pipeline
    environment (a test suite on the same engine, say): a round that sees any is disturbed (the
    test bed's clean-up removes every deploy-pipeline container, ours included)."""

    def __init__(self, sdk: Any) -> None:
        self.mine: set[str] = set()
        self.foreign = 0
        self.stream = sdk.from_env(timeout=None).events(
            decode=True, filters={"type": "container", "label": MANAGED_LABEL}
        )
        threading.Thread(target=self.read, daemon=True).start()

    def read(self) -> None:
        with suppress(Exception):  # the stream ends when closed
            for event in self.stream:
                env = event.get("Actor", {}).get("Attributes", {}).get(ENV_LABEL)
                if env is not None and env not in self.mine:  # (build steps have none)
                    self.foreign += 1

    def close(self) -> None:
        with suppress(Exception):
            self.stream.close()


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH}", timeout=1) as response:
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError):
        return False


# --- deploy-pipeline through its CLI ----------------------------------------------------------


@dataclass
class DeployRun:
    wall: float  # seconds, the whole `deploy-pipeline deploy` process
    run: float  # seconds, the runner's own figure (the `run` event): wall minus start-up and exit
    built: int
    reused: int
    ok: bool
    events: list[dict[str, Any]] = field(repr=False)
    error: str = ""


def deploy_pipeline(rnd: Round, action: str, *extra: str) -> DeployRun:
    """`deploy-pipeline ACTION -f … -e … [EXTRA…] --events jsonl` in a process of its own, timed."""
    env = {**os.environ, "DEPLOY_PIPELINE_STATE": str(rnd.folder / "state.db")}
    argv = [sys.executable, "-m", "deploy_pipeline", action, "-f", str(rnd.config)]
    argv += ["-e", rnd.environment, *extra]
    argv += ["--events", "jsonl"]
    wall, out = timed(argv, env, rnd.folder)
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    builds = Counter(e["status"] for e in events if e["phase"] == "build")
    run = next((e for e in events if e["phase"] == "run"), None)
    ok = out.returncode == 0 and run is not None and run["status"] == "succeeded"
    error = ""
    if not ok:
        failed = [e for e in events if e["status"] == "failed" and e["phase"] != "run"]
        error = failed[0]["message"] if failed else out.stderr.strip()[-1500:]
        print(f"round {rnd.index}: deploy-pipeline {action} failed ({out.returncode}): {error}")
        error = f"round {rnd.index}, {action}: {error}"
    return DeployRun(
        error=error,
        wall=wall,
        run=float(run["duration"]) if run else wall,
        built=builds["succeeded"],
        reused=builds["reused"],
        ok=ok,
        events=events,
    )


# --- docker-compose ---------------------------------------------------------------------------


@dataclass
class ComposeRun:
    up: float  # seconds until `docker-compose up -d` (after `build --parallel`, if asked) returns
    ready: float  # seconds from the same start until every service answers, jobs exited 0
    ok: bool


def compose(rnd: Round, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    argv = ["docker-compose", "-p", rnd.project, "-f", str(rnd.compose_file), *args]
    env = {**os.environ, **COMPOSE_ENV}
    return timed(argv, env, rnd.folder)


def compose_up(bed: Bed, rnd: Round, *steps: tuple[str, ...]) -> ComposeRun:
    """The compose commands in turn, timed together; then poll (from the same start) until
    every service answers. The poll happens after `up -d` returns, so it never slows it."""
    before = bed.compose_state(rnd.project)
    t0 = time.perf_counter()
    for args in steps:
        _, out = compose(rnd, *args)
        if out.returncode != 0:
            print(
                f"round {rnd.index}: docker-compose {' '.join(args)} failed: {out.stderr[-2000:]}"
            )
            up = time.perf_counter() - t0
            return ComposeRun(up, up, ok=False)
    up = time.perf_counter() - t0
    while time.perf_counter() - t0 < WAIT_LIMIT:
        if all_ready(bed.compose_state(rnd.project), before):
            return ComposeRun(up, time.perf_counter() - t0, ok=True)
        time.sleep(WAIT_POLL)
    print(f"round {rnd.index}: compose services not ready within {WAIT_LIMIT:.0f} s")
    return ComposeRun(up, time.perf_counter() - t0, ok=False)


def all_ready(state: dict[str, dict[str, Any]], before: dict[str, dict[str, Any]]) -> bool:
    """Jobs ran (again) to exit 0, HTTP services answer /healthz, the others run."""
    for svc in SHOP:
        info = state.get(svc.name)
        if info is None:
            return False
        if svc.type == "job":
            again = svc.name not in before or info["started"] != before[svc.name].get("started")
            if not (again and info["state"] == "exited" and info["exit"] == 0):
                return False
        elif info["state"] != "running" or (svc.health and not serves(svc, info["ports"])):
            return False
    return True


def serves(svc: Svc, ports: dict[int, int]) -> bool:
    return svc.port in ports and answers(ports[svc.port])


# --- one round --------------------------------------------------------------------------------


@dataclass
class RoundResult:
    index: int
    order: list[str]
    first: DeployRun  # deploy-pipeline
    second: DeployRun
    delete: DeployRun
    compose_first: ComposeRun  # up -d --build
    compose_second: ComposeRun  # up -d, nothing changed
    compose_parallel: ComposeRun  # build --parallel, then up -d
    cold: dict[str, int]  # images of the round on the engine before each tool built (0: cold)
    foreign: int  # container events of someone else's deploy-pipeline runs during the round

    def ratios(self) -> dict[str, float]:
        return {
            "second_over_first": self.second.wall / self.first.wall,
            "first_over_compose": self.first.wall / self.compose_first.up,
            "second_over_compose": self.second.wall / self.compose_second.up,
            "first_over_compose_ready": self.first.wall / self.compose_first.ready,
            "second_over_compose_ready": self.second.wall / self.compose_second.ready,
            "first_over_compose_parallel": self.first.wall / self.compose_parallel.up,
            "first_over_compose_parallel_ready": self.first.wall / self.compose_parallel.ready,
        }

    @property
    def ok(self) -> bool:
        runs = (self.compose_first, self.compose_second, self.compose_parallel)
        return self.first.ok and self.second.ok and all(r.ok for r in runs)


def measure_round(bed: Bed, root: Path, index: int, base: str) -> RoundResult:
    """The three ways on one generated shop, each from a cold cache; the order alternates."""
    rnd = make_round(root, index, bed.registry, base)
    purge = f"{ROUND_LABEL}={rnd.nonce}"
    got: dict[str, Any] = {}
    cold: dict[str, int] = {}

    def dp() -> None:
        cold["deploy-pipeline"] = bed.round_images(rnd.nonce)
        got["first"] = deploy_pipeline(rnd, "deploy")
        got["second"] = deploy_pipeline(rnd, "deploy") if got["first"].ok else got["first"]
        got["delete"] = deploy_pipeline(rnd, "delete")
        if not got["delete"].ok:  # remove what it left, so that the rounds stay independent
            bed.remove_leftovers(rnd)
        bed.purge_images(purge)
        bed.delete_from_registry(rnd.registry_repo)

    def dc() -> None:
        cold["compose"] = bed.round_images(rnd.nonce)
        got["compose_first"] = compose_up(bed, rnd, ("up", "-d", "--build"))
        got["compose_second"] = compose_up(bed, rnd, ("up", "-d"))
        compose(rnd, "down", "-v", "--remove-orphans", "-t", "5")
        bed.purge_images(purge)

    def dc_parallel() -> None:
        cold["compose --parallel"] = bed.round_images(rnd.nonce)
        steps = (("build", "--parallel"), ("up", "-d"))
        got["compose_parallel"] = compose_up(bed, rnd, *steps)
        compose(rnd, "down", "-v", "--remove-orphans", "-t", "5")
        bed.purge_images(purge)

    order = [("deploy-pipeline", dp), ("compose", dc), ("compose --parallel", dc_parallel)]
    if index % 2 == 0:
        order.reverse()
    bed.watch.mine.add(rnd.environment)
    seen = bed.watch.foreign
    try:
        for _, measure in order:
            measure()
    except BaseException:
        cleanup(bed, rnd)
        raise
    foreign = bed.watch.foreign - seen
    if foreign:
        print(f"round {index}: DISTURBED: {foreign} events of other deploy-pipeline containers")
    left = bed.leftovers(rnd)
    if left:
        print(f"round {index}: left behind after clean-up: {left}")
    names = [name for name, _ in order]
    return RoundResult(index=index, order=names, cold=cold, foreign=foreign, **got)


def cleanup(bed: Bed, rnd: Round) -> None:
    """After an error: whatever either tool left of this round."""
    with suppress(Exception):
        if not deploy_pipeline(rnd, "delete").ok:
            bed.remove_leftovers(rnd)
    with suppress(Exception):
        compose(rnd, "down", "-v", "--remove-orphans", "-t", "1")
    with suppress(Exception):
        bed.purge_images(f"{ROUND_LABEL}={rnd.nonce}")
    with suppress(Exception):
        bed.delete_from_registry(rnd.registry_repo)


# --- where deploy-pipeline's time goes (from its events) --------------------------------------


def timeline(run: DeployRun) -> dict[str, Any]:
    """Builds (count, durations, when the last ended) and each stage's deploy window."""
    ends = [e for e in run.events if e.get("duration") is not None and e["phase"] != "run"]
    builds = [e for e in ends if e["phase"] == "build"]
    stages: dict[str, list[float]] = {}
    for e in run.events:
        if e["phase"] == "deploy" and e["stage"]:
            window = stages.setdefault(e["stage"], [e["ts"], e["ts"]])
            window[0], window[1] = min(window[0], e["ts"]), max(window[1], e["ts"])
    deploys = {e["service"]: e["duration"] for e in ends if e["phase"] == "deploy"}
    return {
        "startup_and_exit_s": run.wall - run.run,
        "builds": len(builds),
        "build_s": sorted(round(e["duration"], 3) for e in builds),
        "builds_done_at_s": max((e["ts"] for e in builds), default=0.0),
        "stages": {k: [round(a, 3), round(b, 3)] for k, (a, b) in stages.items()},
        "deploy_s": {k: round(v, 3) for k, v in deploys.items()},
    }


def show_timeline(title: str, run: DeployRun) -> None:
    t = timeline(run)
    startup = t["startup_and_exit_s"]
    print(f"{title}: {run.wall:.2f} s = start-up/exit {startup:.2f} s + run {run.run:.2f} s")
    if t["builds"]:
        each = ", ".join(f"{d:.2f}" for d in t["build_s"])
        print(
            f"  {t['builds']} build steps (build + push, or a registry check), in parallel: "
            f"{each} s; the last done at {t['builds_done_at_s']:.2f} s"
        )
    for stage, (a, b) in t["stages"].items():
        members = [s.name for s in SHOP if s.stage == stage]
        steps = ", ".join(f"{n} {t['deploy_s'].get(n, 0):.2f}" for n in members)
        print(f"  stage {stage:<10} {a:6.2f} → {b:6.2f} s ({b - a:.2f} s): {steps}")


# --- profile: engine calls of one more first and second deploy, in process ---------------------

PROFILED = {
    "engine": (
        "build", "push", "in_registry", "images_labelled", "ensure_image", "ensure_network",
        "ensure_volume", "containers", "inspect", "run", "remove", "logs",
    ),
    "build": ("image",),
    "docker": ("spec_hash", "wait_healthy", "run_job"),
}  # fmt: skip
STEP_CALLS = ("build", "deploy")  # DockerBackend methods: they name the step of the calls inside


class Recorder:
    """Wraps methods of the engine and the backend; files every call's time under its step."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local = threading.local()
        self.calls: list[tuple[str, str, float]] = []  # step, call, seconds
        self.undo: list[tuple[type, str, Any]] = []

    def wrap(self, cls: type, name: str) -> None:
        fn = getattr(cls, name)
        label = f"{cls.__name__}.{name}"
        step = cls.__name__ == "DockerBackend" and name in STEP_CALLS

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outer = getattr(self.local, "step", "-")
            if step:
                self.local.step = f"{name} {args[1].service.name}"
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    here = getattr(self.local, "step", outer)  # (outside a step: "-")
                    self.calls.append((here, label, time.perf_counter() - t0))
                self.local.step = outer

        self.undo.append((cls, name, fn))
        setattr(cls, name, wrapper)

    def restore(self) -> None:
        for cls, name, fn in reversed(self.undo):
            setattr(cls, name, fn)

    def report(self) -> dict[str, Any]:
        """Per step: its time and where it went (calls nest: wait_healthy holds inspects)."""
        steps: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        totals: dict[str, list[float]] = defaultdict(list)
        for step, call, seconds in self.calls:
            steps[step][call] += seconds
            totals[call].append(seconds)
        return {
            "steps": {k: dict(v) for k, v in steps.items()},
            "calls": {k: {"n": len(v), "total_s": sum(v)} for k, v in totals.items()},
        }


def profile(bed: Bed, root: Path, base: str) -> dict[str, Any]:
    """A first and a second deploy of one more shop through `deploy_pipeline.operation` (what the
    CLI runs), with every engine call timed and filed under the step that made it."""
    from deploy_pipeline.backends import build, docker, engine
    from deploy_pipeline.events import Collect
    from deploy_pipeline.operation import Operation, Request
    from deploy_pipeline.runner import Cancel

    rnd = make_round(root, 0, bed.registry, base)
    bed.watch.mine.add(rnd.environment)
    seen = bed.watch.foreign
    classes = {"engine": engine.Engine, "build": build.Builder, "docker": docker.DockerBackend}
    out: dict[str, Any] = {}
    os.environ["DEPLOY_PIPELINE_STATE"] = str(rnd.folder / "state.db")
    try:
        for which in ("first", "second"):
            rec = Recorder()
            for key, names in PROFILED.items():
                for name in names:
                    rec.wrap(classes[key], name)
            for name in STEP_CALLS:
                rec.wrap(docker.DockerBackend, name)
            sink = Collect()
            t0 = time.perf_counter()
            try:
                with Operation(Request(rnd.config, [rnd.environment], "deploy")) as operation:
                    result = operation.perform([sink], Cancel())
            finally:
                rec.restore()
            out[which] = {
                "wall_s": time.perf_counter() - t0,
                "status": result.status,
                "failures": [e.message for e in sink.events if e.status == "failed"],
                "step_s": {
                    f"{e.phase} {e.service}": e.duration
                    for e in sink.events
                    if e.duration is not None and e.service
                },
                **rec.report(),
            }
    finally:
        os.environ.pop("DEPLOY_PIPELINE_STATE", None)
        cleanup(bed, rnd)
    out["foreign_events"] = bed.watch.foreign - seen
    return out


def show_profile(report: dict[str, Any]) -> None:
    if report["foreign_events"]:
        print(f"DISTURBED: {report['foreign_events']} events of other deploy-pipeline containers")
    for which in ("first", "second"):
        r = report[which]
        print(f"profile, {which} deploy in process: {r['wall_s']:.2f} s, {r['status']}")
        for message in r["failures"][:1]:
            print(f"  failure: {message}")
        for step, seconds in r["step_s"].items():
            calls = sorted(r["steps"].get(step, {}).items(), key=lambda kv: -kv[1])
            inside = ", ".join(
                f"{c.removeprefix('DockerBackend.')} {t:.2f}"
                for c, t in calls
                if t >= 0.005 and c.removeprefix("DockerBackend.") not in STEP_CALLS
            )
            print(f"  {step:<16} {seconds:5.2f} s: {inside}")


# --- start-up costs ---------------------------------------------------------------------------


def startup_costs() -> dict[str, float]:
    """Median wall time of a do-nothing invocation of each tool (3 tries)."""
    out: dict[str, float] = {}
    for name, argv in (
        ("deploy-pipeline --version", [sys.executable, "-m", "deploy_pipeline", "--version"]),
        ("docker-compose version", ["docker-compose", "version"]),
    ):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=False)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


# --- output -----------------------------------------------------------------------------------


def summary(rounds: Sequence[RoundResult]) -> dict[str, Any]:
    """Medians over the rounds: of each time, and of each round's ratios (paired, same load)."""
    times = {
        "first_s": [r.first.wall for r in rounds],
        "second_s": [r.second.wall for r in rounds],
        "compose_first_s": [r.compose_first.up for r in rounds],
        "compose_first_ready_s": [r.compose_first.ready for r in rounds],
        "compose_second_s": [r.compose_second.up for r in rounds],
        "compose_second_ready_s": [r.compose_second.ready for r in rounds],
        "compose_parallel_s": [r.compose_parallel.up for r in rounds],
        "compose_parallel_ready_s": [r.compose_parallel.ready for r in rounds],
    }
    out: dict[str, Any] = {k: statistics.median(v) for k, v in times.items()}
    for key in rounds[0].ratios():
        out[key] = statistics.median(r.ratios()[key] for r in rounds)
    out["first_builds"] = [r.first.built for r in rounds]
    out["second_builds"] = [r.second.built for r in rounds]
    out["cold"] = all(not any(r.cold.values()) for r in rounds)
    out["disturbed_rounds"] = [r.index for r in rounds if r.foreign]
    out["ok"] = all(r.ok for r in rounds)
    return out


def verdicts(s: dict[str, Any]) -> list[tuple[str, bool]]:
    return [
        ("every deploy and every compose run succeeded, every round", s["ok"]),
        (
            f"second deploy builds nothing (builds per round: {s['second_builds']})",
            not any(s["second_builds"]),
        ),
        (
            f"second deploy ≤ 10 % of the first ({100 * s['second_over_first']:.1f} %)",
            s["second_over_first"] <= SECOND_MAX,
        ),
        (
            f"first deploy ≤ 1.0 × docker-compose up -d --build ({s['first_over_compose']:.2f} ×)",
            s["first_over_compose"] <= COMPOSE_MAX,
        ),
        (
            f"second deploy ≤ 1.0 × docker-compose up -d ({s['second_over_compose']:.2f} ×)",
            s["second_over_compose"] <= COMPOSE_MAX,
        ),
    ]


COLUMNS = (
    ("round", 5),
    ("dp 1st", 6),
    ("built", 5),
    ("dp 2nd", 6),
    ("built", 5),
    ("up --build", 10),
    ("+ready", 6),
    ("up 2nd", 6),
    ("+ready", 6),
    ("par+up", 6),
    ("+ready", 6),
    ("1st ÷", 5),
    ("2nd ÷", 5),
    ("2nd/1st", 7),
)


def row(cells: Sequence[str]) -> str:
    return "  ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True))


def table(rounds: Sequence[RoundResult], s: dict[str, Any]) -> None:
    print("seconds; dp: deploy-pipeline (CLI); up --build, up 2nd, par+up (build --parallel, then")
    print("up -d): docker-compose; +ready: until every service answers; ÷: dp ÷ compose (up)")
    print(row([name for name, _ in COLUMNS]))
    for r in rounds:
        q = r.ratios()
        print(
            row(
                [
                    str(r.index),
                    f"{r.first.wall:.2f}",
                    str(r.first.built),
                    f"{r.second.wall:.2f}",
                    str(r.second.built),
                    f"{r.compose_first.up:.2f}",
                    f"{r.compose_first.ready:.2f}",
                    f"{r.compose_second.up:.2f}",
                    f"{r.compose_second.ready:.2f}",
                    f"{r.compose_parallel.up:.2f}",
                    f"{r.compose_parallel.ready:.2f}",
                    f"{q['first_over_compose']:.2f}",
                    f"{q['second_over_compose']:.2f}",
                    f"{100 * q['second_over_first']:.1f} %",
                ]
            )
        )
    print(
        row(
            [
                "med",
                f"{s['first_s']:.2f}",
                "",
                f"{s['second_s']:.2f}",
                "",
                f"{s['compose_first_s']:.2f}",
                f"{s['compose_first_ready_s']:.2f}",
                f"{s['compose_second_s']:.2f}",
                f"{s['compose_second_ready_s']:.2f}",
                f"{s['compose_parallel_s']:.2f}",
                f"{s['compose_parallel_ready_s']:.2f}",
                f"{s['first_over_compose']:.2f}",
                f"{s['second_over_compose']:.2f}",
                f"{100 * s['second_over_first']:.1f} %",
            ]
        )
    )
    print(
        "median ratios: first deploy ÷ compose + ready "
        f"{s['first_over_compose_ready']:.2f}, ÷ build --parallel + up "
        f"{s['first_over_compose_parallel']:.2f} (+ ready "
        f"{s['first_over_compose_parallel_ready']:.2f}); second deploy ÷ compose + ready "
        f"{s['second_over_compose_ready']:.2f}"
    )
    if s["disturbed_rounds"]:
        print(
            f"warning: rounds {s['disturbed_rounds']} were disturbed by another user of the engine"
            " (its deploy-pipeline containers came and went): run again on a quiet engine"
        )
    if not s["cold"]:
        print(
            "warning: a first build did not start from a cold cache: "
            + str([r.cold for r in rounds])
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="independent rounds (median kept)")
    parser.add_argument("--json", type=Path, help="also write every figure here as JSON")
    parser.add_argument(
        "--profile", action="store_true", help="also time every engine call of one more deploy"
    )
    parser.add_argument(
        "--parallelism", type=int, default=7, help="deploy-pipeline's defaults.parallelism (7)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = parser.parse_args(argv)
    global PARALLELISM
    PARALLELISM = args.parallelism
    bed = Bed()
    startup = startup_costs()
    load = [os.getloadavg()[0]]
    print(
        f"engine {bed.engine}, registry {bed.registry}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load {load[0]:.2f}; {len(SHOP)} services in "
        f"{len(STAGES)} stages, parallelism {PARALLELISM}; "
        + ", ".join(f"{k}: {v:.2f} s" for k, v in startup.items())
    )
    rounds: list[RoundResult] = []
    prof: dict[str, Any] = {}
    with workdir("dp-bench-docker-", args.keep) as root:
        base = f"dp-bench-base:{secrets.token_hex(4)}"
        bed.build_base(root / "base", base)
        try:
            for i in range(1, args.rounds + 1):
                r = measure_round(bed, root, i, base)
                rounds.append(r)
                print(
                    f"round {i}: deploy-pipeline {r.first.wall:.2f} s, then {r.second.wall:.2f} s;"
                    f" compose {r.compose_first.up:.2f} s, then {r.compose_second.up:.2f} s; "
                    f"build --parallel + up {r.compose_parallel.up:.2f} s",
                    flush=True,
                )
            if args.profile:
                prof = profile(bed, root, base)
        finally:
            bed.purge_images(f"{BASE_LABEL}={base}")
            bed.watch.close()
    load.append(os.getloadavg()[0])
    s = summary(rounds)
    print()
    table(rounds, s)
    typical = sorted(rounds, key=lambda r: r.first.wall)[(len(rounds) - 1) // 2]
    print()
    show_timeline(f"first deploy, round {typical.index} (the median)", typical.first)
    show_timeline(f"second deploy, round {typical.index}", typical.second)
    if prof:
        print()
        show_profile(prof)
    failures = [run.error for r in rounds for run in (r.first, r.second, r.delete) if run.error]
    if failures:
        print("\ndeploy-pipeline failures:\n  " + "\n  ".join(failures))
    checks = verdicts(s)
    print()
    for text, met in checks:
        print(f"{'met   ' if met else 'MISSED'} {text}")
    if args.json:
        report = {
            "engine": bed.engine,
            "cpus": os.cpu_count(),
            "load_1min": load,
            "startup_s": startup,
            "parallelism": PARALLELISM,
            "services": [asdict(svc) for svc in SHOP],
            "rounds": [round_json(r) for r in rounds],
            "summary": s,
            "profile": prof,
            "targets": [{"target": t, "met": m} for t, m in checks],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if all(m for _, m in checks) else 1


def round_json(r: RoundResult) -> dict[str, Any]:
    def run(d: DeployRun, lines: bool = True) -> dict[str, Any]:
        out = {k: v for k, v in asdict(d).items() if k != "events"}
        return {**out, "timeline": timeline(d)} if lines else out

    return {
        "index": r.index,
        "order": r.order,
        "first": run(r.first),
        "second": run(r.second),
        "delete": run(r.delete, lines=False),
        "compose_first": asdict(r.compose_first),
        "compose_second": asdict(r.compose_second),
        "compose_parallel": asdict(r.compose_parallel),
        "cold": r.cold,
        "foreign_events": r.foreign,
        "ratios": r.ratios(),
    }


if __name__ == "__main__":
    sys.exit(main())
