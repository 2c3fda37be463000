"""Benchmark of the test phase (DESIGN.md §9) on the Docker target: does a deploy with `test:` on
every built service cost no more than the tests on its critical path?

Every round deploys two fresh copies of bench/docker.py's generated 10-service shop through the
real CLI on the local engine and registry, from a cold cache: one as it is, one with a `test:` on
each of its 7 built services (a busybox `sleep` of a known time, then a real check of the image's
files). From each run's `--events jsonl` it draws a timeline (one row per service: build, test and
deploy bars on a time axis) and compares, round by round, the makespan with tests to the makespan
without, and the time the tests added (and, within the run with tests, held its deploys back) to
the bound: the longest test of each stage that has tests, stage after stage. See bench/README.md
("Test phase") for the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from common import workdir


def _shop_bench() -> ModuleType:
    """bench/docker.py (the shop, the engine, the CLI runs), loaded as `docker_bench`: imported
    as `docker` it would stand in for the Docker SDK."""
    spec = importlib.util.spec_from_file_location(
        "docker_bench", Path(__file__).with_name("docker.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up while defined)
    spec.loader.exec_module(module)
    return module


shop = _shop_bench()
BB = shop.BB
BUILT = [svc for svc in shop.SHOP if svc.built]
FINAL = frozenset({"succeeded", "reused", "failed", "cancelled"})
BARS = (("build", "b"), ("test", "t"), ("deploy", "d"))
WIDTH = 72  # characters of a timeline's time axis


def timed_check(name: str, seconds: float) -> list[str]:
    """A test that takes a known time, then checks the files the image serves."""
    script = (
        f'{BB} sleep {seconds:g} && [ "$({BB} cat /app/healthz)" = ok ] && '
        f"{BB} grep -q '<h1>{name}</h1>' /app/index.html && echo '{name}: image checked'"
    )
    return [BB, "sh", "-c", script]


def add_tests(rnd: Any, seconds: float) -> None:
    """Give every built service of a generated shop its `test:`."""
    doc = yaml.safe_load(rnd.config.read_text())
    for svc in BUILT:
        doc["services"][svc.name]["test"] = timed_check(svc.name, seconds)
    rnd.config.write_text(yaml.safe_dump(doc, sort_keys=False))


# --- one round: the shop without tests and with them, each from a cold cache ------------------


@dataclass
class Pair:
    index: int
    order: list[str]
    plain: Any  # docker_bench.DeployRun, without tests
    tested: Any  # with a test on every built service
    cold: dict[str, int]  # the round's images on the engine before each deploy (0: cold)
    foreign: int  # container events of someone else's deploy-pipeline runs meanwhile

    @property
    def ok(self) -> bool:
        return bool(self.plain.ok and self.tested.ok)


def deploy_and_remove(bed: Any, rnd: Any) -> Any:
    """A first deploy of the shop through the CLI, then everything of it removed again."""
    try:
        run = shop.deploy_pipeline(rnd, "deploy")
        if not shop.deploy_pipeline(rnd, "delete").ok:
            bed.remove_leftovers(rnd)
        bed.purge_images(f"{shop.ROUND_LABEL}={rnd.nonce}")
        bed.delete_from_registry(rnd.registry_repo)
    except BaseException:
        shop.cleanup(bed, rnd)
        raise
    return run


def measure_pair(bed: Any, root: Path, index: int, base: str, seconds: float) -> Pair:
    """Both deploys of one round, the order alternating from round to round."""
    plain = shop.make_round(root / "plain", index, bed.registry, base)
    tested = shop.make_round(root / "tested", index, bed.registry, base)
    add_tests(tested, seconds)
    rounds = {"without tests": plain, "with tests": tested}
    order = list(rounds) if index % 2 else list(reversed(rounds))
    bed.watch.mine.update({plain.environment, tested.environment})
    seen = bed.watch.foreign
    runs: dict[str, Any] = {}
    cold: dict[str, int] = {}
    for name in order:
        cold[name] = bed.round_images(rounds[name].nonce)
        runs[name] = deploy_and_remove(bed, rounds[name])
    foreign = bed.watch.foreign - seen
    if foreign:
        print(f"round {index}: DISTURBED: {foreign} events of other deploy-pipeline containers")
    return Pair(index, order, runs["without tests"], runs["with tests"], cold, foreign)


def lone_test(bed: Any, base: str, seconds: float) -> float:
    """Median of 3: one container of the prebuilt image running only the test's sleep, created,
    waited for and removed through the SDK with nothing else of ours on the engine (what a test
    step costs apart from its check, its push and the company of other steps)."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        container = bed.client.containers.run(base, [BB, "sleep", f"{seconds:g}"], detach=True)
        container.wait()
        container.remove()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- reading a run's events -------------------------------------------------------------------


