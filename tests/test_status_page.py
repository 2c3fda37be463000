"""The receiver's status page and the read side of its API, against `deploy-pipeline serve` running
as a process on loopback: a signed `pull_request` delivery makes a preview, and headless Chromium
(Debian's) shows it live; one environment as stage columns of service cards, with its current
release and its last few; a run's events as a Server-Sent Events stream that replays, resumes,
follows and lets go of a client that leaves."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from deploy_pipeline.model import EnvironmentRecord, Release
from deploy_pipeline.receiver.openapi import DESCRIPTION
from deploy_pipeline.store.state import Store
from tests.support.browser import artifacts, chromium
from tests.support.eventually import eventually
from tests.support.github_standin import REPO
from tests.support.serve import Server

TOKEN = "page-token-0123"
# Three stages; `search` is skipped in staging and so in its previews; slow enough to watch.
PIPELINE = """
version: 1
stages: [data, backend, frontend]
targets:
  rehearse:
    kind: simulated
    durations:
      db: {deploy: 1s}
      cache: {deploy: 5s}
      api: {build: 2s, deploy: 2s}
      web: {deploy: 4s}
services:
  db: {type: database, image: postgres:16, port: 5432, stage: data}
  cache: {type: database, image: redis:7, port: 6379, stage: data}
  api: {type: application, build: ./api, port: 8000, stage: backend}
  search: {type: container, image: search:1, port: 9200, stage: backend}
  web: {type: container, image: nginx:1.27, port: 80, public: true, stage: frontend}
environments:
  staging: {target: rehearse, skip: [search]}
previews: {from: staging}
"""
# Every time the page redraws, note each card's status with its environment's: proof of what
# the page showed while the run went on, whenever the test happens to look.
WATCH = """() => {
  window.seen = [];
  const note = () => {
    const env = document.querySelector('[data-env="pr-42"]');
    if (!env) return;
    const cards = [...env.querySelectorAll('[data-service]')];
    window.seen.push({env: env.dataset.status,
      ...Object.fromEntries(cards.map((c) => [c.dataset.service, c.dataset.status]))});
  };
  new MutationObserver(note).observe(document.body, {childList: true, subtree: true});
  window.sameDocument = true;
}"""


# Runs that take no time: for tests about what a run leaves, not how it goes.
QUICK = """
version: 1
stages: [data, apps]
targets:
  rehearse: {kind: simulated}
services:
  db: {type: database, image: postgres:16, port: 5432, stage: data}
  api: {type: application, build: ./api, port: 8000, stage: apps}
  web: {type: container, image: nginx:1.27, port: 80, public: true, stage: apps}
environments:
  staging: {target: rehearse}
"""


@pytest.fixture
def server(
    write_config: Callable[[str], Path], own_state: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    monkeypatch.setenv("DEPLOY_PIPELINE_API_TOKEN", TOKEN)
    s = Server(write_config(PIPELINE), own_state)
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture
def quick(
    write_config: Callable[[str], Path], own_state: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    """The receiver of QUICK, whose runs take no time."""
    monkeypatch.setenv("DEPLOY_PIPELINE_API_TOKEN", TOKEN)
    s = Server(write_config(QUICK), own_state)
    try:
        yield s.start()
    finally:
        s.stop()


def api(server: Server, path: str, token: str | None = TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(server.url(path), headers=headers)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def refused(server: Server, path: str, token: str | None = TOKEN) -> tuple[int, str]:
    """The status and error of an answer that is not 2xx."""
    with pytest.raises(urllib.error.HTTPError) as caught:
        api(server, path, token)
    with caught.value as answer:
        return answer.code, json.loads(answer.read())["error"]


def running_run(server: Server, environment: str) -> int:
    """The id of the environment's run once it holds the environment."""
    found: dict[str, Any] = {}

    def started() -> bool:
        listing = api(server, "/api/environments")["environments"]
        found.update(next((e for e in listing if e["name"] == environment), {}))
        return found.get("last_run") is not None

    eventually(started, message=f"a run of {environment} starting")
    return int(found["last_run"])


def finished(server: Server, run: int) -> dict[str, Any]:
    eventually(
        lambda: api(server, f"/api/runs/{run}")["status"] != "running", message=f"run {run} ending"
    )
    result: dict[str, Any] = api(server, f"/api/runs/{run}")
    return result


