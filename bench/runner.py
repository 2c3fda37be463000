"""Benchmark of the stage runner on simulated environments of 100 to 10,000 services.

Reports, with build-ahead on and off, the makespan against a lower bound for the same parallelism,
the runner's CPU time per step and its peak memory (see bench/README.md for the bound).
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import random
import resource
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy_pipeline.backends import Backend, create_backend
from deploy_pipeline.backends.base import StepContext
from deploy_pipeline.model import (
    BuildSpec,
    Defaults,
    Environment,
    Event,
    Phase,
    Pipeline,
    Service,
    ServiceType,
    Target,
)
from deploy_pipeline.plan import plan_runs
from deploy_pipeline.runner import Run

PARALLELISM = 7
TYPE_WEIGHTS: dict[ServiceType, int] = {
    "database": 10,
    "container": 20,
    "job": 20,
    "application": 50,
}
BUILD_MS, DEPLOY_MS = (2.0, 20.0), (1.0, 10.0)
ENV, TARGET = "bench", "sim"


# --- the workload -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Svc:
    name: str
    type: ServiceType
    build: float | None  # seconds; None for a prebuilt service (no build step)
    deploy: float  # seconds


Workload = list[list[Svc]]  # services by stage, stages in run order (none empty)


def make_workload(size: int, seed: int) -> Workload:
    """`size` services over 4–10 stages; stage count, assignment, types and durations seeded."""
    rng = random.Random(f"{seed}:{size}")
    stages: Workload = [[] for _ in range(rng.randint(4, 10))]
    types, weights = zip(*TYPE_WEIGHTS.items(), strict=True)
    for i in range(size):
        kind: ServiceType = rng.choices(types, weights)[0]
        build = rng.uniform(*BUILD_MS) / 1000 if kind in {"job", "application"} else None
        deploy = rng.uniform(*DEPLOY_MS) / 1000
        stages[rng.randrange(len(stages))].append(Svc(f"svc-{i:05d}", kind, build, deploy))
    return [members for members in stages if members]


def to_service(svc: Svc, stage: str) -> Service:
    if svc.build is None:
        return Service(svc.name, svc.type, stage, image=f"registry.local/{svc.name}:1")
    return Service(svc.name, svc.type, stage, build=BuildSpec(f"./{svc.name}"))


def to_pipeline(work: Workload, build_ahead: bool, timed: bool = True) -> Pipeline:
    """The model objects for a workload; `timed=False` gives every step zero duration."""
    stages = tuple(f"stage-{k}" for k in range(len(work)))
    services = {s.name: to_service(s, stages[k]) for k, members in enumerate(work) for s in members}
    durations = {s.name: step_durations(s) for members in work for s in members} if timed else {}
    target = Target(TARGET, "simulated", durations=durations)
    defaults = Defaults(parallelism=PARALLELISM, build_ahead=build_ahead, timeout=600.0)
    env = Environment(ENV, (TARGET,))
    return Pipeline("bench", stages, services, {TARGET: target}, {ENV: env}, defaults)


def step_durations(svc: Svc) -> dict[str, float]:
    return {"deploy": svc.deploy} | ({"build": svc.build} if svc.build is not None else {})


def step_count(work: Workload) -> int:
    return sum(1 + (s.build is not None) for members in work for s in members)


# --- the lower bounds (bench/README.md explains each term) ------------------------------------


def pcmax_bound(jobs: Sequence[float], p: int) -> float:
    """Lower bound on the time p identical slots need for `jobs`: P||Cmax."""
    if not jobs:
        return 0.0
    top = sorted(jobs, reverse=True)[: p + 1]
    pair = top[p - 1] + top[p] if len(top) > p else 0.0
    return max(sum(jobs) / p, top[0], pair)


def release_bound(members: Sequence[Svc], start: float, p: int) -> float:
    """Stage end ≥ max(t, start) + work of the deploys whose build alone takes ≥ t (any t)."""
    best, work, longest = 0.0, 0.0, 0.0
    for svc in sorted(members, key=lambda s: s.build or 0.0, reverse=True):
        work, longest = work + svc.deploy, max(longest, svc.deploy)
        best = max(best, max(svc.build or 0.0, start) + max(work / p, longest))
    return best


def bound_ahead(work: Workload, p: int) -> float:
    """Build-ahead on: a lower bound on the end of every stage, stage by stage."""
    chain = [pcmax_bound([s.deploy for s in members], p) for members in work]
    built: list[float] = []
    tails: list[float] = []  # per earlier stage j: min deploy of a built service + chain after j
    end = 0.0
    for k, members in enumerate(work):
        tails = [t + chain[k] for t in tails]
        builds = [s.build for s in members if s.build is not None]
        if builds:
            built += builds
            tails.append(min(s.deploy for s in members if s.build is not None))
        build_term = pcmax_bound(built, p) + min(tails) if tails else 0.0
        end = max(end + chain[k], release_bound(members, end, p), build_term)
    return end


def bound_strict(work: Workload, p: int) -> float:
    """Build-ahead off: each stage builds all its images, then deploys, after the previous."""
    return sum(
        pcmax_bound([s.build for s in members if s.build is not None], p)
        + pcmax_bound([s.deploy for s in members], p)
        for members in work
    )


def bound_unstaged(work: Workload, p: int) -> float:
    """The ideal executor (no stages): the build-work and release terms over all services."""
    flat = [s for members in work for s in members]
    builds = [s.build for s in flat if s.build is not None]
    after = min((s.deploy for s in flat if s.build is not None), default=0.0)
    return max(pcmax_bound(builds, p) + after, release_bound(flat, 0.0, p))


# --- the runner's policy with zero overhead ---------------------------------------------------


class ListSchedule:
    """Replays the runner's rules with no overhead: the makespan a perfect runner would reach.

    Builds wait for one of p build slots, lower stage first (with build-ahead off, only the
    active stage's); deploys of the active stage wait for one of p deploy slots and their build
    (with build-ahead off, all of the stage's builds); a stage is active once the previous one's
    deploys are done.
    """

    def __init__(self, work: Workload, p: int, build_ahead: bool) -> None:
        self.work, self.p, self.ahead = work, p, build_ahead
        self.now, self.seq, self.active = 0.0, 0, -1
        self.events: list[tuple[float, int, str, int, int]] = []
        self.builds: list[tuple[int, int]] = []
        self.ready: list[int] = []
        self.busy = {"build": 0, "deploy": 0}
        self.built = [{i for i, s in enumerate(m) if s.build is None} for m in work]
        self.deploys_left = [len(m) for m in work]

    def makespan(self) -> float:
        if self.ahead:
            self.builds = [(k, i) for k, m in enumerate(self.work) for i in self.unbuilt(k)]
        self.enter(0)
        while self.events:
            self.now, _, phase, k, i = heapq.heappop(self.events)
            self.busy[phase] -= 1
            self.finished(phase, k, i)
            self.dispatch()
        return self.now

    def unbuilt(self, k: int) -> list[int]:
        return [i for i in range(len(self.work[k])) if i not in self.built[k]]

    def enter(self, k: int) -> None:
        self.active = k
        if k == len(self.work):
            return
        if not self.ahead:
            for i in self.unbuilt(k):
                heapq.heappush(self.builds, (k, i))
        if self.ahead or len(self.built[k]) == len(self.work[k]):
            self.ready = sorted(self.built[k])
        self.dispatch()

    def finished(self, phase: str, k: int, i: int) -> None:
        if phase == "build":
            self.built[k].add(i)
            if k == self.active and self.ahead:
                heapq.heappush(self.ready, i)
            elif k == self.active and len(self.built[k]) == len(self.work[k]):
                self.ready = list(range(len(self.work[k])))
            return
        self.deploys_left[k] -= 1
        if not self.deploys_left[k]:
            self.enter(k + 1)

    def dispatch(self) -> None:
        while self.builds and self.busy["build"] < self.p:
            k, i = heapq.heappop(self.builds)
            self.start("build", k, i, self.work[k][i].build or 0.0)
        while self.ready and self.busy["deploy"] < self.p:
            i = heapq.heappop(self.ready)
            self.start("deploy", self.active, i, self.work[self.active][i].deploy)

    def start(self, phase: str, k: int, i: int, seconds: float) -> None:
        self.busy[phase] += 1
        self.seq += 1
        heapq.heappush(self.events, (self.now + seconds, self.seq, phase, k, i))


# --- the measurements -------------------------------------------------------------------------


@dataclass
class Measure:
    wall: float  # seconds, makespan
    cpu: float  # seconds of process CPU (every thread) during the run
    steps: int
    ok: bool


class Tally:
    """The cheapest sink: counts events and failures."""

    def __init__(self) -> None:
        self.events = 0
        self.failed = 0

    def __call__(self, event: Event) -> None:
        self.events += 1
        self.failed += event.status == "failed"


def timed(body: Callable[[], bool], steps: int) -> Measure:
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    ok = body()
    return Measure(time.perf_counter() - wall0, time.process_time() - cpu0, steps, ok)


def run_runner(pipeline: Pipeline) -> bool:
    run_plan = plan_runs(pipeline, pipeline.environments, [ENV], "deploy")
    backends = {TARGET: create_backend(pipeline.targets[TARGET])}
    sink = Tally()
    result = Run(run_plan, backends, sink).execute()
    return result.status == "succeeded" and not sink.failed


def runner_peak(work: Workload, build_ahead: bool) -> int:
    """tracemalloc peak of a run of the same model with zero durations (kept out of timing)."""
    pipeline = to_pipeline(work, build_ahead, timed=False)
    gc.collect()
    tracemalloc.start()
    try:
        run_runner(pipeline)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_ideal(pipeline: Pipeline, p: int) -> bool:
    """Peer executor: the same backend steps in two pools of p, each deploy after its build."""
    backend = create_backend(pipeline.targets[TARGET])
    services = list(pipeline.services.values())
    left, done, lock = [len(services)], threading.Event(), threading.Lock()

    def deploy(svc: Service) -> None:
        call(backend, svc, "deploy")
        with lock:
            left[0] -= 1
            if not left[0]:
                done.set()

    with ThreadPoolExecutor(p) as builds, ThreadPoolExecutor(p) as deploys:

        def build(svc: Service) -> None:
            call(backend, svc, "build")
            deploys.submit(deploy, svc)

        for svc in services:
            if svc.needs_build:
                builds.submit(build, svc)
            else:
                deploys.submit(deploy, svc)
        return done.wait(timeout=600)


def call(backend: Backend, svc: Service, phase: Phase) -> None:
    ctx = StepContext(ENV, backend.target, svc, phase, time.monotonic() + 600, threading.Event())
    getattr(backend, phase)(ctx)


def max_rss_mib() -> float:
    """The process's resident-set high-water mark so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- one size ---------------------------------------------------------------------------------

MODES: tuple[bool | None, ...] = (True, False, None)  # build-ahead on, off; None: ideal executor


@dataclass
class Row:
    services: int
    stages: int
    steps: int
    executor: str  # "runner" or "ideal"
    build_ahead: bool | None  # None for the ideal executor, which has no stages
    runs: int
    makespans: list[float]  # seconds, every run
    makespan: float  # seconds, median of the runs
    bound: float  # seconds, lower bound on the makespan for the same parallelism
    ratio: float  # makespan / bound
    model: float | None  # seconds, the runner's policy replayed with zero overhead
    ratio_model: float | None  # makespan / model: what sleeping, threads and the runner cost
    cpu_us_per_step: float  # median of the runs
    tracemalloc_peak_mib: float | None
    max_rss_mib: float  # process high-water mark so far
    ok: bool

    @property
    def mode(self) -> str:
        return mode_name(self.build_ahead)


def mode_name(mode: bool | None) -> str:
    return "ideal" if mode is None else f"ahead {'on' if mode else 'off'}"


def measure(work: Workload, mode: bool | None) -> Measure:
    pipeline = to_pipeline(work, mode is not False)
    if mode is None:
        return timed(lambda: run_ideal(pipeline, PARALLELISM), step_count(work))
    return timed(lambda: run_runner(pipeline), step_count(work))


def bound_for(work: Workload, mode: bool | None) -> float:
    if mode is None:
        return bound_unstaged(work, PARALLELISM)
    return bound_ahead(work, PARALLELISM) if mode else bound_strict(work, PARALLELISM)


def summarize(work: Workload, mode: bool | None, runs: list[Measure]) -> Row:
    wall = statistics.median(m.wall for m in runs)
    bound = bound_for(work, mode)
    model = None if mode is None else ListSchedule(work, PARALLELISM, mode).makespan()
    if model is not None and bound > model + 1e-9:
        raise AssertionError(f"bound {bound} above a feasible schedule {model}: a bound bug")
    steps = step_count(work)
    return Row(
        services=sum(len(members) for members in work),
        stages=len(work),
        steps=steps,
        executor="ideal" if mode is None else "runner",
        build_ahead=mode,
        runs=len(runs),
        makespans=[m.wall for m in runs],
        makespan=wall,
        bound=bound,
        ratio=wall / bound,
        model=model,
        ratio_model=wall / model if model else None,
        cpu_us_per_step=statistics.median(m.cpu for m in runs) / steps * 1e6,
        tracemalloc_peak_mib=None if mode is None else runner_peak(work, mode) / 2**20,
        max_rss_mib=max_rss_mib(),
        ok=all(m.ok for m in runs),
    )


def measure_size(size: int, seed: int, repeat: int, ideal: bool) -> list[Row]:
    """Every mode `repeat` times, interleaved so that each sees the same machine load."""
    work = make_workload(size, seed)
    modes = [m for m in MODES if ideal or m is not None]
    runs: dict[bool | None, list[Measure]] = {m: [] for m in modes}
    for _ in range(repeat):
        for mode in modes:
            runs[mode].append(measure(work, mode))
    return [summarize(work, mode, runs[mode]) for mode in modes]


# --- output -----------------------------------------------------------------------------------

HEADER = (
    f"{'services':>8} {'stages':>6} {'steps':>6}  {'executor':<9} {'runs':>4} {'makespan s':>10} "
    f"{'model s':>8} {'bound s':>8} {'/bound':>6} {'/model':>6} {'CPU µs/step':>11} "
    f"{'peak MiB':>8} {'maxrss MiB':>10}  ok"
)


def table_line(r: Row) -> str:
    peak = "-" if r.tracemalloc_peak_mib is None else f"{r.tracemalloc_peak_mib:.1f}"
    model = "-" if r.model is None else f"{r.model:.3f}"
    vs_model = "-" if r.ratio_model is None else f"{r.ratio_model:.3f}"
    return (
        f"{r.services:>8} {r.stages:>6} {r.steps:>6}  {r.mode:<9} {r.runs:>4} {r.makespan:>10.3f} "
        f"{model:>8} {r.bound:>8.3f} {r.ratio:>6.3f} {vs_model:>6} {r.cpu_us_per_step:>11.0f} "
        f"{peak:>8} {r.max_rss_mib:>10.0f}  {'yes' if r.ok else 'NO'}"
    )


def verdicts(rows: Sequence[Row]) -> list[tuple[str, bool]]:
    """The issue's targets, for the sizes that were run."""
    out = []
    for r in (r for r in rows if r.executor == "runner"):
        where = f"{r.services} services, build-{r.mode}"
        out.append(
            (f"CPU ≤ 500 µs/step ({where}: {r.cpu_us_per_step:.0f})", r.cpu_us_per_step <= 500)
        )
        if r.services == 1000 and r.build_ahead:
            out.append((f"makespan ≤ 1.05 × bound ({where}: {r.ratio:.3f})", r.ratio <= 1.05))
        if r.services == 10_000:
            out.append((f"all steps succeed ({where})", r.ok))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated service counts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per mode for sizes up to 1,000 (median kept)"
    )
    parser.add_argument("--no-ideal", action="store_true", help="skip the unstaged peer executor")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"parallelism {PARALLELISM}, seed {args.seed}, Python {sys.version.split()[0]}")
    print(HEADER)
    rows: list[Row] = []
    for size in sizes:
        repeat = args.repeat if size <= 1000 else 1
        for r in measure_size(size, args.seed, repeat, not args.no_ideal):
            rows.append(r)
            print(table_line(r), flush=True)
    checks = verdicts(rows)
    for text, met in checks:
        print(f"{'met   ' if met else 'MISSED'} {text}")
    if args.json:
        report = {
            "seed": args.seed,
            "parallelism": PARALLELISM,
            "workload": {
                "type_weights": TYPE_WEIGHTS,
                "build_ms": BUILD_MS,
                "deploy_ms": DEPLOY_MS,
            },
            "rows": [asdict(r) for r in rows],
            "targets": [{"target": t, "met": m} for t, m in checks],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if all(m for _, m in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