def intervals(run: Any) -> dict[str, dict[str, tuple[float, float]]]:
    """Each service's steps as (start, end) seconds from the run's start, by phase."""
    started: dict[tuple[str, str], float] = {}
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for e in run.events:
        if e["phase"] == "run" or not e["service"]:
            continue
        key = (e["service"], e["phase"])
        if e["status"] == "started":
            started[key] = e["ts"]
        elif e["status"] in FINAL and key in started:
            out.setdefault(e["service"], {})[e["phase"]] = (started[key], e["ts"])
    return out


def figures(pair: Pair) -> dict[str, Any]:
    """The round's figures: makespans, the tests' durations, the bound and the overlaps."""
    steps = intervals(pair.tested)
    tests = {n: b - a for n, phases in steps.items() for p, (a, b) in phases.items() if p == "test"}
    by_stage: dict[str, float] = {}
    for svc in BUILT:
        by_stage[svc.stage] = max(by_stage.get(svc.stage, 0.0), tests.get(svc.name, 0.0))
    bound = sum(by_stage.values())  # the longest test of each stage, one stage after another
    plain, tested = pair.plain.run, pair.tested.run
    windows = [(a, b) for phases in steps.values() for p, (a, b) in phases.items() if p == "test"]
    builds = [
        (n, a, b) for n, phases in steps.items() for p, (a, b) in phases.items() if p == "build"
    ]
    beside_builds = sum(  # test seconds spent while another service's build was still running
        overlap((a, b), [(x, y) for n, x, y in builds if n != name])
        for name, phases in steps.items()
        for p, (a, b) in phases.items()
        if p == "test"
    )
    holds = held(steps)
    longest = max(tests.values(), default=0.0)
    return {
        "without_s": plain,
        "with_s": tested,
        "added_s": tested - plain,
        "with_over_without": tested / plain,
        "tests_s": {n: round(t, 3) for n, t in tests.items()},
        "longest_test_by_stage_s": {k: round(v, 3) for k, v in by_stage.items()},
        "longest_test_s": longest,
        "added_over_longest": (tested - plain) / longest if longest else 0.0,
        "held_by_stage_s": {k: round(v, 3) for k, v in holds.items()},
        "held_s": sum(holds.values()),
        "held_over_longest": sum(holds.values()) / longest if longest else 0.0,
        "held_over_bound": sum(holds.values()) / bound if bound else 0.0,
        "bound_s": bound,
        "bound_over_without": (plain + bound) / plain,
        "added_over_bound": (tested - plain) / bound if bound else 0.0,
        "tests_serial_s": sum(tests.values()),
        "tests_at_once": peak(windows),
        "test_beside_builds_s": beside_builds,
        "builds_done_s": {
            "without": last_end(intervals(pair.plain), "build"),
            "with": last_end(steps, "build"),
            "with_tested": last_end(steps, "test"),
        },
    }


def held(steps: dict[str, dict[str, tuple[float, float]]]) -> dict[str, float]:
    """By stage with tests: the longest a deploy of it waited for its test, from when it could
    have started without one (the earlier stages' deploys all ended, its build done) to the end
    of its test. Read from one run, so free of the spread between two runs."""
    out: dict[str, float] = {}
    before = 0.0  # when the earlier stages' last deploy ended
    for stage in shop.STAGES:
        members = [svc.name for svc in shop.SHOP if svc.stage == stage]
        for name in members:
            own = steps.get(name, {})
            if "build" in own and "test" in own:
                wait = own["test"][1] - max(before, own["build"][1])
                out[stage] = max(out.get(stage, 0.0), wait, 0.0)
        ends = [steps[n]["deploy"][1] for n in members if "deploy" in steps.get(n, {})]
        before = max([before, *ends])
    return out


def overlap(window: tuple[float, float], others: list[tuple[float, float]]) -> float:
    """How long `window` overlaps the union of `others`."""
    a, b = window
    cuts = sorted((max(a, x), min(b, y)) for x, y in others if min(b, y) > max(a, x))
    total, reach = 0.0, a
    for x, y in cuts:
        if y > reach:
            total += y - max(x, reach)
            reach = y
    return total


def peak(windows: list[tuple[float, float]]) -> int:
    """The most windows open at one time."""
    edges = sorted([(a, 1) for a, _ in windows] + [(b, -1) for _, b in windows])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def last_end(steps: dict[str, dict[str, tuple[float, float]]], phase: str) -> float:
    return max((p[phase][1] for p in steps.values() if phase in p), default=0.0)