class Stream:
    """A run's Server-Sent Events, read as they come over a plain HTTP connection."""

    def __init__(self, server: Server, run: int, last_event_id: int | None = None) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.connection.request("GET", f"/api/runs/{run}/events", headers=headers)
        self.answer = self.connection.getresponse()

    def __iter__(self) -> Iterator[dict[str, str]]:
        """Each message's fields (`event`, `id`, `data`, `retry`); comments are left out."""
        message: dict[str, str] = {}
        for raw in self.answer:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if message:
                    yield message
                message = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                message[field] = value.removeprefix(" ")

    def close(self) -> None:
        self.answer.close()
        self.connection.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_the_page_shows_a_webhook_preview_live_in_headless_chromium(server: Server) -> None:
    """After a signed `pull_request` delivery, the page (open before it, never reloaded) shows the
    preview with its PR link, its stages left to right, the skipped service greyed, services
    deploying and waiting with a reason, then turning deployed as the run's events arrive over
    SSE, and the deployment's URL; the token from #token= is sent and taken off the URL."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        from playwright.sync_api import expect

        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        documents: list[str] = []
        page.on("request", lambda r: documents.append(r.url) if r.is_navigation_request() else None)
        streams: list[str] = []
        page.on("request", lambda r: streams.append(r.url) if r.url.endswith("/events") else None)

        page.goto(server.url(f"/#token={TOKEN}"))
        expect(page.locator('[data-env="staging"]')).to_be_visible()
        assert "token" not in page.evaluate("location.hash")
        page.evaluate(WATCH)

        server.deliver(42, "ab" * 20)
        preview = page.locator('[data-env="pr-42"]')
        expect(preview).to_be_visible(timeout=15_000)
        expect(preview.locator("a.pr")).to_have_attribute(
            "href", f"https://github.com/{REPO}/pull/42"
        )

        boxes = [
            preview.locator(f'[data-stage="{name}"]').bounding_box()
            for name in ("data", "backend", "frontend")
        ]
        assert all(box is not None for box in boxes)
        lefts = [box["x"] for box in boxes if box]
        tops = {round(box["y"]) for box in boxes if box}
        assert lefts == sorted(lefts) and len(set(lefts)) == 3, lefts
        assert len(tops) == 1, tops  # one row, left to right

        search = preview.locator('[data-service="search"]')
        expect(search).to_have_attribute("data-skipped", "true")
        expect(search).to_contain_text("skipped")
        assert float(search.evaluate("e => getComputedStyle(e).opacity")) < 0.8
        assert search.evaluate("e => getComputedStyle(e).filter") == "grayscale(1)"

        expect(preview.locator('[data-status="deploying"]').first).to_be_visible(timeout=10_000)
        web = preview.locator('[data-service="web"]')
        expect(web).to_have_attribute("data-status", "waiting")
        expect(web.locator(".svc-waiting")).to_have_text(
            re.compile(r"^waiting: stage (data|backend)( \(\w+ (deploying|building), .+\))?$")
        )
        running = artifacts() / "status-page-running.png"
        page.screenshot(path=str(running), full_page=True)

        expect(web).to_have_attribute("data-status", "deployed", timeout=30_000)
        expect(preview).to_have_attribute("data-status", "deployed")
        expect(preview.locator("a.deployment")).to_have_attribute(
            "href", "http://web.pr-42.rehearse.simulated/"
        )
        expect(web.locator("a.svc-url")).to_have_attribute(
            "href", "http://web.pr-42.rehearse.simulated/"
        )
        run = preview.get_attribute("data-run")
        expect(preview.locator("a.run-log")).to_have_attribute("href", f"/api/runs/{run}")

        seen: list[dict[str, str]] = page.evaluate("window.seen")
        # api deployed while the environment still deploys: only the event stream tells that
        assert any(s["env"] == "deploying" and s.get("api") == "deployed" for s in seen), seen
        assert page.evaluate("window.sameDocument") is True
        assert documents == [server.url("/")], documents  # one page load, never again
        assert server.url(f"/api/runs/{run}/events") in streams
        assert errors == []
        shot = artifacts() / "status-page.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshots: {shot} {running}")

        page.locator("a.run-log").click()  # the run's log, read with the token, in a dialog
        expect(page.locator("#log")).to_be_visible()
        expect(page.locator("#log-lines li").last).to_contain_text("run succeeded")
        page.keyboard.press("Escape")

        stranger = browser.new_page()  # a new tab: no token in its session
        stranger.goto(server.url("/"))
        expect(stranger.locator("#token-form")).to_be_visible()
        expect(stranger.locator('[data-env="pr-42"]')).to_have_count(0)


def test_one_environment_is_its_stages_with_a_card_per_service(server: Server) -> None:
    """`GET /api/environments/{name}` gives a finished preview's stages in order with each
    service's status, the skipped one marked, URLs, the PR's link and head commit, and the
    release its run made (its images by digest, the head commit); an unknown name is a 404 that
    says where the names are, and no token is a 401."""
    server.deliver(42, "cd" * 20)
    run = running_run(server, "pr-42")
    finished(server, run)
    found = api(server, "/api/environments/pr-42")
    assert {k: found[k] for k in ("name", "source", "pull_request", "status", "last_run")} == {
        "name": "pr-42",
        "source": "staging",
        "pull_request": 42,
        "status": "deployed",
        "last_run": run,
    }
    assert found["skipped"] == ["search"] and found["targets"] == ["rehearse"]
    assert found["sha"] == "cd" * 20
    assert found["pull_request_url"] == f"https://github.com/{REPO}/pull/42"
    assert found["url"] == "http://web.pr-42.rehearse.simulated"
    assert found["run"]["status"] == "succeeded"
    cards = {s["name"]: s for stage in found["stages"] for s in stage["services"]}
    assert [(st["name"], [s["name"] for s in st["services"]]) for st in found["stages"]] == [
        ("data", ["db", "cache"]),
        ("backend", ["api", "search"]),
        ("frontend", ["web"]),
    ]
    assert {n: (c["status"], c["skipped"]) for n, c in cards.items()} == {
        "db": ("deployed", False),
        "cache": ("deployed", False),
        "api": ("deployed", False),
        "search": ("skipped", True),
        "web": ("deployed", False),
    }
    assert cards["api"]["url"] == "http://api.pr-42.rehearse.simulated"
    assert all(c["waiting"] is None for c in cards.values())
    [current] = found["releases"]["current"]
    assert {k: current[k] for k in ("id", "action", "commit", "target")} == {
        "id": 1,
        "action": "deploy",
        "commit": "cd" * 20,
        "target": "rehearse",
    }
    assert sorted(current["images"]) == ["api", "cache", "db", "web"]  # search is skipped
    assert re.fullmatch(r".+@sha256:[0-9a-f]{64}", current["images"]["api"])
    assert found["releases"]["recent"] == [current]

    assert refused(server, "/api/environments/pr-9") == (
        404,
        "no environment named 'pr-9' (GET /api/environments lists them)",
    )
    assert refused(server, "/api/environments/pr-42", token=None)[0] == 401
    assert refused(server, "/api/runs/99/events")[0] == 404


def test_the_event_stream_follows_a_run_live_then_ends_with_its_status(server: Server) -> None:
    """Opened as the run starts, the stream delivers its events while it runs, a step's start
    while the step goes on (not with its end), numbered from 0 as `GET /api/runs/{id}` has
    them; then `end` with the run's status, and it closes."""
    server.deliver(42, "ef" * 20)
    run = running_run(server, "pr-42")
    messages, arrived, live = [], {}, None
    with Stream(server, run) as stream:
        assert stream.answer.status == 200
        assert stream.answer.getheader("Content-Type", "").startswith("text/event-stream")
        for message in stream:
            messages.append(message)
            if message.get("event") != "run-event":
                continue
            data = json.loads(message["data"])
            arrived[(data["service"], data["phase"], data["status"])] = time.monotonic()
            if live is None:
                live = api(server, f"/api/runs/{run}")["status"]
    assert live == "running"  # the first event came while the run went on
    for service in ("cache", "web"):  # 5 s and 4 s deploys
        ahead = arrived[(service, "deploy", "succeeded")] - arrived[(service, "deploy", "started")]
        assert ahead > 1.5, f"{service}'s start came only {ahead:.2f}s before its end"
    assert messages[0] == {"retry": "2000"}
    events = [m for m in messages if m.get("event") == "run-event"]
    assert [int(m["id"]) for m in events] == list(range(len(events)))
    assert [json.loads(m["data"]) for m in events] == finished(server, run)["events"]
    assert messages[-1] == {"event": "end", "data": '{"status": "succeeded"}'}


