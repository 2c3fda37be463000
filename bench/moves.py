"""Benchmark of `rollback` and `promote` on the docker target, against a second deploy of
unchanged code in the same round, on bench/docker.py's ~10-service shop.

Every round generates the shop (bench/docker.py's workload) with two environments, staging and
production (production with its own settings), in a fresh registry repository, and runs through
the real CLI: deploy staging (it builds), deploy staging again with nothing changed (the
reference), change one built service (api) and deploy staging again (a new image), `rollback -e
staging` (back to the release before), deploy production twice (its own first deploy, then a second
one of unchanged code: a reference closer in time), and `promote --from staging -e production`
(staging's images, which now differ from production's in api only). Each run's events are read
to count its build and test steps (none may run in a rollback or a promotion) and `history` to
check what each move recorded. See bench/README.md for what is measured and the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from docker import (  # bench/docker.py (this folder comes first on sys.path), not the SDK
    BASE_LABEL,
    PROFILED,
    ROUND_LABEL,
    SHOP,
    STAGES,
    STEP_CALLS,
    Bed,
    DeployRun,
    Recorder,
    Round,
    deploy_pipeline,
    make_round,
    pipeline_doc,
    show_timeline,
    timeline,
)

from common import workdir

CHANGED = "api"  # the built service whose code the third staging deploy changes
MOVE_MAX = 1.2  # rollback and promote each ≤ 1.2 × the second deploy of unchanged code
STEPS = (
    "first",  # deploy staging: builds and pushes 7 images
    "second",  # deploy staging again, nothing changed: the reference
    "changed",  # deploy staging with api's code changed: one build, api replaced
    "rollback",  # rollback -e staging: api back to the image of the release before
    "prod_first",  # deploy production: its own settings, every image reused
    "prod_second",  # deploy production again, nothing changed: a second reference
    "promote",  # promote --from staging -e production: api to staging's (older) image
)


# --- the workload: bench/docker.py's shop, with a production of its own -----------------------


def production(rnd: Round) -> Round:
    """The same round seen from production (bench/docker.py's runs take `-e rnd.environment`)."""
    return replace(rnd, environment=f"{rnd.environment}-prod")


def moves_doc(rnd: Round) -> dict[str, Any]:
    """The pipeline of bench/docker.py with two environments on the same docker target; each
    sets its own env on every service, and production one more variable on the API (DESIGN §8)."""
    doc = pipeline_doc(rnd)
    staging, prod = rnd.environment, production(rnd).environment
    doc["environments"] = {
        staging: {"target": "local", "env": {"SHOP_TIER": "staging", "LOG_LEVEL": "debug"}},
        prod: {
            "target": "local",
            "env": {"SHOP_TIER": "production", "LOG_LEVEL": "info"},
            "services": {CHANGED: {"env": {"RATE_LIMIT": "100"}}},
        },
    }
    return doc


def change_code(rnd: Round) -> None:
    """A new page in api's build context: its next build is a new image."""
    page = rnd.folder / CHANGED / "app" / "index.html"
    page.write_text(page.read_text() + f"<p>changed {secrets.token_hex(4)}</p>\n")


# --- one round ---------------------------------------------------------------------------------


@dataclass
class Step:
    run: DeployRun
    builds: int  # services with a build step in the run's events (built or reused)
    tests: int  # services with a test step
    replaced: list[str]  # long-running services whose deploy step started new containers

    @classmethod
    def of(cls, run: DeployRun) -> Step:
        def services(phase: str) -> set[str]:
            return {e["service"] for e in run.events if e["phase"] == phase and e["service"]}

        replaced = {
            e["service"]
            for e in run.events
            if e["phase"] == "deploy"
            and e["status"] == "succeeded"
            and e["service"]
            and "running (" in (e.get("message") or "")
        }
        return cls(run, len(services("build")), len(services("test")), sorted(replaced))


@dataclass
class RoundResult:
    index: int
    steps: dict[str, Step]
    checks: list[str] = field(default_factory=list)  # what the releases do not show as expected
    foreign: int = 0

    def seconds(self, name: str) -> float:
        return self.steps[name].run.wall

    def ratios(self) -> dict[str, float]:
        second, prod_second = self.seconds("second"), self.seconds("prod_second")
        return {
            "rollback_over_second": self.seconds("rollback") / second,
            "promote_over_second": self.seconds("promote") / second,
            "rollback_over_prod_second": self.seconds("rollback") / prod_second,
            "promote_over_prod_second": self.seconds("promote") / prod_second,
        }

    @property
    def ok(self) -> bool:
        return len(self.steps) == len(STEPS) and all(s.run.ok for s in self.steps.values())


def history(rnd: Round) -> list[dict[str, Any]]:
    """`deploy-pipeline history -e … --format json`: the environment's releases, newest first."""
    env = {**os.environ, "DEPLOY_PIPELINE_STATE": str(rnd.folder / "state.db")}
    argv = [sys.executable, "-m", "deploy_pipeline", "history", "-f", str(rnd.config)]
    argv += ["-e", rnd.environment, "--format", "json"]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=rnd.folder, check=True)
    releases: list[dict[str, Any]] = json.loads(out.stdout)["releases"]
    return [r for r in releases if r.get("services")]  # (failed runs are listed without)


