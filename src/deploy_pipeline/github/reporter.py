"""GitHub as its users see a run: a commit status per environment, a GitHub Deployment with its
statuses, and one PR comment per preview, edited in place.

A subscriber to the runner's events: calls go out from a thread of its own, so a slow or failing
GitHub never slows or fails a deploy (it is logged, and the log says which permission is missing).
A GitHub out of reach is tried again with backoff, a bounded number of times, then given up.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from github import (
    Auth,
    Github,
    GithubException,
)

from deploy_pipeline.durations import whole
from deploy_pipeline.errors import GitHubError
from deploy_pipeline.events import Redactor
from deploy_pipeline.github.common import (
    API_VERSION,
    GitHubSettings,
    describe,
    post_or_edit_comment,
    retry_policy,
    unreachable,
)
from deploy_pipeline.model import Action, Event, Plan, RunPlan
from deploy_pipeline.reporting.markdown import (
    Progress,
    clip,
    preview_comment,
    service_rows,
    service_urls,
)
from deploy_pipeline.steps import RunResult, environment_url

MAX_BACKOFF = 30.0  # seconds between two tries at an unreachable GitHub, at most
# the actions that put images in place, so make a GitHub Deployment (promote and rollback
# deploy a release's images, DESIGN.md §10)
DEPLOYING: frozenset[Action] = frozenset({"deploy", "restart", "promote", "rollback"})


class GitHubReporter:
    """Follows one run: `start()`, then events (as a sink), then `finish(result)` and `close()`."""

    def __init__(
        self,
        settings: GitHubSettings,
        run_plan: RunPlan,
        action: Action,
        *,
        log: Callable[[str], None],
        redact: Redactor | None = None,
        cancelled: str = "failure",
    ) -> None:
        """`cancelled`: the Deployment state of a cancelled run: `failure` for a workflow run
        cancelled halfway, `inactive` for a preview's run a newer push superseded."""
        self.settings, self.run_plan, self.action = settings, run_plan, action
        self.cancelled = cancelled
        self.log, self.redact = log, redact or Redactor()
        self.tries = max(1, settings.retries)  # of an update while GitHub is out of reach
        self.gh: Github | None = None  # made on the worker thread, with the token taken there
        self.plans: dict[str, Plan] = {p.environment.name: p for p in run_plan.plans}
        self.progress = Progress(run_plan)
        self.deployments: dict[str, Any] = {}
        self.latest: dict[str, str] = {}
        self.sent: dict[str, str] = {}
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.out_of_reach = False  # an update used up its tries: the others get one each
        self.settled = threading.Event()  # all sent, or GitHub is out of reach and retried
        self.worker = threading.Thread(target=self._work, name="github", daemon=True)
        self.worker.start()

    # --- what the run calls ----------------------------------------------------------------

    def start(self) -> None:
        for name, plan in self.plans.items():
            description = self.progress.description(name, self.action)
            self._do(f"set the commit status of {name}", self._status, name, "pending", description)
            if self.action in DEPLOYING:
                self._do(f"create a deployment of {name}", self._create_deployment, plan)

    def __call__(self, event: Event) -> None:
        with self.lock:
            changed = self.progress(event)
            name = event.environment
            if not changed or name is None or name not in self.plans:
                return
            self.latest[name] = self.progress.description(name, self.action)
        self._do(f"set the commit status of {name}", self._push_description, name)

    def finish(self, result: RunResult) -> None:
        rows = service_rows(result, self.run_plan)
        for name, plan in self.plans.items():
            status = result.environments.get(name, result.status)
            mine = [r for r in rows if r.environment == name]
            state = {"succeeded": "success", "failed": "failure"}.get(status, "error")
            failed = next((r for r in mine if r.status == "failed"), None)
            stopped = next((r for r in mine if r.status == "cancelled" and r.message), None)
            if status == "succeeded":
                text = f"{self.action} succeeded in {whole(result.duration)}"
            elif failed is not None:
                text = f"{failed.service} {failed.phase} failed: {failed.message}"
            elif stopped is not None:  # e.g. "superseded by 1a2b3c4", "the workflow run was…"
                why = stopped.message.removeprefix("not started: ")
                text = f"{self.action} cancelled: {why}"
            else:
                text = f"{self.action} {status}"
            self._do(
                f"set the commit status of {name}",
                self._status,
                name,
                state,
                self.redact(text),
            )
            public = [s for tp in plan.targets for sp in tp.stages for s in sp.services]
            url = environment_url(
                service_urls(mine, (p.service.name for p in public if p.service.public))
            )
            if self.action in DEPLOYING:
                deployment_state = {"succeeded": "success", "cancelled": self.cancelled}.get(
                    status, "failure"
                )
                self._do(
                    f"set the deployment status of {name}",
                    self._deployment_status,
                    name,
                    deployment_state,
                    url if status == "succeeded" else None,
                    self.redact(clip(text)),
                )
            if self.action == "delete" and status == "succeeded":
                self._do(f"mark the deployments of {name} inactive", self._deactivate, name)
            pr = plan.environment.pull_request
            if pr is not None:
                body = self.redact(
                    preview_comment(
                        name,
                        result,
                        self.run_plan,
                        action=self.action,
                        sha=self.settings.sha,
                        run_url=self.settings.run_url,
                    )
                )
                self._do(f"comment on pull request #{pr}", self._comment, pr, name, body)

    def close(self, timeout: float = 120.0) -> list[str]:
        """Wait for what is queued (at most `timeout` s); the problems met, already logged."""
        self.tasks.put(None)
        self.worker.join(timeout)
        if self.worker.is_alive():
            self._problem(f"GitHub: gave up waiting after {whole(timeout)}; some updates are lost")
        return list(self.problems)

    def detach(self, timeout: float = 120.0) -> bool:
        """Wait for what is queued while GitHub answers (at most `timeout` s); when GitHub is
        out of reach, return at once and leave the updates to this reporter's thread, which
        retries them with backoff and then ends. True when everything was sent."""
        self.tasks.put(None)
        self.settled.wait(timeout)
        return not self.worker.is_alive()

    @property
    def repo(self) -> Any:
        return self._client().get_repo(self.settings.repository)

    def _client(self) -> Github:
        """The client, made with the token on first use (on the worker thread)."""
        if self.gh is None:
            settings = self.settings
            token = settings.token or (settings.token_source() if settings.token_source else "")
            self.gh = Github(
                base_url=settings.api_url,
                auth=Auth.Token(token),
                retry=retry_policy(
                    settings.retries,
                    settings.backoff,
                    settings.secondary_rate_wait,
                    unreachable=False,  # retried here, with backoff, not inside one request
                ),
                timeout=15,
                seconds_between_requests=0,
                seconds_between_writes=settings.write_pause,
                lazy=True,
                api_version=API_VERSION,
            )
        return self.gh

    # --- the calls, on the worker thread ---------------------------------------------------

    def _do(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        def task() -> None:
            tries = 1 if self.out_of_reach else self.tries
            for attempt in range(1, tries + 1):
                try:
                    fn(*args)
                except (GithubException, requests.RequestException, GitHubError) as exc:
                    said = str(exc) if isinstance(exc, GitHubError) else None
                    said = said or describe(exc, what, app=self.settings.app)
                    if not unreachable(exc):
                        self._problem(said)
                        return
                    if attempt == tries:
                        self.out_of_reach = True
                        self._problem(f"{said} (tried {tries} times; not tried again)")
                        return
                    self.settled.set()  # nobody waits for GitHub while it is out of reach
                    time.sleep(min(self.settings.backoff * 2 ** (attempt - 1), MAX_BACKOFF))
                else:
                    self.out_of_reach = False
                    return

        self.tasks.put(task)

    def _work(self) -> None:
        try:
            while (task := self.tasks.get()) is not None:
                task()
        finally:
            if self.gh is not None:
                self.gh.close()
            self.settled.set()

    def _problem(self, message: str) -> None:
        message = self.redact(message)
        with self.lock:
            if message in self.problems:
                return  # said once is enough (a missing permission fails every update alike)
            self.problems.append(message)
        self.log(message)

    def _status(self, name: str, state: str, description: str) -> None:
        context = f"deploy-pipeline/{name}"
        commit = self.repo.get_commit(self.settings.sha)
        kwargs: dict[str, Any] = {"description": clip(description), "context": context}
        if self.settings.run_url:
            kwargs["target_url"] = self.settings.run_url
        commit.create_status(state, **kwargs)
        with self.lock:
            self.sent[name] = description

    def _push_description(self, name: str) -> None:
        with self.lock:
            text = self.latest.pop(name, None)
            if text is None or self.sent.get(name) == text:
                return  # a later event's update already went out
        self._status(name, "pending", text)

    def _create_deployment(self, plan: Plan) -> None:
        env = plan.environment
        deployment = self.repo.create_deployment(
            ref=self.settings.sha,
            environment=env.name,
            description=clip(f"deploy-pipeline {self.action} of {env.name}{_moved(plan)}"),
            auto_merge=False,
            required_contexts=[],
            transient_environment=env.pull_request is not None,
            production_environment=env.production,
            payload={
                "tool": "deploy-pipeline",
                "action": self.action,
                **({"source": plan.source} if plan.source else {}),
                **({"rolled_back_to": dict(plan.rolled_back_to)} if plan.rolled_back_to else {}),
            },
        )
        self.deployments[env.name] = deployment
        doing = {"promote": "promoting", "rollback": "rolling back"}.get(self.action, "deploying")
        self._post_deployment_status(deployment.url, "in_progress", None, doing)

    def _deployment_status(self, name: str, state: str, url: str | None, description: str) -> None:
        deployment = self.deployments.get(name)
        if deployment is None:
            return  # its creation failed, and said so
        self._post_deployment_status(deployment.url, state, url, description)

    def _post_deployment_status(
        self, deployment_url: str, state: str, url: str | None, description: str
    ) -> None:
        body: dict[str, Any] = {"state": state, "description": clip(description)}
        if self.settings.run_url:
            body["log_url"] = self.settings.run_url
        if url:
            body["environment_url"] = url
        # PyGithub's create_status has no log_url: the request is sent as GitHub documents it
        self._client().requester.requestJsonAndCheck(
            "POST", f"{deployment_url}/statuses", input=body
        )

    def _deactivate(self, name: str) -> None:
        for deployment in self.repo.get_deployments(environment=name):
            self._post_deployment_status(deployment.url, "inactive", None, "deleted")

    def _comment(self, number: int, name: str, body: str) -> None:
        post_or_edit_comment(self.repo, number, name, body)


def _moved(plan: Plan) -> str:
    """` from staging`, ` to v3`: what a promotion or a rollback moves (DESIGN.md §10), or
    nothing; a rollback restoring different releases on its targets names each."""
    if plan.source:
        return f" from {plan.source}"
    back = dict(plan.rolled_back_to)
    if not back:
        return ""
    if len(set(back.values())) == 1:
        return f" to v{next(iter(back.values()))}"
    return " to " + ", ".join(f"v{number} on {target}" for target, number in back.items())
