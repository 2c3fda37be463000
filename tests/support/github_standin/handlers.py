"""GitHub's behaviour for each operation the stand-in implements (repositories, contents, commit
statuses, deployments, comments, pull requests); `GitHubStandin` routes to them by operation id.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tests.support.github_standin.rendering import Rendering, _node_id, _now, _paging
from tests.support.github_standin.state import Answer, Call, Repo

_SHA = re.compile(r"[0-9a-f]{40}")


class Handlers(Rendering):
    """The operations of `GitHubStandin`: each takes a checked `Call` and gives its answer."""

    if TYPE_CHECKING:

        def clone_url(self, repo: str | None = None) -> str: ...  # GitServer's

    def _get_repo(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo = call.repo
        out = self._repository(repo, self._example("full-repository-default-response", repo))
        for fork_only in ("parent", "source", "template_repository"):
            out.pop(fork_only, None)
        out.update(
            default_branch=repo.default_branch,
            clone_url=self.clone_url(repo.full_name),  # git over HTTP on this server
            fork=False,
            language=None,
            visibility="private" if repo.private else "public",
        )
        return 200, out, {}

    def _get_commit(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        sha = _resolve(call.repo, call.params["ref"])
        if sha is None:
            raise Answer(422, f"No commit found for SHA: {call.params['ref']}")
        example_sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
        out = self._example("commit", call.repo, {example_sha: sha})
        out.update(node_id=_node_id("Commit", sha), files=[])  # the example's files lack sha
        return 200, out, {}

    def _get_content(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, path = call.repo, call.params["path"].strip("/")
        ref = call.query.get("ref") or repo.default_branch
        sha = _resolve(repo, ref)
        if sha is None:
            raise Answer(404, f"No commit found for the ref {ref}")
        files = repo.trees.get(sha, repo.files)  # a commit made with git, else every ref's
        if path in files:
            return 200, self._content(repo, files, path, ref, with_content=True), {}
        inside = sorted(
            {p[len(path) + 1 :].split("/")[0] for p in files if p.startswith(f"{path}/")}
        )
        if not inside:
            raise Answer(404, "Not Found")
        return (
            200,
            [
                self._content(repo, files, f"{path}/{name}", ref, with_content=False)
                for name in inside
            ],
            {},
        )

    def _create_status(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, sha, body = call.repo, call.params["sha"], call.body
        if not _SHA.fullmatch(sha):
            raise Answer(422, f"No commit found for SHA: {sha}")
        context = body.get("context", "default")
        same = [s for s in repo.statuses.get(sha, []) if s["context"].lower() == context.lower()]
        if len(same) >= 1000:
            error = {
                "resource": "Status",
                "code": "custom",
                "field": "context",
                "message": "This SHA and context has reached the maximum number of statuses.",
            }
            raise Answer(422, "Validation Failed", [error])
        sid, now, creator = next(self._ids["status"]), _now(), self._user(call.token.login)
        out = self._example("status", repo)
        out.update(
            url=self._api(repo, f"/statuses/{sha}"),
            avatar_url=creator["avatar_url"],
            id=sid,
            node_id=_node_id("StatusContext", sid),
            state=body["state"],
            description=body.get("description"),
            target_url=body.get("target_url"),
            context=context,
            created_at=now,
            updated_at=now,
            creator=creator,
        )
        repo.statuses.setdefault(sha, []).append(out)
        return 201, out, {"Location": out["url"]}

    def _list_statuses(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        sha = _resolve(call.repo, call.params.get("ref") or call.params["sha"])
        found = call.repo.statuses.get(sha or "", [])
        return self._page(call, list(reversed(found)))  # newest first, as GitHub lists them

    def _combined_status(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo = call.repo
        sha = _resolve(repo, call.params["ref"])
        if sha is None:
            raise Answer(404, f"No commit found for SHA: {call.params['ref']}")
        latest = _latest_by_context(repo, sha)
        states = {s["state"] for s in latest.values()}
        if states & {"error", "failure"}:
            state = "failure"
        elif not latest or "pending" in states:
            state = "pending"
        else:
            state = "success"
        simple = [{k: v for k, v in s.items() if k != "creator"} for s in latest.values()]
        per_page, page = _paging(call)
        example = self._example("combined-commit-status", repo)
        out = {
            "state": state,
            "statuses": simple[(page - 1) * per_page : page * per_page],
            "sha": sha,
            "total_count": len(simple),
            "repository": self._repository(repo, example["repository"]),
            "commit_url": self._api(repo, f"/commits/{sha}"),
            "url": self._api(repo, f"/commits/{sha}/status"),
        }
        return 200, out, {}

    def _create_deployment(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, body = call.repo, call.body
        ref = body["ref"]
        sha = _resolve(repo, ref)
        if sha is None:
            raise Answer(422, f"No ref found for: {ref}")
        latest = _latest_by_context(repo, sha)
        required = (
            latest.keys()
            if body.get("required_contexts") is None
            else [c.lower() for c in body["required_contexts"]]
        )
        failing = [c for c in required if c not in latest or latest[c]["state"] != "success"]
        if failing:
            contexts = [
                {"context": c, "state": latest[c]["state"] if c in latest else "missing"}
                for c in failing
            ]
            error = {
                "contexts": contexts,
                "resource": "Deployment",
                "field": "required_contexts",
                "code": "invalid",
            }
            raise Answer(409, f"Conflict: Commit status checks failed for {ref}.", [error])
        did, now = next(self._ids["deployment"]), _now()
        environment = body.get("environment", "production")
        out = self._example("deployment", repo)
        out.update(
            url=self._api(repo, f"/deployments/{did}"),
            id=did,
            node_id=_node_id("Deployment", did),
            sha=sha,
            ref=ref,
            task=body.get("task", "deploy"),
            payload=body.get("payload", {}),
            original_environment=environment,
            environment=environment,
            description=body.get("description", ""),
            creator=self._user(call.token.login),
            created_at=now,
            updated_at=now,
            statuses_url=self._api(repo, f"/deployments/{did}/statuses"),
            repository_url=self._api(repo),
            transient_environment=body.get("transient_environment", False),
            production_environment=body.get("production_environment", environment == "production"),
        )
        repo.deployments[did] = out
        return 201, out, {}

    def _list_deployments(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        found = list(reversed(call.repo.deployments.values()))  # newest first
        for name in ("sha", "ref", "task", "environment"):
            if name in call.query:
                found = [d for d in found if d[name] == call.query[name]]
        return self._page(call, found)

    def _deployment(self, call: Call) -> dict[str, Any]:
        found = call.repo.deployments.get(int(call.params["deployment_id"]))
        if found is None:
            raise Answer(404, "Not Found")
        return found

    def _get_deployment(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        return 200, self._deployment(call), {}

    def _delete_deployment(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, deployment = call.repo, self._deployment(call)
        if len(repo.deployments) > 1 and _active(repo, deployment["id"]):
            raise Answer(422, _ACTIVE)
        del repo.deployments[deployment["id"]]
        repo.deployment_statuses.pop(deployment["id"], None)
        return 204, None, {}

    def _create_deployment_status(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, body, deployment = call.repo, call.body, self._deployment(call)
        description = body.get("description", "")
        if len(description) > 140:
            error = {
                "resource": "DeploymentStatus",
                "code": "custom",
                "field": "description",
                "message": "description is too long (maximum is 140 characters)",
            }
            raise Answer(422, "Validation Failed", [error])
        earlier = repo.deployment_statuses.get(deployment["id"], [])
        environment = body.get("environment") or (
            earlier[-1]["environment"] if earlier else deployment["environment"]
        )
        log_url = body.get("log_url") or body.get("target_url") or ""
        out = self._deployment_status(
            call,
            deployment,
            body["state"],
            description,
            environment,
            log_url,
            body.get("environment_url", ""),
        )
        if body["state"] == "success" and body.get("auto_inactive", True):
            for other in list(repo.deployments.values()):
                prior = other["id"] < deployment["id"] and other["environment"] == environment
                lasting = not other["transient_environment"] and not other["production_environment"]
                if prior and lasting and _active(repo, other["id"]):
                    self._deployment_status(call, other, "inactive", "", environment, "", "")
        return 201, out, {"Location": out["url"]}

    def _deployment_status(
        self,
        call: Call,
        deployment: dict[str, Any],
        state: str,
        description: str,
        environment: str,
        log_url: str,
        environment_url: str,
    ) -> dict[str, Any]:
        repo, sid, now = call.repo, next(self._ids["deployment_status"]), _now()
        out: dict[str, Any] = self._example("deployment-status", repo)
        out.update(
            url=f"{deployment['url']}/statuses/{sid}",
            id=sid,
            node_id=_node_id("DeploymentStatus", sid),
            state=state,
            creator=self._user(call.token.login),
            description=description,
            environment=environment,
            target_url=log_url,
            log_url=log_url,
            environment_url=environment_url,
            created_at=now,
            updated_at=now,
            deployment_url=deployment["url"],
            repository_url=self._api(repo),
        )
        repo.deployment_statuses.setdefault(deployment["id"], []).append(out)
        deployment.update(environment=environment, updated_at=now)
        return out

    def _list_deployment_statuses(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        deployment = self._deployment(call)
        found = call.repo.deployment_statuses.get(deployment["id"], [])
        return self._page(call, list(reversed(found)))  # newest first

    def _issue(self, call: Call) -> int:
        number = int(call.params["issue_number"])
        if number not in call.repo.issues and number not in call.repo.pulls:
            raise Answer(404, "Not Found")
        return number

    def _create_comment(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, number = call.repo, self._issue(call)
        cid, now = next(self._ids["comment"]), _now()
        kind = "pull" if number in repo.pulls else "issues"
        out = self._example("issue-comment", repo)
        out.update(
            id=cid,
            node_id=_node_id("IssueComment", cid),
            url=self._api(repo, f"/issues/comments/{cid}"),
            html_url=f"https://github.com/{repo.full_name}/{kind}/{number}#issuecomment-{cid}",
            body=call.body["body"],
            user=self._user(call.token.login),
            created_at=now,
            updated_at=now,
            issue_url=self._api(repo, f"/issues/{number}"),
            author_association="NONE",
        )
        repo.comments[cid] = out
        return 201, out, {"Location": out["url"]}

    def _list_comments(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        number = self._issue(call)
        suffix = f"/issues/{number}"
        found = [c for c in call.repo.comments.values() if c["issue_url"].endswith(suffix)]
        if "since" in call.query:
            found = [c for c in found if c["updated_at"] >= call.query["since"]]
        return self._page(call, found)  # ascending id

    def _update_comment(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        found = call.repo.comments.get(int(call.params["comment_id"]))
        if found is None:
            raise Answer(404, "Not Found")
        found.update(body=call.body["body"], updated_at=_now())
        return 200, found, {}

    def _get_pull(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        pull = call.repo.pulls.get(int(call.params["pull_number"]))
        if pull is None:
            raise Answer(404, "Not Found")
        return 200, self._pull(call.repo, pull, "pull-request"), {}

    def _list_pulls(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        repo, query = call.repo, call.query
        found = [p for p in repo.pulls.values() if query.get("state", "open") in ("all", p.state)]
        if "head" in query:
            found = [p for p in found if f"{repo.owner}:{p.head_ref}" == query["head"]]
        if "base" in query:
            found = [p for p in found if p.base_ref == query["base"]]
        if query.get("direction", "desc") == "desc":
            found.reverse()
        return self._page(call, [self._pull(repo, p, "pull-request-simple-items") for p in found])


_ACTIVE = (  # GitHub's words, though its description says "the repository's only deployment"
    "We cannot delete an active deployment unless it is the only deployment in a given environment."
)


def _resolve(repo: Repo, ref: str) -> str | None:
    """The commit a SHA, branch or tag (also as heads/…, tags/…, refs/…) names."""
    if _SHA.fullmatch(ref):
        return ref
    name = ref.removeprefix("refs/").removeprefix("heads/").removeprefix("tags/")
    return repo.refs.get(name)


def _latest_by_context(repo: Repo, sha: str) -> dict[str, dict[str, Any]]:
    """Each context's latest status (contexts are case-insensitive)."""
    latest: dict[str, dict[str, Any]] = {}
    for status in repo.statuses.get(sha, []):
        latest[status["context"].lower()] = status
    return latest


def _active(repo: Repo, deployment_id: int) -> bool:
    """A deployment is active while its latest status is `success`."""
    found = repo.deployment_statuses.get(deployment_id)
    return bool(found) and found[-1]["state"] == "success"  # type: ignore[index]
