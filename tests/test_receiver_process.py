"""`deploy-pipeline serve` as a real process on loopback: killed with SIGKILL while deliveries
are running and queued, it finishes each of them, once, after a restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.eventually import eventually
from tests.support.serve import Server, free_port
from tests.support.webhooks import SECRET

PIPELINE = """
version: 1
targets:
  rehearse: {kind: simulated, durations: {web: {deploy: 3s}}}
services:
  web: {type: container, image: nginx:1.27, port: 80, public: true}
environments:
  staging: {target: rehearse}
previews: {from: staging}
"""


@pytest.fixture
def server(write_config: Callable[[str], Path], own_state: Path) -> Iterator[Server]:
    s = Server(write_config(PIPELINE), own_state)
    yield s
    s.stop()


def test_sigkill_with_work_running_and_queued_loses_nothing_and_runs_each_once(
    server: Server, own_state: Path
) -> None:
    """One worker runs PR 1's preview while PRs 2 and 3 wait; SIGKILL; after a restart the run
    in flight is marked abandoned and run again from the start, and the queued ones run: every
    delivery ends succeeded, each with exactly one finished run."""
    server.start()
    deliveries = [server.deliver(n, str(n) * 40) for n in (1, 2, 3)]
    eventually(lambda: server.state_of(deliveries[0]) == "running", message="PR 1's run starting")
    assert [server.state_of(d) for d in deliveries[1:]] == ["queued", "queued"]
    server.kill()

    server.start()
    eventually(
        lambda: all(server.state_of(d) == "done" for d in deliveries),
        message="every delivery done",
        timeout=60,
    )
    results = [server.get(f"/api/deliveries/{d}") for d in deliveries]
    assert [r["result"] for r in results] == ["succeeded"] * 3
    runs = [server.get(f"/api/runs/{r['run_id']}") for r in results]
    assert [r["status"] for r in runs] == ["succeeded"] * 3
    assert server.get("/api/runs/1")["status"] == "abandoned"  # PR 1's run the kill cut short
    assert sorted(r["id"] for r in runs) == [2, 3, 4]  # one finished run per delivery
    names = [e["name"] for e in server.get("/api/environments")["environments"]]
    assert {"pr-1", "pr-2", "pr-3"} <= set(names)


def test_the_log_is_json_lines_naming_the_delivery_pr_environment_and_run(
    server: Server,
) -> None:
    """Every line the receiver logs is a JSON object; a finished run's line carries its
    delivery id, PR number, environment and run id."""
    server.start()
    delivery = server.deliver(7, "7" * 40)
    eventually(lambda: server.state_of(delivery) == "done", message="the delivery done")
    server.stop()
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]
    done = [line for line in lines if line.get("delivery") == delivery]
    assert done, lines[-5:]
    assert {k: done[-1][k] for k in ("pr", "environment", "run")} == {
        "pr": 7,
        "environment": "pr-7",
        "run": 1,
    }
    assert done[-1]["message"] == "deploy of pr-7: succeeded"


def raw_post(port: int, headers: dict[str, str], body: bytes = b"") -> socket.socket:
    """A POST /webhooks/github on a socket of its own: the headers, then `body`, which may be
    only the start of what their Content-Length promises."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n"
    connection.sendall(head.encode() + body)
    return connection


def answer_of(connection: socket.socket) -> tuple[int, str]:
    """The status and the header block the receiver answered on the connection."""
    data = b""
    with connection:
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1")
    return int(head.split(" ", 2)[1]), head.lower()


def uploads(server: Server) -> float:
    """The receiver's gauge of webhook bodies being read."""
    with urllib.request.urlopen(server.url("/metrics"), timeout=5) as answer:
        text = answer.read().decode()
    found = [line for line in text.splitlines() if line.startswith("deploy_pipeline_uploads ")]
    return float(found[0].split()[1]) if found else -1.0


# a delivery that promises a megabyte, signed in form (the signature is checked once it is read)
SLOW = {
    "X-GitHub-Event": "pull_request",
    "X-GitHub-Delivery": "slow",
    "X-Hub-Signature-256": "sha256=" + "0" * 64,
    "Content-Type": "application/json",
    "Content-Length": str(1024 * 1024),
}


