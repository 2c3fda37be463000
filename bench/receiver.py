"""Benchmark of the webhook receiver: signed deliveries from a loopback load client against one
`deploy-pipeline serve` process on the simulated target, its workers running the previews.

The client is asyncio over raw HTTP/1.1 keep-alive connections with every request built before
the clock starts; it is measured alone against a trivial server in the same run, to show it is
not what limits the figures. After the load the bench waits for the queue to drain, then reads
the state database (read-only) to prove that no acknowledged delivery was lost and none ran
twice. See bench/README.md for what is measured and the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import multiprocessing
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import workdir

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "github-webhooks"
SECRET = "It's a Secret to Everybody"
P99_MAX = 15.0  # ms from sending a delivery to the whole 202
RATE_MIN = 1000.0  # requests per second
START_LIMIT = 30.0  # seconds for the receiver to answer /healthz
STALL_LIMIT = 60.0  # seconds without a delivery finishing before the drain gives up
# The simulated target: a preview deploy is ~35 ms of steps (db, then web and search at once).
PIPELINE = """
version: 1
stages: [data, apps]
targets:
  rehearse:
    kind: simulated
    durations: {db: {deploy: 20ms}, web: {deploy: 15ms}, search: {deploy: 10ms}}
services:
  db: {type: database, image: postgres:16, port: 5432, stage: data}
  web: {type: container, image: nginx:1.27, port: 80, public: true, stage: apps}
  search: {type: container, image: search:1, stage: apps}
environments:
  staging: {target: rehearse}
previews: {from: staging, max: null}  # all --prs previews live (the default cap is 20)
"""


# --- the workload -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """One request of the load."""

    delivery: str
    event: str
    kind: str  # preview (a pull_request delivery), repeat (of an earlier one), ignored
    pr: int | None
    request: bytes  # the whole HTTP/1.1 request, headers and body


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def http_request(host: str, event: str, delivery: str, body: bytes) -> bytes:
    """A POST as GitHub's hookshot sends it, signed with the secret."""
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST /webhooks/github HTTP/1.1\r\nHost: {host}\r\n"
        "User-Agent: GitHub-Hookshot/bench\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {delivery}\r\n"
        f"X-Hub-Signature-256: sha256={digest}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def make_workload(n: int, prs: int, seed: int, host: str) -> list[Send]:
    """n requests: for `prs` pull requests, `opened` then `synchronize` with a new head commit
    each time (the recorded payloads, edited); about 10 % repeats of a delivery at least 10
    requests back (same id, same bytes, as a redelivery) and 2 % events the receiver ignores
    (push, ping)."""
    rng = random.Random(f"{seed}:{n}:{prs}")
    actions = {a: recorded(f"pull_request/{a}.payload.json") for a in ("opened", "synchronize")}
    ignored = [("push", recorded("push/with-new-branch.payload.json"))]
    ignored.append(("ping", recorded("ping/payload.json")))
    pushes: Counter[int] = Counter()
    sends: list[Send] = []
    while len(sends) < n:
        roll = rng.random()
        if roll < 0.10 and len(sends) > 10:
            first = sends[rng.randrange(len(sends) - 10)]
            sends.append(Send(first.delivery, first.event, "repeat", first.pr, first.request))
            continue
        delivery = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if roll < 0.12:
            event, data = ignored[rng.randrange(len(ignored))]
            request = http_request(host, event, delivery, json.dumps(data).encode())
            sends.append(Send(delivery, event, "ignored", None, request))
            continue
        pr = 100 + rng.randrange(prs)
        data = copy.deepcopy(actions["synchronize" if pushes[pr] else "opened"])
        pushes[pr] += 1
        data["number"] = data["pull_request"]["number"] = pr
        sha = hashlib.sha1(f"{seed}:{pr}:{pushes[pr]}".encode()).hexdigest()
        data["pull_request"]["head"]["sha"] = sha
        if "after" in data:  # synchronize: the commit pushed
            data["after"] = sha
        request = http_request(host, "pull_request", delivery, json.dumps(data).encode())
        sends.append(Send(delivery, "pull_request", "preview", pr, request))
    return sends


# --- the load client --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    sent: float  # perf_counter before the request is written
    answered: float  # perf_counter once the whole response is read
    status: int  # 0: the connection failed instead
    body: bytes

    @property
    def ms(self) -> float:
        return (self.answered - self.sent) * 1e3