def image_of(release: dict[str, Any], service: str) -> str:
    return str(release["services"][service]["image"])


def check_moves(rnd: Round) -> list[str]:
    """What a rollback and a promotion should have recorded, and did not (empty: all did)."""
    staging, prod = history(rnd), history(production(rnd))
    wrong = []
    if [r["action"] for r in staging] != ["rollback", "deploy", "deploy", "deploy"]:
        return [f"staging's releases: {[r['action'] for r in staging]}"]
    rollback, changed, second = staging[0], staging[1], staging[2]
    if rollback["rolled_back_to"] != second["id"]:
        wrong.append(f"rollback went to {rollback['rolled_back_to']}, not {second['id']}")
    if image_of(changed, CHANGED) == image_of(second, CHANGED):
        wrong.append(f"the changed code did not give {CHANGED} a new image")
    if rollback["services"] != second["services"]:
        wrong.append("the rollback's images and settings are not those of the release before")
    if [r["action"] for r in prod] != ["promote", "deploy", "deploy"]:
        return [*wrong, f"production's releases: {[r['action'] for r in prod]}"]
    promote, deployed = prod[0], prod[1]
    if promote["source"] != rnd.environment:
        wrong.append(f"the promotion's source is {promote['source']}")
    for svc, entry in promote["services"].items():
        if entry["image"] != image_of(rollback, svc):
            wrong.append(f"promoted {svc} runs {entry['image']}, not staging's")
        if entry["env"] != deployed["services"][svc]["env"]:
            wrong.append(f"promoted {svc} lost production's settings: {entry['env']}")
    if image_of(deployed, CHANGED) == image_of(promote, CHANGED):
        wrong.append(f"production already ran staging's {CHANGED}: the promotion swapped nothing")
    return wrong


def measure_round(bed: Bed, root: Path, index: int, base: str) -> RoundResult:
    rnd = make_round(root, index, bed.registry, base)
    rnd.config.write_text(yaml.safe_dump(moves_doc(rnd), sort_keys=False))
    prod = production(rnd)
    bed.watch.mine.update({rnd.environment, prod.environment})
    seen = bed.watch.foreign
    calls = {
        "first": lambda: deploy_pipeline(rnd, "deploy"),
        "second": lambda: deploy_pipeline(rnd, "deploy"),
        "changed": lambda: (change_code(rnd), deploy_pipeline(rnd, "deploy"))[1],
        "rollback": lambda: deploy_pipeline(rnd, "rollback"),
        "prod_first": lambda: deploy_pipeline(prod, "deploy"),
        "prod_second": lambda: deploy_pipeline(prod, "deploy"),
        "promote": lambda: deploy_pipeline(prod, "promote", "--from", rnd.environment),
    }
    result = RoundResult(index, {})
    try:
        for name in STEPS:
            result.steps[name] = Step.of(calls[name]())
            if not result.steps[name].run.ok:
                break
        else:
            result.checks = check_moves(rnd)
    finally:
        result.foreign = bed.watch.foreign - seen
        clean(bed, rnd)
    if result.foreign:
        print(f"round {index}: DISTURBED: {result.foreign} events of other deploy-pipeline runs")
    for wrong in result.checks:
        print(f"round {index}: {wrong}")
    return result