def test_a_finished_run_is_replayed_and_resumed_after_last_event_id(server: Server) -> None:
    """For a finished run the stream replays every event and ends at once; with
    `Last-Event-ID: 4` it sends only the events after the fifth."""
    server.deliver(42, "12" * 20)
    run = running_run(server, "pr-42")
    stored = finished(server, run)["events"]
    with Stream(server, run) as stream:
        everything = list(stream)
    assert [json.loads(m["data"]) for m in everything if "id" in m] == stored
    assert everything[-1]["event"] == "end"
    with Stream(server, run, last_event_id=4) as stream:
        resumed = [m for m in stream if "id" in m]
    assert [int(m["id"]) for m in resumed] == list(range(5, len(stored)))
    assert [json.loads(m["data"]) for m in resumed] == stored[5:]


def test_a_client_that_leaves_lets_go_of_its_stream_while_the_run_goes_on(server: Server) -> None:
    """A client that reads one event and hangs up: the receiver stops following for it (its gauge
    of open streams goes back to 0) while the run is still running."""
    server.deliver(42, "34" * 20)
    run = running_run(server, "pr-42")
    with Stream(server, run) as stream:
        next(iter(stream))  # the retry line: the stream is open
        eventually(lambda: open_streams(server) == 1, message="the stream counted")
    eventually(lambda: open_streams(server) == 0, message="the stream let go")
    assert api(server, f"/api/runs/{run}")["status"] == "running"
    finished(server, run)


