"""GitHub's objects as the stand-in renders them: the description's examples with their URLs on
this server and their ids, users, repository, contents and pull requests made to fit; paging.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.support.github_standin.description import Description
from tests.support.github_standin.state import Call, Pull, Repo

_EXAMPLE_REPOS = ("octocat/Hello-World", "octocat/example", "octokit/octokit.rb")


class Rendering:
    """Rendering from the description's examples, for `GitHubStandin`'s operations."""

    description: Description
    _ids: defaultdict[str, Iterator[int]]
    _users: dict[str, int]

    if TYPE_CHECKING:

        @property
        def base_url(self) -> str: ...

    def _example(self, name: str, repo: Repo | None, swap: Mapping[str, str] | None = None) -> Any:
        """An example with its URLs on this server, its repository `repo` and `swap` applied."""
        swaps = {"https://api.github.com": self.base_url, "http://api.github.com": self.base_url}
        swaps |= dict.fromkeys(_EXAMPLE_REPOS, repo.full_name) if repo else {}
        text = json.dumps(self.description.example(name))
        for old, new in (swaps | dict(swap or {})).items():
            text = text.replace(old, new)
        return json.loads(text)

    def _user(self, login: str, kind: str = "Bot") -> dict[str, Any]:
        user: dict[str, Any] = self._example("status", None)["creator"]
        user = json.loads(json.dumps(user).replace("octocat", login))
        uid = self._users.setdefault(login, 1000 + next(self._ids["user"]))
        user.update(id=uid, node_id=_node_id("User", uid), type=kind, site_admin=False)
        return user

    def _api(self, repo: Repo, rest: str = "") -> str:
        return f"{self.base_url}/repos/{repo.full_name}{rest}"

    def _repository(self, repo: Repo, example: dict[str, Any]) -> dict[str, Any]:
        example.update(
            id=repo.id,
            node_id=_node_id("Repository", repo.id),
            name=repo.name,
            full_name=repo.full_name,
            owner=self._user(repo.owner, "Organization"),
            private=repo.private,
            html_url=f"https://github.com/{repo.full_name}",
            url=self._api(repo),
        )
        return example

    def _content(
        self, repo: Repo, files: Mapping[str, bytes], path: str, ref: str, *, with_content: bool
    ) -> dict[str, Any]:
        is_file = path in files
        kind = "blob" if is_file else "tree"
        data = files.get(path, b"")
        sha = _made_up_sha(repo.full_name, path, data.decode(errors="replace"))
        entry: dict[str, Any] = {
            "type": "file" if is_file else "dir",
            "size": len(data),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": self._api(repo, f"/contents/{path}?ref={ref}"),
            "git_url": self._api(repo, f"/git/{'blobs' if is_file else 'trees'}/{sha}"),
            "html_url": f"https://github.com/{repo.full_name}/{kind}/{ref}/{path}",
            "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{path}"
            if is_file
            else None,
        }
        entry["_links"] = {"self": entry["url"], "git": entry["git_url"], "html": entry["html_url"]}
        if with_content:
            encoded = base64.b64encode(data).decode()
            lines = [encoded[i : i + 60] for i in range(0, len(encoded), 60)]  # GitHub wraps at 60
            entry.update(content="\n".join(lines) + "\n", encoding="base64")
        return entry

    def _pull(self, repo: Repo, pull: Pull, example: str) -> dict[str, Any]:
        old_sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
        found = self._example(example, repo, {"/1347": f"/{pull.number}", old_sha: pull.head_sha})
        out: dict[str, Any] = found[0] if isinstance(found, list) else found
        base_sha = repo.refs.get(pull.base_ref) or _made_up_sha(repo.full_name, pull.base_ref)
        for side, ref, sha in (
            ("head", pull.head_ref, pull.head_sha),
            ("base", pull.base_ref, base_sha),
        ):
            part = out[side]
            part.update(
                label=f"{repo.owner}:{ref}",
                ref=ref,
                sha=sha,
                user=self._user(repo.owner, "Organization"),
            )
            part["repo"] = self._repository(repo, part["repo"])
        out.update(
            id=pull.id,
            node_id=_node_id("PullRequest", pull.id),
            number=pull.number,
            state=pull.state,
            title=pull.title,
            body=pull.body,
            user=self._user("octocat", "User"),
            labels=[],
            milestone=None,
            assignee=None,
            assignees=[],
            requested_reviewers=[],
            requested_teams=[],
            draft=pull.draft,
            created_at=pull.created_at,
            updated_at=pull.created_at,
            closed_at=None,
            merged_at=None,
            merge_commit_sha=None,
            auto_merge=None,
        )
        if "merged" in out:
            out.update(merged=False, merged_by=None, mergeable=True, mergeable_state="clean")
        return out

    def _page(self, call: Call, items: list[Any]) -> tuple[int, Any, dict[str, str]]:
        """One page of a list, with GitHub's Link header when there are more."""
        per_page, page = _paging(call)
        last = max((len(items) + per_page - 1) // per_page, 1)
        headers = {}
        if last > 1:
            others = {k: v for k, v in call.query.items() if k not in ("page", "per_page")}

            def link(number: int, rel: str) -> str:
                query = urllib.parse.urlencode({**others, "per_page": per_page, "page": number})
                return f'<{self.base_url}{call.path}?{query}>; rel="{rel}"'

            links = [link(page - 1, "prev"), link(1, "first")] if page > 1 else []
            links += [link(page + 1, "next"), link(last, "last")] if page < last else []
            headers["Link"] = ", ".join(links)
        return 200, items[(page - 1) * per_page : page * per_page], headers


def _paging(call: Call) -> tuple[int, int]:
    return min(max(call.query.get("per_page", 30), 1), 100), max(call.query.get("page", 1), 1)


def _made_up_sha(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode(), usedforsecurity=False).hexdigest()


def _node_id(kind: str, key: object) -> str:
    return base64.b64encode(f"{len(kind):02d}:{kind}{key}".encode()).decode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