def clean(bed: Bed, rnd: Round) -> None:
    """Both environments deleted (what `delete` leaves, removed), the round's images and tags."""
    for r in (rnd, production(rnd)):
        if not deploy_pipeline(r, "delete").ok:
            bed.remove_leftovers(r)
        left = bed.leftovers(r)
        if left:
            print(f"round {rnd.index}: left behind after clean-up: {left}")
    bed.purge_images(f"{ROUND_LABEL}={rnd.nonce}")
    bed.delete_from_registry(rnd.registry_repo)


# --- profile: engine calls of one more round's second deploy, rollback and promotion ---------

ENGINE_CALLS = ("start", "wait", "repo_digest", "local_image")  # besides bench/docker.py's


def profile(bed: Bed, root: Path, base: str) -> dict[str, Any]:
    """One more round through `deploy_pipeline.operation` (what the CLI runs), in process, with
    every engine call of the second deploy, the rollback and the promotion timed and filed under
    the step that made it (bench/docker.py's Recorder)."""
    from deploy_pipeline.backends import build, engine
    from deploy_pipeline.backends import docker as backend
    from deploy_pipeline.events import Collect
    from deploy_pipeline.operation import Operation, Request
    from deploy_pipeline.runner import Cancel

    rnd = make_round(root, 0, bed.registry, base)
    rnd.config.write_text(yaml.safe_dump(moves_doc(rnd), sort_keys=False))
    prod = production(rnd).environment
    bed.watch.mine.update({rnd.environment, prod})
    seen = bed.watch.foreign
    classes = {"engine": engine.Engine, "build": build.Builder, "docker": backend.DockerBackend}
    names = {**PROFILED, "engine": (*PROFILED["engine"], *ENGINE_CALLS)}
    runs = {
        "first": Request(rnd.config, [rnd.environment], "deploy"),
        "second": Request(rnd.config, [rnd.environment], "deploy"),
        "changed": Request(rnd.config, [rnd.environment], "deploy"),
        "rollback": Request(rnd.config, [rnd.environment], "rollback"),
        "prod_first": Request(rnd.config, [prod], "deploy"),
        "prod_second": Request(rnd.config, [prod], "deploy"),
        "promote": Request(rnd.config, [prod], "promote", source=rnd.environment),
    }
    out: dict[str, Any] = {}
    os.environ["DEPLOY_PIPELINE_STATE"] = str(rnd.folder / "state.db")
    try:
        for which, request in runs.items():
            if which == "changed":
                change_code(rnd)
            rec = Recorder()
            for key, methods in names.items():
                for name in methods:
                    rec.wrap(classes[key], name)
            for name in STEP_CALLS:
                rec.wrap(backend.DockerBackend, name)
            sink = Collect()
            t0 = time.perf_counter()
            try:
                with Operation(request) as operation:
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
            if result.status != "succeeded":
                break
    finally:
        os.environ.pop("DEPLOY_PIPELINE_STATE", None)
        clean(bed, rnd)
    out["foreign_events"] = bed.watch.foreign - seen
    return out


def show_profile(report: dict[str, Any]) -> None:
    if report["foreign_events"]:
        print(f"DISTURBED: {report['foreign_events']} events of other deploy-pipeline containers")
    for which in ("second", "rollback", "prod_second", "promote"):
        r = report.get(which)
        if r is None:
            continue
        print(f"profile, {which} in process: {r['wall_s']:.2f} s, {r['status']}")
        for message in r["failures"][:1]:
            print(f"  failure: {message}")
        for step, seconds in sorted(r["step_s"].items()):
            calls = sorted(r["steps"].get(step, {}).items(), key=lambda kv: -kv[1])
            inside = ", ".join(
                f"{c.removeprefix('DockerBackend.')} {t:.3f}"
                for c, t in calls
                if t >= 0.005 and c.removeprefix("DockerBackend.") not in STEP_CALLS
            )
            print(f"  {step:<16} {seconds:5.2f} s: {inside}")


