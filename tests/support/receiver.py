"""The webhook receiver in-process, as its tests set it up: a receiver of the test's pipeline file
that checks deliveries against SECRET and reports to the GitHub stand-in, served by Starlette's
TestClient with its workers running; deliveries sent to it and awaited until a worker is done."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from starlette.testclient import TestClient

from deploy_pipeline.github import GitHubClient
from deploy_pipeline.receiver import Receiver, create_app
from tests.support.eventually import eventually
from tests.support.github import standin_client
from tests.support.github_standin import App, GitHubStandin
from tests.support.webhooks import SECRET, signed

# Two stages on the simulated target; `search` is skipped in staging, and so in its previews.
PIPELINE = """
version: 1
stages: [data, apps]
targets:
  rehearse: {kind: simulated}
services:
  db: {type: database, image: postgres:16, port: 5432, stage: data}
  web: {type: container, image: nginx:1.27, port: 80, public: true, stage: apps}
  search: {type: container, image: search:1, stage: apps}
environments:
  staging: {target: rehearse, skip: [search]}
previews: {from: staging}
"""

R = TypeVar("R", bound=Receiver)


class ReceiverFactory:
    """Makes receivers of pipeline files the test writes (the `make_receiver` fixture)."""

    def __init__(self, write_config: Callable[[str], Path]) -> None:
        self.write_config = write_config

    def __call__(
        self,
        pipeline: str,
        *,
        standin: GitHubStandin | None = None,
        app: App | None = None,
        github: GitHubClient | None = None,
        kind: type[R] = Receiver,  # type: ignore[assignment]
        **options: Any,
    ) -> R:
        """A `kind` of receiver of `pipeline` (written as the test's `-f` file) checking
        deliveries against SECRET; it reports to `standin` (as the GitHub App `app` when given,
        else with its token), or to `github`, or nowhere. `options` go to the receiver."""
        if standin is not None:
            github = standin_client(standin, app)
        return kind(self.write_config(pipeline), secret=SECRET, github=github, **options)


@contextmanager
def serving(receiver: Receiver) -> Iterator[TestClient]:
    """The receiver's app in-process, its workers and housekeeping running until the end."""
    with TestClient(create_app(receiver)) as client:
        yield client


def deliver(
    client: TestClient, event: str, data: dict[str, Any], delivery: str | None = None
) -> Any:
    """Send `data` as a signed delivery of `event` (under the id `delivery`, else a new one)."""
    body = json.dumps(data).encode()
    return client.post("/webhooks/github", content=body, headers=signed(body, event, delivery))


def settled(client: TestClient, delivery: str, timeout: float = 30) -> dict[str, Any]:
    """The delivery once a worker has finished with it."""
    found: dict[str, Any] = eventually(
        lambda: client.get(f"/api/deliveries/{delivery}").json(),
        lambda found: found.get("state") not in ("queued", "running"),
        timeout=timeout,
        message=f"delivery {delivery} settling",
    )
    return found
