"""Benchmark of the kubernetes target on the kwok test bed (scripts/kube-testenv), against kubectl.

200 `container` services (a prebuilt image name: kwok never pulls) in 4 stages of 50, deployed
into a fresh namespace until every Deployment is Available, three ways in the same run:

- deploy-pipeline: `python -m deploy_pipeline deploy -f … -e <namespace>` through the real CLI,
  in a process of its own (it waits for every rollout itself);
- the hand-written script: a bash script that, stage by stage, runs `kubectl apply -f stageN.yaml`
  and then `kubectl rollout status` for each of the stage's services in turn;
- the floor: one `kubectl apply -f all.yaml` with no ordering, then `kubectl wait
  --for=condition=Available deployment --all`.

The YAML is made from `deploy_pipeline.backends.manifests.service_objects`, so all three apply the
same objects. kubectl is the one `scripts/kube-testenv build` compiles from the same Kubernetes
module. See bench/README.md for what is measured and the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common import timed, workdir
from deploy_pipeline.backends import manifests
from deploy_pipeline.config import load_config

ROOT = Path(__file__).resolve().parent.parent
TESTENV = ROOT / "scripts" / "kube-testenv"
SERVICES = 200
STAGES = ("data", "platform", "backend", "frontend")
IMAGE = "registry.example.com/bench/app:1.0"  # never pulled: kwok runs no containers
PORT = 8080
SCRIPT_MIN = 3.0  # deploy-pipeline ≥ 3 × faster than the hand-written script
BULK_MAX = 1.3  # deploy-pipeline ≤ 1.3 × the unordered bulk apply
TIMEOUT = 240  # seconds, for each measurement (and each kubectl wait)
MODES = ("deploy-pipeline", "script", "bulk")


# --- the test bed -----------------------------------------------------------------------------


def kubectl_path() -> Path:
    """`$BIN/kubectl` of scripts/kube-testenv: the cache folder is named after its versions."""
    text = TESTENV.read_text()
    v = {k: re.search(rf"^{k}_VERSION=(\S+)$", text, re.M) for k in ("K8S", "ETCD", "KWOK")}
    k8s, etcd, kwok = (m.group(1) if m else "?" for m in (v["K8S"], v["ETCD"], v["KWOK"]))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "deploy-pipeline" / "kube" / f"v{k8s}-etcd{etcd}-kwok{kwok}" / "bin" / "kubectl"


def kubectl(*args: str, check: bool = True, timeout: float = TIMEOUT) -> str:
    out = subprocess.run(
        [str(KUBECTL), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()[-800:]}")
    return out.stdout


KUBECTL = kubectl_path()


# --- the workload -----------------------------------------------------------------------------


@dataclass
class Workload:
    folder: Path
    namespace: str
    config: Path  # deploy-pipeline's file, with this namespace as its environment
    stage_files: list[Path]  # the script's YAML, one file per stage
    all_file: Path  # the bulk apply's YAML
    script: Path  # the hand-written script
    names: dict[str, list[str]]  # stage -> Deployment names


def pipeline_doc(namespace: str, parallelism: int | None) -> dict[str, Any]:
    services = {
        f"svc-{i:03d}": {
            "type": "container",
            "image": IMAGE,
            "port": PORT,
            "stage": STAGES[i * len(STAGES) // SERVICES],
        }
        for i in range(SERVICES)
    }
    doc: dict[str, Any] = {
        "version": 1,
        "stages": list(STAGES),
        "targets": {"k": {"kind": "kubernetes"}},
        "services": services,
        "environments": {namespace: {"target": "k"}},
    }
    doc["defaults"] = {"timeout": f"{TIMEOUT}s"}
    if parallelism is not None:
        doc["defaults"]["parallelism"] = parallelism
    return doc


def dump(path: Path, objects: Sequence[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))


def make_workload(root: Path, namespace: str, parallelism: int | None) -> Workload:
    folder = root / namespace
    folder.mkdir()
    config = folder / "deploy-pipeline.yaml"
    config.write_text(yaml.safe_dump(pipeline_doc(namespace, parallelism), sort_keys=False))
    pipeline = load_config(config)
    ns = manifests.namespace(namespace, {})
    by_stage: dict[str, list[dict[str, Any]]] = {s: [] for s in STAGES}
    names: dict[str, list[str]] = {s: [] for s in STAGES}
    for svc in pipeline.services.values():
        objects = manifests.service_objects(namespace, svc, IMAGE, run="bench")
        by_stage[svc.stage] += objects
        names[svc.stage] += [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"]
    stage_files = []
    for i, stage in enumerate(STAGES, 1):
        stage_files.append(folder / f"stage{i}.yaml")
        dump(stage_files[-1], ([ns] if i == 1 else []) + by_stage[stage])
    all_file = folder / "all.yaml"
    dump(all_file, [ns] + [o for s in STAGES for o in by_stage[s]])
    lines = [
        "#!/usr/bin/env bash",
        "# what teams write by hand: stage by stage, each rollout",
        "set -e",
    ]
    for i, stage in enumerate(STAGES, 1):
        lines.append(f'"$KUBECTL" apply -f {stage_files[i - 1].name}')
        for name in names[stage]:
            lines.append(
                f'"$KUBECTL" rollout status deployment/{name} -n {namespace} --timeout={TIMEOUT}s'
            )
    script = folder / "deploy.sh"
    script.write_text("\n".join(lines) + "\n")
    return Workload(folder, namespace, config, stage_files, all_file, script, names)


# --- the three measurements -------------------------------------------------------------------


@dataclass
class Measure:
    mode: str
    namespace: str
    seconds: float
    ok: bool
    error: str = ""
    profile: dict[str, Any] = field(default_factory=dict)


def all_available(namespace: str) -> tuple[int, int]:
    """(Available Deployments, Deployments) in the namespace, checked after every run."""
    items = json.loads(kubectl("get", "deployments", "-n", namespace, "-o", "json"))["items"]
    ok = sum(
        any(
            c["type"] == "Available" and c["status"] == "True"
            for c in d["status"].get("conditions", [])
        )
        and d["status"].get("availableReplicas", 0) == d["spec"]["replicas"]
        for d in items
    )
    return ok, len(items)


def run_dp(w: Workload) -> Measure:
    env = {**os.environ, "DEPLOY_PIPELINE_STATE": str(w.folder / "state.db")}
    argv = [sys.executable, "-m", "deploy_pipeline", "deploy", "-f", str(w.config)]
    argv += ["-e", w.namespace, "--events", "jsonl"]
    wall, out = timed(argv, env, w.folder, TIMEOUT + 60)
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    error = "" if out.returncode == 0 else (out.stderr.strip() or out.stdout.strip())[-800:]
    return Measure(
        "deploy-pipeline", w.namespace, wall, out.returncode == 0, error, timeline(events, wall)
    )


def timeline(events: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """Where deploy-pipeline's time went: the process start-up before the run's first event, each
    stage from its first deploy start to its last deploy end, and the deploy steps' durations."""
    deploys = [e for e in events if e["phase"] == "deploy" and e["status"] == "succeeded"]
    starts = {
        e["service"]: e["ts"] for e in events if e["phase"] == "deploy" and e["status"] == "started"
    }
    run = next((e for e in events if e["phase"] == "run" and e.get("duration") is not None), None)
    stages = {}
    for stage in STAGES:
        mine = [e for e in deploys if e["stage"] == stage]
        if mine:
            first = min(starts.get(e["service"], e["ts"]) for e in mine)
            stages[stage] = round(max(e["ts"] for e in mine) - first, 3)
    durations = sorted(e["duration"] for e in deploys if e.get("duration") is not None)
    return {
        "run": run["duration"] if run else None,
        "outside_run": round(wall - run["duration"], 3) if run else None,
        "stages": stages,
        "deploy_median": statistics.median(durations) if durations else None,
        "deploy_max": durations[-1] if durations else None,
        "deploys": len(durations),
    }