# --- output -----------------------------------------------------------------------------------


def summary(rounds: Sequence[RoundResult]) -> dict[str, Any]:
    """Medians over the rounds: of each step's time, and of each round's ratios (paired)."""
    out: dict[str, Any] = {
        f"{name}_s": statistics.median(r.seconds(name) for r in rounds) for name in STEPS
    }
    for key in rounds[0].ratios():
        out[key] = statistics.median(r.ratios()[key] for r in rounds)
    for name in STEPS:
        out[f"{name}_builds"] = [r.steps[name].builds for r in rounds]
        out[f"{name}_tests"] = [r.steps[name].tests for r in rounds]
        out[f"{name}_replaced"] = [r.steps[name].replaced for r in rounds]
    out["wrong"] = [f"round {r.index}: {w}" for r in rounds for w in r.checks]
    out["disturbed_rounds"] = [r.index for r in rounds if r.foreign]
    out["ok"] = all(r.ok for r in rounds)
    return out


def verdicts(s: dict[str, Any]) -> list[tuple[str, bool]]:
    moves = ("rollback", "promote")
    return [
        ("every run succeeded, every round", s["ok"]),
        (
            "rollback and promote record what they should (history)"
            + (f": {s['wrong']}" if s["wrong"] else ""),
            not s["wrong"],
        ),
        *(
            (
                f"{m}: 0 builds, 0 tests (builds per round {s[f'{m}_builds']}, "
                f"tests {s[f'{m}_tests']})",
                not any(s[f"{m}_builds"]) and not any(s[f"{m}_tests"]),
            )
            for m in moves
        ),
        *(
            (
                f"{m} ≤ {MOVE_MAX} × the second deploy of unchanged code "
                f"({s[f'{m}_over_second']:.2f} ×)",
                s[f"{m}_over_second"] <= MOVE_MAX,
            )
            for m in moves
        ),
    ]


COLUMNS = (
    ("round", 5),
    ("1st", 5),
    ("2nd", 5),
    ("changed", 7),
    ("rollback", 8),
    ("prod 1st", 8),
    ("prod 2nd", 8),
    ("promote", 7),
    ("rb÷2nd", 6),
    ("pr÷2nd", 6),
    ("rb÷p2nd", 7),
    ("pr÷p2nd", 7),
)


def row(cells: Sequence[str]) -> str:
    return "  ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True))


def table(rounds: Sequence[RoundResult], s: dict[str, Any]) -> None:
    print("seconds of each CLI run; rb: rollback -e staging; pr: promote --from staging -e")
    print("production; 2nd: staging's second deploy (unchanged); p2nd: production's second deploy")
    print(row([name for name, _ in COLUMNS]))
    for r in rounds:
        q = r.ratios()
        times = [f"{r.seconds(name):.2f}" for name in STEPS]
        ratios = [f"{q[k]:.2f}" for k in q]
        print(row([f"{r.index}{'*' if r.foreign else ''}", *times, *ratios]))
    times = [f"{s[f'{name}_s']:.2f}" for name in STEPS]
    print(row(["med", *times, *(f"{s[k]:.2f}" for k in rounds[0].ratios())]))
    print(
        f"build steps per run (round {rounds[0].index}): "
        + ", ".join(f"{name} {rounds[0].steps[name].builds}" for name in STEPS)
        + "; test steps: "
        + ", ".join(f"{name} {rounds[0].steps[name].tests}" for name in STEPS)
    )
    print(
        f"containers replaced (round {rounds[0].index}): "
        + ", ".join(
            f"{name} {rounds[0].steps[name].replaced or '-'}" for name in STEPS if name != "first"
        )
    )
    if s["disturbed_rounds"]:
        print(
            f"warning: rounds {s['disturbed_rounds']} (*) were disturbed by another user of the"
            " engine (its deploy-pipeline containers came and went): run again on a quiet engine"
        )


