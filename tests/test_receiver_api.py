"""The receiver's JSON API in-process (Starlette's TestClient, its workers running on the
simulated target): cloning and ordering runs through the queue, the errors a caller reads, the
bearer token, and every answer checked against the OpenAPI description the receiver serves."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from starlette.routing import Route
from starlette.testclient import TestClient

from deploy_pipeline.receiver.openapi import DESCRIPTION
from tests.support.eventually import eventually
from tests.support.receiver import PIPELINE, ReceiverFactory, serving
from tests.support.webhooks import payload, signed

TOKEN = "api-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def check(response: httpx2.Response, method: str = "get") -> Any:
    """The response's body, after checking it against the OpenAPI description of its route."""
    path = response.request.url.path
    for template, operations in DESCRIPTION["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method in operations:
            break
    else:
        pytest.fail(f"{method.upper()} {path} is not in the OpenAPI description")
    answers = operations[method]["responses"]
    status = str(response.status_code)
    assert status in answers, f"{method.upper()} {template} answered {status}, not described"
    content = answers[status].get("content", {}).get("application/json")
    body = response.json() if content else None
    if content:  # the $refs point into the description's components
        schema = {**content["schema"], "components": DESCRIPTION["components"]}
        Draft202012Validator(schema).validate(body)
    return body


@pytest.fixture
def api(make_receiver: ReceiverFactory) -> Iterator[TestClient]:
    with serving(make_receiver(PIPELINE, workers=2, api_token=TOKEN)) as client:
        yield client


def finished(client: TestClient, delivery: str, timeout: float = 30) -> dict[str, Any]:
    found: dict[str, Any] = eventually(
        lambda: check(client.get(f"/api/deliveries/{delivery}", headers=AUTH)),
        lambda found: found["state"] not in ("queued", "running"),
        timeout=timeout,
        message=f"delivery {delivery} finishing",
    )
    return found


def test_the_openapi_description_is_valid_openapi_3_1() -> None:
    """The description the receiver serves passes the OpenAPI 3.1 validator."""
    validate_spec(DESCRIPTION)


def test_the_description_is_served(api: TestClient) -> None:
    """`GET /api/openapi.json` serves the description, listing the write routes."""
    served = api.get("/api/openapi.json").json()
    assert served["openapi"] == "3.1.0"
    assert "/api/environments/{name}/{action}" in served["paths"]


def test_every_route_but_the_page_is_described(api: TestClient) -> None:
    """Each route the receiver serves, with each of its methods, is in the OpenAPI description,
    but the status page and its files (HTML, not API)."""
    served = {
        (route.path, method.lower())
        for route in api.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.path != "/"
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {(path, method) for path, ops in DESCRIPTION["paths"].items() for method in ops}
    assert served - described == set()
    assert ("/api/environments/{name}/releases", "get") in served


def test_clone_then_deploy_through_the_api(api: TestClient) -> None:
    """A clone made through the API is listed with its source's skipped set, and a deploy
    ordered through the API runs on the queue and leaves it deployed."""
    made = check(
        api.post("/api/environments/staging/clone", json={"name": "demo"}, headers=AUTH), "post"
    )
    assert made["environment"]["name"] == "demo"
    assert made["environment"]["source"] == "staging"
    assert made["environment"]["skipped"] == ["search"]

    queued = check(api.post("/api/environments/demo/deploy", headers=AUTH), "post")
    assert queued["action"] == "deploy" and queued["environment"] == "demo"
    done = finished(api, queued["queued"])
    assert (done["state"], done["result"]) == ("done", "succeeded")
    run = check(api.get(f"/api/runs/{done['run_id']}", headers=AUTH))
    assert run["environments"] == ["demo"] and run["status"] == "succeeded"
    deployed = {e["service"] for e in run["events"] if e["status"] == "succeeded" and e["service"]}
    assert deployed == {"db", "web"}  # search is skipped in staging, and so in its clone
    listing = check(api.get("/api/environments", headers=AUTH))["environments"]
    assert {e["name"]: e["status"] for e in listing}["demo"] == "deployed"


def test_an_order_for_some_services_runs_only_those(api: TestClient) -> None:
    """`{"services": ["web"]}` restarts web alone."""
    done = finished(
        api, api.post("/api/environments/staging/deploy", headers=AUTH).json()["queued"]
    )
    assert done["result"] == "succeeded"
    queued = check(
        api.post("/api/environments/staging/restart", json={"services": ["web"]}, headers=AUTH),
        "post",
    )
    run = check(api.get(f"/api/runs/{finished(api, queued['queued'])['run_id']}", headers=AUTH))
    assert run["action"] == "restart" and run["services"] == ["web"]
    assert {e["service"] for e in run["events"] if e["status"] == "succeeded" and e["service"]} == {
        "web"
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/environments/nope/deploy", None, 404, "no environment named 'nope' (known: staging"),
        ("/api/environments/staging/explode", None, 404, "no action 'explode': use one of deploy"),
        ("/api/environments/staging/deploy", {"services": ["wbe"]}, 400, "wbe"),
        (
            "/api/environments/staging/deploy",
            {"services": "web"},
            400,
            "services is a list of names",
        ),
        ("/api/environments/staging/clone", {}, 400, "name the new environment"),
        ("/api/environments/staging/clone", {"name": "staging"}, 409, "already exists"),
        ("/api/environments/nope/clone", {"name": "x"}, 404, "no environment named 'nope'"),
        ("/api/environments/staging/clone", {"name": "Bad Name"}, 400, "lowercase letters"),
    ],
)
def test_bad_orders_say_what_is_wrong(
    api: TestClient, path: str, body: dict[str, Any] | None, status: int, message: str
) -> None:
    """A wrong environment, action, service list or clone name is refused with words that say
    what would be right, and nothing is queued."""
    answer = api.post(path, json=body, headers=AUTH)
    assert answer.status_code == status
    assert message in check(answer, "post")["error"]
    assert api.get("/readyz").json()["queued"] == 0


def test_a_body_that_is_not_json_is_refused(api: TestClient) -> None:
    """A body that is not JSON gets a 400 saying so."""
    answer = api.post("/api/environments/staging/deploy", content=b"{oops", headers=AUTH)
    assert answer.status_code == 400
    assert "the body is not JSON" in check(answer, "post")["error"]


def test_the_api_needs_its_token(api: TestClient) -> None:
    """Without the bearer token, or with a wrong one, reads and writes are refused."""
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert check(api.get("/api/environments", headers=headers)).get("error")
        answer = api.post("/api/environments/staging/deploy", headers=headers)
        assert answer.status_code == 401
        assert "DEPLOY_PIPELINE_API_TOKEN" in check(answer, "post")["error"]


def test_without_a_token_the_write_api_is_off(make_receiver: ReceiverFactory) -> None:
    """A receiver with no API token keeps its reads open (DESIGN.md §6) and refuses writes,
    saying how to turn them on."""
    with serving(make_receiver(PIPELINE, workers=1)) as client:
        assert check(client.get("/api/environments"))["environments"]
        answer = client.post("/api/environments/staging/delete")
        assert answer.status_code == 403
        assert "set DEPLOY_PIPELINE_API_TOKEN" in check(answer, "post")["error"]


HUGE = "1" + "0" * 40  # beyond any integer column


def test_a_run_id_no_database_holds_is_404(api: TestClient) -> None:
    """A run id of 41 digits is 404 "no run", for the run and for its event stream."""
    for path in (f"/api/runs/{HUGE}", f"/api/runs/{HUGE}/events"):
        answer = api.get(path, headers=AUTH)
        assert answer.status_code == 404
        assert answer.json()["error"].startswith("no run 10000")


def raw_get(client: TestClient, path: str, headers: dict[str, bytes]) -> httpx2.Response:
    """A GET whose header bytes reach the app as they are (TestClient re-encodes them as
    UTF-8, so a lone latin-1 `\\xb2` could not be sent through it)."""

    async def get() -> httpx2.Response:
        transport = httpx2.ASGITransport(app=client.app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://receiver") as c:
            return await c.get(path, headers=headers)

    return asyncio.run(get())


@pytest.mark.parametrize("last", [b"\xb2", b"\xb9\xb3", b"-1", HUGE.encode()])  # ², ¹³ in latin-1
def test_a_last_event_id_that_is_no_sequence_number_is_ignored(
    api: TestClient, last: bytes
) -> None:
    """A Last-Event-ID that is no ASCII number (`²`, which str.isdigit takes) or is beyond any
    sequence number is ignored: the stream replays the run from its first event."""
    done = finished(
        api, api.post("/api/environments/staging/deploy", headers=AUTH).json()["queued"]
    )
    events = check(api.get(f"/api/runs/{done['run_id']}", headers=AUTH))["events"]
    headers = {"Authorization": f"Bearer {TOKEN}".encode(), "Last-Event-ID": last}
    stream = raw_get(api, f"/api/runs/{done['run_id']}/events", headers)
    assert stream.status_code == 200
    assert stream.text.count("event: run-event") == len(events)


def test_the_environments_come_a_page_at_a_time_when_asked(api: TestClient) -> None:
    """With `limit`, `GET /api/environments` answers a page and the path of the next one, the
    file's environments and clones first, then previews newest first, every environment once
    however the pages are cut; without parameters it is the whole list, as before, and a bad
    `limit` or `cursor` is a 400 that says what is right."""
    for name in ("demo-a", "demo-b"):
        check(
            api.post("/api/environments/staging/clone", json={"name": name}, headers=AUTH), "post"
        )
    for number in (3, 12, 7):
        deliver = payload("pull_request", "opened", number=number)
        body = json.dumps(deliver).encode()
        queued = api.post(
            "/webhooks/github", content=body, headers=signed(body, "pull_request")
        ).json()["queued"]
        assert finished(api, queued)["result"] == "succeeded"
    whole = check(api.get("/api/environments", headers=AUTH))
    assert set(whole) == {"environments"} and len(whole["environments"]) == 6

    pages, path = [], "/api/environments?limit=4"
    while path:
        answer = check(api.get(path, headers=AUTH))
        assert answer["total"] == 6
        pages.append([e["name"] for e in answer["environments"]])
        path = answer["next"]
    assert pages == [["demo-a", "demo-b", "staging", "pr-12"], ["pr-7", "pr-3"]]

    bad = api.get("/api/environments?limit=0", headers=AUTH)
    assert check(bad)["error"] == "limit is a whole number from 1 to 200, got '0'"
    bad = api.get("/api/environments?cursor=page-2", headers=AUTH)
    assert check(bad)["error"] == (
        "cursor 'page-2' is not one this receiver gave: use the `next` of an answer"
    )


@pytest.mark.parametrize("number", ["²", "1" * 5000])
def test_a_limit_or_cursor_that_int_cannot_read_is_a_400_not_a_500(
    api: TestClient, number: str
) -> None:
    """`²` (a digit to str.isdigit, not to int) and a number of 5,000 digits (over what int()
    reads), as a `limit` or in a `cursor`, are a 400 that says what is right, not an internal
    error."""
    bad = api.get("/api/environments", params={"limit": number}, headers=AUTH)
    assert check(bad)["error"] == f"limit is a whole number from 1 to 200, got {number[:20]!r}"
    cursor = f"1.-{number}.pr-2"
    bad = api.get("/api/environments", params={"cursor": cursor}, headers=AUTH)
    assert check(bad)["error"] == (
        f"cursor {cursor[:40]!r} is not one this receiver gave: use the `next` of an answer"
    )