def run_shell(mode: str, w: Workload) -> Measure:
    if mode == "script":
        argv = ["bash", str(w.script)]
    else:
        argv = [
            "bash", "-c",
            f'"$KUBECTL" apply -f {w.all_file.name} && "$KUBECTL" wait --for=condition=Available '
            f"deployment --all -n {w.namespace} --timeout={TIMEOUT}s",
        ]  # fmt: skip
    env = {**os.environ, "KUBECTL": str(KUBECTL)}
    wall, out = timed(argv, env, w.folder, TIMEOUT + 60)
    error = "" if out.returncode == 0 else out.stderr.strip()[-800:]
    return Measure(mode, w.namespace, wall, out.returncode == 0, error)


def measure(mode: str, w: Workload) -> Measure:
    m = run_dp(w) if mode == "deploy-pipeline" else run_shell(mode, w)
    if m.ok:
        ready, total = all_available(w.namespace)
        if (ready, total) != (SERVICES, SERVICES):
            m.ok, m.error = False, f"{ready}/{total} Deployments Available after it returned"
    print(f"  {mode:<16} {m.seconds:7.2f} s  {'ok' if m.ok else 'FAILED: ' + m.error}", flush=True)
    return m


def delete_namespace(namespace: str) -> float:
    t0 = time.perf_counter()
    kubectl(
        "delete",
        "namespace",
        namespace,
        "--ignore-not-found",
        "--wait=true",
        f"--timeout={TIMEOUT}s",
    )
    return time.perf_counter() - t0