def measure(
    bed: Bed,
    root: Path,
    base: str,
    wanted: int,
    retries: int,
    rounds: list[RoundResult],
    dropped: list[int],
) -> bool:
    """Rounds until `wanted` succeeded (kept in `rounds`). A round that fails is measured again,
    `retries` times in all at most (`dropped`), its failure printed: on a shared engine a test
    suite's clean-up removes every deploy-pipeline container it did not see before, this round's
    too (its run then fails with "No such container"), and the engine's events do not say whose
    clean-up it was."""
    i = 0
    while len(rounds) < wanted:
        i += 1
        r = measure_round(bed, root, i, base)
        if not r.ok:
            failed = [f"{n}: {s.run.error}" for n, s in r.steps.items() if not s.run.ok]
            print(f"round {i} failed: {failed}")
            if len(dropped) >= retries:
                return False
            dropped.append(i)
            print(f"round {i}: measured again (a failure every time is not the engine's doing)")
            continue
        rounds.append(r)
        print(
            f"round {i}: second deploy {r.seconds('second'):.2f} s, rollback "
            f"{r.seconds('rollback'):.2f} s, promote {r.seconds('promote'):.2f} s"
            + (" (disturbed)" if r.foreign else ""),
            flush=True,
        )
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="independent rounds (median kept)")
    parser.add_argument("--json", type=Path, help="also write every figure here as JSON")
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="a round that fails (another user's clean-up on a shared engine can remove its "
        "containers) is measured again, this many times in all at most (3)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also time every engine call of one more round, run in process",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = parser.parse_args(argv)
    bed = Bed()
    load = [os.getloadavg()[0]]
    print(
        f"engine {bed.engine}, registry {bed.registry}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load {load[0]:.2f}; {len(SHOP)} services in "
        f"{len(STAGES)} stages, 2 environments",
        flush=True,
    )
    rounds: list[RoundResult] = []
    prof: dict[str, Any] = {}
    dropped: list[int] = []  # rounds that failed and were measured again
    with workdir("dp-bench-moves-", args.keep) as root:
        base = f"dp-bench-base:{secrets.token_hex(4)}"
        bed.build_base(root / "base", base)
        try:
            if not measure(bed, root, base, args.rounds, args.retries, rounds, dropped):
                return 1
            if args.profile:
                prof = profile(bed, root, base)
        finally:
            bed.purge_images(f"{BASE_LABEL}={base}")
            bed.watch.close()
    load.append(os.getloadavg()[0])
    if dropped:
        print(f"rounds {dropped} failed and were measured again (their failures are above)")
    s = summary(rounds)
    print()
    table(rounds, s)
    typical = sorted(rounds, key=lambda r: r.seconds("rollback"))[(len(rounds) - 1) // 2]
    print()
    for name in ("second", "rollback", "prod_second", "promote"):
        show_timeline(f"{name}, round {typical.index}", typical.steps[name].run)
    if prof:
        print()
        show_profile(prof)
    checks = verdicts(s)
    print()
    for text, met in checks:
        print(f"{'met   ' if met else 'MISSED'} {text}")
    if args.json:
        report = {
            "engine": bed.engine,
            "cpus": os.cpu_count(),
            "load_1min": load,
            "dropped_rounds": dropped,
            "rounds": [round_json(r) for r in rounds],
            "summary": s,
            "profile": prof,
            "targets": [{"target": t, "met": m} for t, m in checks],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if all(m for _, m in checks) else 1


def round_json(r: RoundResult) -> dict[str, Any]:
    def step(s: Step) -> dict[str, Any]:
        run = {k: v for k, v in asdict(s.run).items() if k != "events"}
        return {
            **run,
            "builds": s.builds,
            "tests": s.tests,
            "replaced": s.replaced,
            "timeline": timeline(s.run),
            "events": s.run.events,
        }

    return {
        "index": r.index,
        "steps": {name: step(s) for name, s in r.steps.items()},
        "checks": r.checks,
        "foreign_events": r.foreign,
        "ratios": r.ratios(),
    }


if __name__ == "__main__":
    sys.exit(main())