@dataclass
class Load:
    answers: list[Answer]
    wall: float  # first request written → last response read
    cpu: float  # this process's CPU time over the load: the client's cost
    connections: int


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def drive(port: int, requests: Sequence[bytes], connections: int) -> Load:
    """Send every request once over `connections` keep-alive connections, each sending its next
    request as soon as the previous one is answered (a closed loop)."""
    streams = [await connect(port) for _ in range(connections)]
    answers: list[Answer | None] = [None] * len(requests)
    following = iter(range(len(requests)))

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i in following:
            sent = time.perf_counter()
            try:
                writer.write(requests[i])
                status, body = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError) as exc:
                answers[i] = Answer(sent, time.perf_counter(), 0, repr(exc).encode())
                writer.close()
                reader, writer = await connect(port)
                continue
            answers[i] = Answer(sent, time.perf_counter(), status, body)
        writer.close()

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(connection(r, w) for r, w in streams))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return Load([a for a in answers if a is not None], wall, cpu, connections)


def load(port: int, requests: Sequence[bytes], connections: int) -> Load:
    return asyncio.run(drive(port, requests, connections))


# --- the client alone, against a trivial server -----------------------------------------------

TRIVIAL_BODY = b'{"queued": "bench", "duplicate": false}'
ACCEPTED = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
ACCEPTED += b"content-length: %d\r\n\r\n%s" % (len(TRIVIAL_BODY), TRIVIAL_BODY)