def test_a_stopping_receiver_ends_its_streams_and_exits_without_waiting_for_the_run(
    server: Server,
) -> None:
    """SIGTERM while a client follows a run with most of its 11 s to go: the stream ends (with
    no `end`: the run did not, so a client comes back with Last-Event-ID) and the process exits
    within seconds, its run stopped and queued again, instead of holding on until the run is
    over."""
    server.deliver(42, "56" * 20)
    run = running_run(server, "pr-42")
    assert server.process is not None
    with Stream(server, run) as stream:
        messages = iter(stream)
        next(messages)  # the retry line: the stream is open
        stopped = time.monotonic()
        server.process.terminate()
        rest = list(messages)  # until the receiver closes the stream
        server.process.wait(30)
    took = time.monotonic() - stopped
    assert took < 4, f"the receiver took {took:.1f}s to stop with a stream open"
    assert all(m.get("event") != "end" for m in rest), rest
    # the run in flight is stopped and its delivery queued again for the next start (issue 11)
    assert "deploy of pr-42: queued again, the receiver is stopping" in server.log.read_text()


def open_streams(server: Server) -> float:
    with urllib.request.urlopen(server.url("/metrics"), timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(r"^deploy_pipeline_event_streams (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else -1.0


def test_the_page_and_its_files_are_served_without_a_token(server: Server) -> None:
    """`GET /` and its script and style need no token (they hold no data) and carry a content
    security policy that keeps the page to its own files; an unknown file is a 404."""
    with urllib.request.urlopen(server.url("/"), timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/html")
        policy = answer.headers["Content-Security-Policy"]
        page = answer.read().decode()
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    for path in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        with urllib.request.urlopen(server.url(path), timeout=5) as answer:
            assert answer.status == 200 and answer.read()
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url("/static/nothing.js"), timeout=5)
    with caught.value as answer:
        assert answer.code == 404


def test_the_page_reads_and_draws_a_page_of_environments_at_a_time(server: Server) -> None:
    """With 26 environments the page asks for the first 20 (`?limit=20`, never the whole list),
    reads the details of those 20 only and says how many there are; "Show more" brings the
    rest."""
    for n in range(1, 26):
        body = json.dumps({"name": f"clone-{n:02}"}).encode()
        request = urllib.request.Request(
            server.url("/api/environments/staging/clone"),
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 201
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        from playwright.sync_api import expect

        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/api/environments" in r.url else None)
        page.goto(server.url(f"/#token={TOKEN}"))
        cards = page.locator("[data-env]")
        expect(cards).to_have_count(20)
        expect(page.locator("#more-text")).to_have_text("Showing 20 of 26 environments")
        expect(page.locator('[data-env="clone-20"]')).to_be_visible()
        listings = [u for u in asked if "/api/environments?" in u or u.endswith("/environments")]
        assert listings and all(u.endswith("/api/environments?limit=20") for u in listings)
        details = {u.rsplit("/", 1)[1] for u in asked if re.search(r"/environments/[^/?]+$", u)}
        assert details == {f"clone-{n:02}" for n in range(1, 21)}

        page.locator("#more-button").click()
        expect(cards).to_have_count(26)
        expect(page.locator('[data-env="staging"]')).to_be_visible()
        expect(page.locator("#more")).to_be_hidden()


def order(server: Server, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A POST to the write API; its JSON answer."""
    request = urllib.request.Request(
        server.url(path),
        data=json.dumps(body or {}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


def deployed(server: Server, environment: str) -> dict[str, Any]:
    """A deploy of the environment ordered through the API, once it is over."""
    queued = order(server, f"/api/environments/{environment}/deploy")["queued"]
    done: dict[str, Any] = eventually(
        lambda: api(server, f"/api/deliveries/{queued}"),
        lambda d: d["state"] not in ("queued", "running"),
        message=f"the deploy of {environment} ending",
    )
    return done


def add_releases(server: Server, *releases: Release) -> None:
    """Releases kept in the receiver's state database, as runs would have kept them."""
    store = Store(server.state)
    try:
        for release in releases:
            store.add_release(release)
    finally:
        store.close()


def release(number: int, minutes_ago: float, **fields: Any) -> Release:
    """Release `number` of staging on `rehearse`, finished `minutes_ago`."""
    digest = f"{number:x}" * 64
    return Release(
        **{
            "environment": "staging",
            "id": number,
            "run": None,
            "action": "deploy",
            "target": "rehearse",
            "finished": time.time() - minutes_ago * 60,
            "commit": f"{number}" * 40,
            "services": {
                "api": {"image": f"127.0.0.1:5000/shop/api@sha256:{digest}", "target": "rehearse"},
                "db": {"image": f"sha256:{digest}", "target": "rehearse"},
            },
            **fields,
        }
    )


def test_the_page_shows_the_current_release_and_the_last_five(quick: Server) -> None:
    """After a real deploy (v1) and five more releases, staging's card says its current release
    is v6, deployed 2 minutes ago, with its commit and each image shortened as `history` prints
    them; below, v6 to v2 with their actions (a promotion's source, a rollback's release), when
    and commit; a clone never deployed says it has no release yet. The JSON says the same, as
    the OpenAPI description has it."""
    assert deployed(quick, "staging")["result"] == "succeeded"
    add_releases(
        quick,
        release(2, 49.6),  # "50 minutes ago" while the page loads within 53 s
        release(3, 39.6),
        release(4, 29.6, action="promote", source="qa"),
        release(5, 19.6, action="rollback", rolled_back_to=3, commit=None),
        release(6, 1.6, commit="abcdef0" + "1" * 33),
    )
    order(quick, "/api/environments/staging/clone", {"name": "quiet"})

    found = api(quick, "/api/environments/staging")
    described = DESCRIPTION["paths"]["/api/environments/{name}"]["get"]["responses"]["200"]
    schema = described["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": DESCRIPTION["components"]}).validate(found)
    detail = found["releases"]
    assert [r["id"] for r in detail["current"]] == [6]
    assert [r["id"] for r in detail["recent"]] == [6, 5, 4, 3, 2]
    assert detail["current"][0]["images"]["api"] == "127.0.0.1:5000/shop/api@sha256:" + "6" * 64
    assert api(quick, "/api/environments/quiet")["releases"] == {"current": [], "recent": []}

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        from playwright.sync_api import expect

        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(quick.url(f"/#token={TOKEN}"))
        staging = page.locator('[data-env="staging"]')
        current = staging.locator(".release-current")
        expect(current).to_have_count(1)
        expect(current.locator(".release-line")).to_have_text(
            "Current releasev6deploy2 minutes agocommitabcdef0"
        )
        expect(current.locator(".release-when")).to_have_attribute(
            "datetime", detail["current"][0]["finished"]
        )
        expect(current.locator(".release-image")).to_have_text(
            ["api127.0.0.1:5000/shop/api@sha256:666666666666", "dbsha256:666666666666"]
        )
        expect(current.locator('.release-image[data-image-of="api"]')).to_have_attribute(
            "title", "api: 127.0.0.1:5000/shop/api@sha256:" + "6" * 64
        )
        rows = staging.locator(".release-list li")
        expect(rows).to_have_count(5)
        expect(rows.locator(".release-id")).to_have_text(["v6", "v5", "v4", "v3", "v2"])
        expect(rows.locator(".release-action")).to_have_text(
            ["deploy", "rollback to v3", "promote from qa", "deploy", "deploy"]
        )
        ago = ["2 minutes ago", "20 minutes ago", "30 minutes ago", "40 minutes ago"]
        expect(rows.locator(".release-when")).to_have_text([*ago, "50 minutes ago"])
        expect(rows.locator(".release-commit")).to_have_text(
            ["commitabcdef0", "no commit", "commit4444444", "commit3333333", "commit2222222"]
        )
        expect(staging.locator(".release-recent-title")).to_have_text("Last 5 releases")
        quiet = page.locator('[data-env="quiet"]')
        expect(quiet.locator(".release-none")).to_have_text("No release yet")
        expect(quiet.locator(".release-current, .release-list")).to_have_count(0)
        shot = artifacts() / "status-page-releases.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        assert errors == []


HOSTILE = '<img src=x onerror="window.pwned=1">'


def test_release_text_from_the_store_is_shown_as_text_never_as_markup(quick: Server) -> None:
    """Markup in what the store holds of a release (its commit, a service's name and image, a
    promotion's source) and in an environment's name is shown as the text it is on the page:
    no element is made of it, no script of it runs; the page itself carries none of it."""
    name = "<i id=named>x<i>"
    store = Store(quick.state)
    try:
        store.save_environment(EnvironmentRecord(name=name, origin="clone", source="staging"))
    finally:
        store.close()
    image = f'"><script>window.pwned=2</script>{HOSTILE}@sha256:' + "0" * 64
    services = {"<svg onload=window.pwned=3>": {"image": image, "target": "rehearse"}}
    add_releases(
        quick,
        release(1, 5, commit=HOSTILE, services=services),
        release(2, 1, action="promote", source="<b id=bold>qa</b>", services=services),
        release(1, 1, environment=name, commit=HOSTILE, services=services),
    )
    with urllib.request.urlopen(quick.url("/"), timeout=5) as answer:
        assert "pwned" not in answer.read().decode()

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        from playwright.sync_api import expect

        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(quick.url(f"/#token={TOKEN}"))
        staging = page.locator('[data-env="staging"]')
        current = staging.locator(".release-current")
        expect(current.locator(".release-action")).to_have_text("promote from <b id=bold>qa</b>")
        expect(current.locator(".release-image")).to_have_text(
            f'<svg onload=window.pwned=3>"><script>window.pwned=2</script>{HOSTILE}@sha256:'
            + "0" * 12
        )
        rows = staging.locator(".release-list li")
        expect(rows.locator(".release-commit")).to_have_text(["commit2222222", "commit<img sr"])
        expect(rows.nth(1).locator(".release-commit")).to_have_attribute(
            "title", f"commit {HOSTILE}"
        )
        odd = page.locator(".env").filter(has=page.get_by_role("heading", name=name))
        expect(odd.locator(".release-current .release-id")).to_have_text("v1")
        expect(odd.locator(".release-commit").first).to_have_text("commit<img sr")
        shot = artifacts() / "status-page-hostile-releases.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        made = "main img, main script, main svg:not(.svc-icon), #bold, #named, b, i"
        assert page.locator(made).count() == 0
        assert page.evaluate("window.pwned") is None
        assert errors == []