# --- the report -------------------------------------------------------------------------------


def summary(rounds: list[dict[str, Measure]]) -> dict[str, Any]:
    med = {m: statistics.median(r[m].seconds for r in rounds) for m in MODES}
    script = statistics.median(r["script"].seconds / r["deploy-pipeline"].seconds for r in rounds)
    bulk = statistics.median(r["deploy-pipeline"].seconds / r["bulk"].seconds for r in rounds)
    return {"median": med, "script_speedup": script, "dp_over_bulk": bulk}


def verdicts(s: dict[str, Any], ok: bool) -> list[tuple[str, bool, str]]:
    return [
        ("every run succeeded, all 200 Deployments Available", ok, ""),
        (
            f"≥ {SCRIPT_MIN:g}× faster than the hand-written script",
            s["script_speedup"] >= SCRIPT_MIN,
            f"{s['script_speedup']:.2f}×",
        ),
        (
            f"≤ {BULK_MAX:g}× the unordered bulk apply",
            s["dp_over_bulk"] <= BULK_MAX,
            f"{s['dp_over_bulk']:.2f}×",
        ),
    ]


def report(rounds: list[dict[str, Measure]]) -> tuple[dict[str, Any], bool]:
    print()
    print("| round | deploy-pipeline s | script s | bulk s | script ÷ dp | dp ÷ bulk |")
    print("|---:|---:|---:|---:|---:|---:|")
    for i, r in enumerate(rounds, 1):
        dp, sc, bk = (r[m].seconds for m in MODES)
        print(f"| {i} | {dp:.2f} | {sc:.2f} | {bk:.2f} | {sc / dp:.2f} | {dp / bk:.2f} |")
    s = summary(rounds)
    dp, sc, bk = (s["median"][m] for m in MODES)
    print(
        f"| median | {dp:.2f} | {sc:.2f} | {bk:.2f} | {s['script_speedup']:.2f} | "
        f"{s['dp_over_bulk']:.2f} |"
    )
    by_time = sorted(rounds, key=lambda r: r["deploy-pipeline"].seconds)
    p = by_time[len(by_time) // 2]["deploy-pipeline"].profile
    if p.get("run") is not None:
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in p["stages"].items())
        print(
            f"\ndeploy-pipeline, median round: run {p['run']:.2f} s + {p['outside_run']:.2f} s "
            f"outside it (interpreter, file, cluster client); stages: {stages}; a deploy step "
            f"(apply + wait until Available) takes {p['deploy_median']:.2f} s median, "
            f"{p['deploy_max']:.2f} s max"
        )
    ok = all(m.ok for r in rounds for m in r.values())
    print()
    passed = True
    for name, good, figure in verdicts(s, ok):
        passed &= good
        print(f"{'met   ' if good else 'MISSED'}  {name}{': ' + figure if figure else ''}")
    return s, passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians kept)")
    parser.add_argument("--json", type=Path, help="also write every figure here as JSON")
    parser.add_argument(
        "--parallelism",
        type=int,
        help="deploy-pipeline's defaults.parallelism (else its default, 7)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = parser.parse_args(argv)
    if not os.environ.get("KUBECONFIG"):
        print(
            "KUBECONFIG is not set: "
            'scripts/kube-testenv start && eval "$(scripts/kube-testenv env)"'
        )
        return 2
    if not KUBECTL.exists():
        print(f"{KUBECTL} is missing: scripts/kube-testenv build")
        return 2
    nodes = kubectl("get", "nodes", "-o", "name").split()
    print(f"{len(nodes)} nodes; kubectl: {kubectl('version', '--client').splitlines()[0]}")
    nonce = secrets.token_hex(3)
    rounds: list[dict[str, Measure]] = []
    with workdir("dp-bench-kube-", args.keep) as root:
        for i in range(args.rounds):
            order = MODES[i % 3 :] + MODES[: i % 3]
            print(f"round {i + 1}: {', '.join(order)}", flush=True)
            r: dict[str, Measure] = {}
            for mode in order:
                ns = f"kb-{nonce}-{i + 1}-{mode.split('-')[0]}"
                r[mode] = measure(mode, make_workload(root, ns, args.parallelism))
                took = delete_namespace(ns)
                print(f"  {'':<16} (namespace deleted in {took:.1f} s)", flush=True)
            rounds.append(r)
    s, passed = report(rounds)
    if args.json:
        data = {
            "summary": s,
            "rounds": [
                {
                    m: {"seconds": x.seconds, "ok": x.ok, "error": x.error, "profile": x.profile}
                    for m, x in r.items()
                }
                for r in rounds
            ],
        }
        args.json.write_text(json.dumps(data, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