# --- output -----------------------------------------------------------------------------------


def timeline(title: str, run: Any) -> list[str]:
    """One row per service: b (build: in the run with tests, without its push), t (test, then
    the push), d (deploy) on a time axis; and how many tests ran at once, per column."""
    steps = intervals(run)
    end = max(run.run, last_end(steps, "deploy"))
    per = end / WIDTH
    lines = [
        f"{title}: {run.run:.2f} s (run), {per:.3f} s per column; b build (with its push when "
        "untested), t test (then its push), d deploy; tests: how many ran at once"
    ]
    axis = [" "] * (WIDTH + 6)
    for second in range(0, int(end) + 1, 2):
        label = f"{second}s"
        at = int(second / per)
        axis[at : at + len(label)] = label
    lines.append(f"{'':<9}{''.join(axis).rstrip()}")
    tests = [0] * WIDTH
    for svc in shop.SHOP:
        row = [" "] * WIDTH
        for phase, mark in BARS:
            if phase not in steps.get(svc.name, {}):
                continue
            a, b = steps[svc.name][phase]
            first, last = int(a / per), max(int(a / per) + 1, int(b / per))
            for col in range(first, min(last, WIDTH)):
                row[col] = mark
                if phase == "test":
                    tests[col] += 1
        lines.append(f"{svc.name:<9}{''.join(row).rstrip()}")
    if any(tests):
        lines.append(f"{'tests':<9}{''.join(str(n) if n else ' ' for n in tests).rstrip()}")
    return lines


def summary(pairs: Sequence[Pair]) -> dict[str, Any]:
    """Medians over the rounds of each figure and of each round's ratios (paired, same load)."""
    each = [figures(p) for p in pairs if p.ok] or [figures(pairs[0])]
    keys = (
        "without_s",
        "with_s",
        "added_s",
        "with_over_without",
        "bound_s",
        "bound_over_without",
        "added_over_bound",
        "longest_test_s",
        "added_over_longest",
        "held_s",
        "held_over_longest",
        "held_over_bound",
        "tests_serial_s",
        "test_beside_builds_s",
    )
    out: dict[str, Any] = {k: statistics.median(f[k] for f in each) for k in keys}
    out["tests_at_once"] = [f["tests_at_once"] for f in each]
    out["ok"] = all(p.ok for p in pairs)
    out["failed_rounds"] = [p.index for p in pairs if not p.ok]
    out["tested_every_service"] = all(len(f["tests_s"]) == len(BUILT) for f in each)
    out["cold"] = all(not any(p.cold.values()) for p in pairs)
    out["disturbed_rounds"] = [p.index for p in pairs if p.foreign]
    return out


COLUMNS = (  # header (its width is the column's), key of figures(), format
    ("round", "", ""),
    ("without", "without_s", ".2f"),
    (" with", "with_s", ".2f"),
    ("added", "added_s", ".2f"),
    ("longest test", "longest_test_s", ".2f"),
    ("bound", "bound_s", ".2f"),
    ("with ÷ without", "with_over_without", ".2f"),
    ("(without + bound) ÷ without", "bound_over_without", ".2f"),
    ("added ÷ longest", "added_over_longest", ".2f"),
    ("added ÷ bound", "added_over_bound", ".2f"),
    ("held", "held_s", ".2f"),
    ("held ÷ longest", "held_over_longest", ".2f"),
    ("tests at once", "tests_at_once", ""),
)


def row(label: str, f: dict[str, Any]) -> str:
    cells = [label]
    for _, key, spec in COLUMNS[1:]:
        cells.append(format(f[key], spec) if key in f else "")
    return "  ".join(c.rjust(len(h)) for c, (h, _, _) in zip(cells, COLUMNS, strict=True)).rstrip()


def table(pairs: Sequence[Pair], s: dict[str, Any]) -> None:
    print(
        "seconds of run (the `run` event: the CLI's start-up and exit left out); longest test: "
        "the longest test step; bound: the longest test step of each stage, summed over the "
        "stages; held: in the run with tests, how long the tests held back deploys, the "
        "longest hold of each stage summed; med: the median over the rounds where both "
        "deploys succeeded"
    )
    print("  ".join(head for head, _, _ in COLUMNS))
    for p in pairs:
        print(row(str(p.index), figures(p)) if p.ok else f"{p.index:>5}  failed (left out)")
    print(row("med", {k: v for k, v in s.items() if k != "tests_at_once"}))
    print(
        f"median: the test steps take {s['tests_serial_s']:.2f} s one after another, of which "
        f"{s['test_beside_builds_s']:.2f} s ran beside another service's build"
    )