def test_slow_uploads_are_capped_and_cut_off_at_the_read_deadline(
    write_config: Callable[[str], Path], own_state: Path
) -> None:
    """With DEPLOY_PIPELINE_UPLOADS=2, two bodies that trickle in are read while a third is
    answered 503 with Retry-After at once; the two are answered 408 at the 2 s read deadline,
    and then a delivery is taken again."""
    limits = {"DEPLOY_PIPELINE_UPLOADS": "2", "DEPLOY_PIPELINE_READ_SECONDS": "2"}
    server = Server(write_config(PIPELINE), own_state, limits)
    try:
        server.start()
        slow = [raw_post(server.port, SLOW, b'{"action": ') for _ in range(2)]
        eventually(lambda: uploads(server) == 2, message="two bodies being read", timeout=10)
        status, head = answer_of(raw_post(server.port, SLOW, b"{"))
        assert status == 503 and "retry-after: 5" in head
        for connection in slow:  # within the sockets' 10 s: the deadline cut them off
            assert answer_of(connection)[0] == 408
        eventually(lambda: uploads(server) == 0, message="the bodies let go", timeout=10)
        server.deliver(1, "1" * 40)
    finally:
        server.stop()


def test_a_delivery_without_a_signature_is_refused_before_its_body_is_read(
    server: Server,
) -> None:
    """Headers promising a megabyte without X-Hub-Signature-256 are answered 401 at once,
    before any of the body is sent (the read deadline is 10 s, the socket's timeout 5 s)."""
    server.start()
    unsigned = {k: v for k, v in SLOW.items() if k != "X-Hub-Signature-256"}
    connection = raw_post(server.port, unsigned)
    connection.settimeout(5)
    assert answer_of(connection)[0] == 401


@pytest.mark.parametrize(
    ("env", "port", "said"),
    [
        (
            {"DEPLOY_PIPELINE_WORKERS": "\u00b2"},
            None,
            "DEPLOY_PIPELINE_WORKERS is a whole number from 1 to 64, got '\u00b2'",
        ),
        (
            {"DEPLOY_PIPELINE_WORKERS": "100000"},
            None,
            "DEPLOY_PIPELINE_WORKERS is a whole number from 1 to 64",
        ),
        (
            {"DEPLOY_PIPELINE_LEASE": "nan"},
            None,
            "DEPLOY_PIPELINE_LEASE is a number of seconds from 1 to 86400, got 'nan'",
        ),
        (
            {"DEPLOY_PIPELINE_LOCK_TTL": "soon"},
            None,
            "DEPLOY_PIPELINE_LOCK_TTL is a number of seconds from 0.5 to 86400, got 'soon'",
        ),
        (
            {"DEPLOY_PIPELINE_LOCK_TTL": "-1"},
            None,
            "DEPLOY_PIPELINE_LOCK_TTL is a number of seconds",
        ),
        (
            {"DEPLOY_PIPELINE_UPLOADS": "0"},
            None,
            "DEPLOY_PIPELINE_UPLOADS is a whole number from 1 to 1024",
        ),
        (
            {"DEPLOY_PIPELINE_READ_SECONDS": "inf"},
            None,
            "DEPLOY_PIPELINE_READ_SECONDS is a number of seconds from 0.5 to 600",
        ),
        ({}, "99999", "argument --port: a port is a number from 1 to 65535, got '99999'"),
        ({}, "0", "argument --port: a port is a number from 1 to 65535, got '0'"),
    ],
)
def test_a_bad_setting_stops_serve_with_exit_2_and_a_sentence(
    write_config: Callable[[str], Path],
    own_state: Path,
    env: dict[str, str],
    port: str | None,
    said: str,
) -> None:
    """A variable out of its range, or a port beyond 1-65535, stops `serve` before it listens:
    exit 2 and a sentence naming the value and what is accepted, no traceback."""
    command = [sys.executable, "-m", "deploy_pipeline", "serve", "-f", str(write_config(PIPELINE))]
    environ = {
        **os.environ,
        "DEPLOY_PIPELINE_WEBHOOK_SECRET": SECRET,
        "DEPLOY_PIPELINE_STATE": str(own_state),
        **env,
    }
    result = subprocess.run(
        [*command, "--port", port or str(free_port())],
        env=environ,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert said in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_with_a_run_in_flight_queues_it_again_and_a_restart_deploys_it(
    server: Server,
) -> None:
    """SIGTERM while PR 4's preview deploys stops that run and puts its delivery back in the
    queue (not `cancelled`): after a restart it runs again, and the preview ends deployed."""
    server.start()
    delivery = server.deliver(4, "4" * 40)
    eventually(lambda: server.state_of(delivery) == "running", message="PR 4's run starting")
    server.stop()

    server.start()
    eventually(
        lambda: server.state_of(delivery) not in ("queued", "running"),
        message="the rerun",
        timeout=60,
    )
    assert server.get(f"/api/deliveries/{delivery}")["result"] == "succeeded"
    envs = {e["name"]: e for e in server.get("/api/environments")["environments"]}
    assert envs["pr-4"]["status"] == "deployed"