class Trivial(asyncio.Protocol):
    """Reads each request (headers, then Content-Length bytes) and answers a fixed 202."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            assert self.transport is not None
            self.transport.write(ACCEPTED)


def serve_trivial(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Trivial, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


def client_alone(requests: Sequence[bytes], connections: int) -> Load:
    """The same requests against a trivial server in a process of its own."""
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(
        target=serve_trivial, args=(port,), daemon=True
    )
    server.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        return load(port, requests, connections)
    finally:
        server.terminate()
        server.join(5)


# --- the receiver process ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return json.loads(answer.read())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the resident high-water mark) of a process."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)


@dataclass
class Receiver:
    """One `deploy-pipeline serve` process (reporting to GitHub off), stopped by its PID."""

    root: Path
    workers: int
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def state(self) -> Path:
        return self.root / "state.db"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        config = self.root / "deploy.yaml"
        config.write_text(PIPELINE)
        env = {
            **os.environ,
            "DEPLOY_PIPELINE_WEBHOOK_SECRET": SECRET,
            "DEPLOY_PIPELINE_STATE": str(self.state),
            "DEPLOY_PIPELINE_WORKERS": str(self.workers),
        }
        for name in ("GITHUB_TOKEN", "DEPLOY_PIPELINE_DATABASE_URL"):
            env.pop(name, None)
        argv = [sys.executable, "-m", "deploy_pipeline", "serve", "-f", str(config)]
        with (self.root / "serve.log").open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [*argv, "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.root,
            )
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            try:
                get_json(self.port, "/healthz")
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("the receiver exited: see its log (--keep)") from None
                time.sleep(0.05)
            else:
                return
        raise RuntimeError(f"the receiver did not answer /healthz within {START_LIMIT:.0f} s")

    def drain(self) -> float:
        """Wait until nothing is queued (/readyz) and nothing runs (the database); seconds."""
        t0 = time.perf_counter()
        last, moved = -1, time.monotonic()
        while True:
            queued = get_json(self.port, "/readyz").get("queued")
            with contextlib.closing(read_only(self.state)) as db:
                (busy,) = db.execute(
                    "SELECT COUNT(*) FROM deliveries WHERE state IN ('queued', 'running')"
                ).fetchone()
            if queued == 0 and busy == 0:
                return time.perf_counter() - t0
            if busy != last:
                last, moved = busy, time.monotonic()
            elif time.monotonic() - moved > STALL_LIMIT:
                raise RuntimeError(
                    f"{busy} deliveries still queued or running and none finished for "
                    f"{STALL_LIMIT:.0f} s: see the receiver's log (--keep)"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- what the database holds ------------------------------------------------------------------


def audit(sends: Sequence[Send], answers: Sequence[Answer], state: Path) -> dict[str, Any]:
    """The state database against what was sent and answered."""
    pairs = list(zip(sends, answers, strict=True))
    unique = {s.delivery for s in sends if s.event == "pull_request"}
    ignored = {s.delivery for s in sends if s.event != "pull_request"}
    accepted = {s.delivery for s, a in pairs if a.status == 202}
    news: Counter[str] = Counter()  # 202s saying "not a duplicate": one per delivery
    for s, a in pairs:
        if a.status == 202 and not json.loads(a.body)["duplicate"]:
            news[s.delivery] += 1
    with contextlib.closing(read_only(state)) as db:
        rows = db.execute(
            "SELECT id, environment, state, run_id, result, received_at FROM deliveries "
            "ORDER BY received_at, rowid"
        ).fetchall()
        runs = {
            int(r[0]): (json.loads(r[1]), r[2])
            for r in db.execute("SELECT id, environments, status FROM runs")
        }
        locks = db.execute("SELECT COUNT(*) FROM locks").fetchone()[0]
    stored = [str(r[0]) for r in rows]
    by_id = {str(r[0]): r for r in rows}
    done = [r for r in rows if r[2] == "done"]
    run_users = Counter(r[3] for r in rows if r[3] is not None)
    newest = {str(r[1]): str(r[0]) for r in rows}  # environment → the last delivery to arrive
    superseded_by_later = 0
    for r in rows:
        if r[2] == "superseded":
            later = by_id.get(str(r[4]).rpartition(" ")[2])
            superseded_by_later += later is not None and later[1] == r[1] and later[5] >= r[5]
    return {
        "sent": len(sends),
        "sent_unique": len(unique),
        "ignored_sent": len(ignored),
        "answered_202_unique": len(accepted),
        "stored": len(stored),
        "states": dict(Counter(str(r[2]) for r in rows)),
        "runs": len(runs),
        "runs_by_status": dict(Counter(status for _, status in runs.values())),
        "superseded_by_later": superseded_by_later,
        "previews": len(newest),
        "previews_newest_done": sum(by_id[d][2] == "done" for d in newest.values()),
        "locks_left": int(locks),
        # each of these must be 0
        "lost": len(accepted - set(stored)),
        "stored_not_sent": len(set(stored) - unique),
        "ignored_stored": len(ignored & set(stored)),
        "ids_stored_twice": len(stored) - len(set(stored)),
        "ids_not_new_exactly_once": sum(news[d] != 1 for d in accepted),
        "done_without_run": sum(r[3] is None for r in done),
        "run_ids_shared": sum(n > 1 for n in run_users.values()),
        "runs_of_no_delivery": len(set(runs) - set(run_users)),
        "runs_of_another_environment": sum(
            r[3] is not None and runs.get(r[3], ([], ""))[0] != [r[1]] for r in done
        ),
    }


# --- the report -------------------------------------------------------------------------------

TWICE = ("ids_stored_twice", "run_ids_shared", "runs_of_no_delivery")
ASTRAY = (
    "stored_not_sent",
    "ignored_stored",
    "ids_not_new_exactly_once",
    "done_without_run",
    "runs_of_another_environment",
)
MUST_BE_ZERO = ("lost", *TWICE, *ASTRAY)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    rank = -(-len(ordered) * p // 100)  # ceil
    return ordered[max(int(rank), 1) - 1]


def figures(run: Load, server_cpu: float | None = None) -> dict[str, float]:
    """Latency over the 202 answers (duplicates included), rate over every request."""
    acks = sorted(a.ms for a in run.answers if a.status == 202)
    n = len(run.answers)
    found = {
        "requests": n,
        "connections": run.connections,
        "wall_s": run.wall,
        "rps": n / run.wall,
        "p50_ms": percentile(acks, 50),
        "p90_ms": percentile(acks, 90),
        "p99_ms": percentile(acks, 99),
        "max_ms": acks[-1],
        "client_cpu_us": run.cpu / n * 1e6,
    }
    if server_cpu is not None:
        found["server_cpu_ms"] = server_cpu / n * 1e3
    return found


HEADER = (
    "| against | requests | conns | wall s | req/s | p50 ms | p90 ms | p99 ms | max ms | "
    "client CPU µs/req | server CPU ms/req |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def row(name: str, f: dict[str, float]) -> str:
    server = f"{f['server_cpu_ms']:.2f}" if "server_cpu_ms" in f else "–"
    return (
        f"| {name} | {f['requests']:,.0f} | {f['connections']:.0f} | {f['wall_s']:.2f} | "
        f"{f['rps']:,.0f} | {f['p50_ms']:.2f} | {f['p90_ms']:.2f} | {f['p99_ms']:.2f} | "
        f"{f['max_ms']:.2f} | {f['client_cpu_us']:.0f} | {server} |"
    )


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(r: dict[str, Any]) -> bool:
    f, client, a = r["receiver"], r["client_alone"], r["audit"]
    print()
    print(HEADER)
    print(row("trivial server (client alone)", client))
    print(row("receiver", f))
    mem0, mem1 = r["memory_start_kib"], r["memory_end_kib"]
    print(
        f"\nanswers {r['statuses']}; queue drained {r['drain_s']:.1f} s after the load; "
        f"receiver RSS {mem0['VmRSS'] / 1024:.0f} MiB after start, peak (VmHWM) "
        f"{mem1['VmHWM'] / 1024:.0f} MiB at the end"
    )
    print(
        f"database: {a['stored']:,} deliveries stored of {a['sent_unique']:,} unique sent "
        f"({a['answered_202_unique']:,} answered 202), states {a['states']}; {a['runs']} runs "
        f"{a['runs_by_status']}; {a['superseded_by_later']:,} superseded by a later delivery of "
        f"their preview; the newest delivery done for {a['previews_newest_done']} of "
        f"{a['previews']} previews; environment locks left: {a['locks_left']}"
    )
    print("checks (each 0): " + ", ".join(f"{k} {a[k]}" for k in MUST_BE_ZERO))
    print(f"load average before {r['load_before']}, after the load {r['load_after']}")
    twice, astray = sum(a[k] for k in TWICE), sum(a[k] for k in ASTRAY)
    unaccounted = a["states"].get("superseded", 0) - a["superseded_by_later"]
    failed = r["statuses"].get("0", 0) + sum(
        n for status, n in r["statuses"].items() if status not in ("0", "200", "202")
    )
    verdicts = [
        (
            "p99 time to the 202 ≤ 15 ms",
            f["p99_ms"] <= P99_MAX,
            f"{f['p99_ms']:.2f} ms ({f['p99_ms'] / P99_MAX:.2f} × the target)",
        ),
        (
            "≥ 1,000 requests/s",
            f["rps"] >= RATE_MIN,
            f"{f['rps']:,.0f} ({f['rps'] / RATE_MIN:.2f} × the target; the client alone "
            f"{client['rps']:,.0f})",
        ),
        ("deliveries lost = 0", a["lost"] == 0, f"{a['lost']}"),
        ("deliveries run twice = 0", twice == 0, f"{twice}"),
        (
            "every request answered, every delivery accounted for, no lock left",
            failed + astray + unaccounted + a["locks_left"] == 0
            and a["previews_newest_done"] == a["previews"]
            and a["answered_202_unique"] == a["sent_unique"],
            f"{failed} requests failed, {astray} deliveries astray, {unaccounted} superseded "
            f"ones unaccounted, {a['locks_left']} environment locks left",
        ),
    ]
    print()
    passed = True
    for name, good, figure in verdicts:
        passed &= good
        print(f"{'met   ' if good else 'MISSED'}  {name}: {figure}")
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=2000, help="requests sent (2000)")
    parser.add_argument("--connections", type=int, default=4, help="client connections (4)")
    parser.add_argument("--prs", type=int, default=50, help="pull requests (50)")
    parser.add_argument("--workers", type=int, default=2, help="DEPLOY_PIPELINE_WORKERS (2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write every figure here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the database and the log")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers: at least 1 (the receiver's own minimum)")

    r: dict[str, Any] = {"load_before": load_average()}
    with workdir("dp-bench-receiver-", args.keep) as root:
        receiver = Receiver(root, args.workers)
        sends = make_workload(args.deliveries, args.prs, args.seed, f"127.0.0.1:{receiver.port}")
        requests = [s.request for s in sends]
        kinds = Counter(s.kind for s in sends)
        print(
            f"{len(sends):,} requests ({sum(map(len, requests)) / len(sends) / 1024:.0f} KiB "
            f"each on average): {kinds['preview']:,} pull_request deliveries for "
            f"{len({s.pr for s in sends if s.pr})} PRs, {kinds['repeat']} repeats, "
            f"{kinds['ignored']} ignored (push, ping); {args.connections} connections, "
            f"{args.workers} workers",
            flush=True,
        )
        r["client_alone"] = figures(client_alone(requests, args.connections))
        receiver.start()
        try:
            r["memory_start_kib"] = memory_kib(receiver.pid)
            cpu0 = cpu_seconds(receiver.pid)
            run = load(receiver.port, requests, args.connections)
            r["receiver"] = figures(run, cpu_seconds(receiver.pid) - cpu0)
            r["load_after"] = load_average()
            print(HEADER + "\n" + row("receiver", r["receiver"]), flush=True)
            r["drain_s"] = receiver.drain()
            r["memory_end_kib"] = memory_kib(receiver.pid)
            r["audit"] = audit(sends, run.answers, receiver.state)
            r["statuses"] = dict(sorted(Counter(str(a.status) for a in run.answers).items()))
        finally:
            receiver.stop()
    passed = report(r)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