def verdicts(s: dict[str, Any]) -> list[tuple[str, bool]]:
    return [
        ("every deploy succeeded, every round", s["ok"]),
        ("every built service's test ran, every round", s["tested_every_service"]),
        (
            f"with tests ≤ without + the longest test of each stage "
            f"({s['with_over_without']:.2f} × ≤ {s['bound_over_without']:.2f} ×)",
            s["with_over_without"] <= s["bound_over_without"],
        ),
        (
            f"within the run, the tests held the deploys back ≤ the longest test of each stage "
            f"({s['held_s']:.2f} s ≤ {s['bound_s']:.2f} s; {s['held_over_longest']:.2f} × the "
            "longest test step)",
            s["held_s"] <= s["bound_s"],
        ),
        (
            f"the tests overlap (at most {max(s['tests_at_once'])} at once)",
            max(s["tests_at_once"]) > 1,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="independent rounds (median kept)")
    parser.add_argument(
        "--test-seconds", type=float, default=1.0, help="how long each test sleeps (1)"
    )
    parser.add_argument(
        "--parallelism", type=int, default=7, help="deploy-pipeline's defaults.parallelism (7)"
    )
    parser.add_argument("--json", type=Path, help="also write every figure here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = parser.parse_args(argv)
    shop.PARALLELISM = args.parallelism
    bed = shop.Bed()
    load = [os.getloadavg()[0]]
    print(
        f"engine {bed.engine}, registry {bed.registry}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load {load[0]:.2f}; {len(shop.SHOP)} services in "
        f"{len(shop.STAGES)} stages, {len(BUILT)} built and tested, each test "
        f"{args.test_seconds:g} s of sleep and a check; parallelism {args.parallelism}"
    )
    pairs: list[Pair] = []
    with workdir("dp-bench-test-phase-", args.keep) as root:
        base = f"dp-bench-base:{secrets.token_hex(4)}"
        bed.build_base(root / "base", base)
        try:
            for i in range(1, args.rounds + 1):
                p = measure_pair(bed, root, i, base, args.test_seconds)
                pairs.append(p)
                f = figures(p)
                print(
                    f"round {i} ({', then '.join(p.order)}): without tests "
                    f"{f['without_s']:.2f} s, with tests {f['with_s']:.2f} s "
                    f"({f['added_s']:+.2f} s; bound +{f['bound_s']:.2f} s)"
                    + ("" if p.ok else "; failed, left out"),
                    flush=True,
                )
            alone = lone_test(bed, base, args.test_seconds)
        finally:
            with suppress(Exception):
                bed.purge_images(f"{shop.BASE_LABEL}={base}")
            bed.watch.close()
    load.append(os.getloadavg()[0])
    s = summary(pairs)
    s["lone_test_s"] = alone
    print()
    table(pairs, s)
    print(
        f"a lone test container ({args.test_seconds:g} s of sleep), nothing else of ours on the "
        f"engine: {alone:.2f} s (create, start, wait, remove; median of 3)"
    )
    good = [p for p in pairs if p.ok] or pairs
    typical = sorted(good, key=lambda p: figures(p)["with_over_without"])[(len(good) - 1) // 2]
    for title, run in (
        (f"with tests, round {typical.index} (the median ratio)", typical.tested),
        (f"without tests, round {typical.index}", typical.plain),
    ):
        print()
        print("\n".join(timeline(title, run)))
    failures = [r.error for p in pairs for r in (p.plain, p.tested) if r.error]
    if failures:
        print("\ndeploy-pipeline failures:\n  " + "\n  ".join(failures))
    if s["disturbed_rounds"]:
        print(f"\nwarning: rounds {s['disturbed_rounds']} were disturbed by another engine user")
    if not s["cold"]:
        print(
            "\nwarning: a deploy did not start from a cold cache: " + str([p.cold for p in pairs])
        )
    checks = verdicts(s)
    print()
    for text, met in checks:
        print(f"{'met   ' if met else 'MISSED'} {text}")
    if args.json:
        report = {
            "engine": bed.engine,
            "cpus": os.cpu_count(),
            "load_1min": load,
            "parallelism": args.parallelism,
            "test_seconds": args.test_seconds,
            "rounds": [
                {
                    "index": p.index,
                    "order": p.order,
                    "cold": p.cold,
                    "foreign_events": p.foreign,
                    **figures(p),
                    "timeline_with": timeline("with tests", p.tested),
                    "timeline_without": timeline("without tests", p.plain),
                }
                for p in pairs
            ],
            "summary": s,
            "targets": [{"target": t, "met": m} for t, m in checks],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if all(m for _, m in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
