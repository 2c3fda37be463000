"""How the stand-in answers one request: a forced fault first, else routed by the description,
authenticated, permitted, checked, handled, and the answer itself checked against the description.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from tests.support.github_standin.description import DOCS, Description, Operation
from tests.support.github_standin.state import (
    PERMISSIONS,
    Answer,
    App,
    AppCall,
    AppHandler,
    Call,
    Fault,
    Handler,
    Recorded,
    Repo,
    Token,
    Violation,
)


class Answering:
    """The request path of `GitHubStandin`, which holds what is declared here."""

    description: Description
    requests: list[Recorded]
    violations: list[Violation]
    repos: dict[str, Repo]
    tokens: dict[str, Token]
    _faults: list[Fault]
    _lock: threading.Lock
    _handlers: dict[str, Handler]
    _app_handlers: dict[str, AppHandler]

    if TYPE_CHECKING:

        def _authenticate_app(self, authorization: str) -> App: ...  # Apps'

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """Answer one request: (status, headers, JSON body or None)."""
        split = urllib.parse.urlsplit(target)
        path, query = split.path, urllib.parse.parse_qs(split.query, keep_blank_values=True)
        body: Any = None
        malformed = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body, malformed = raw.decode(errors="replace"), True
        with self._lock:
            routed = self.description.route(method, path)
            op = routed[0] if routed else None
            status, out, payload = self._answer(
                method, path, query, headers, body, malformed, routed
            )
            out = {**self._common_headers(op), **out}
            self.requests.append(
                Recorded(
                    method, path, query, body, headers, status, op.operation_id if op else None
                )
            )
        return status, out, payload

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
        malformed: bool,
        routed: tuple[Operation, dict[str, str]] | None,
    ) -> tuple[int, dict[str, str], Any]:
        op = routed[0] if routed else None
        for fault in self._faults:
            if fault.matches(method, path):
                fault.hits += 1
                return fault.respond(op)
        try:
            if routed is None:
                self._violate(
                    "route", method, path, f"{method} {path} is not in GitHub's description"
                )
                raise Answer(404, "Not Found")
            status, payload, out = self._dispatch(
                method, path, query, headers, body, malformed, *routed
            )
        except Answer as answer:
            status, out = answer.status, answer.headers
            payload = {
                "message": answer.message,
                "documentation_url": op.docs_url if op else DOCS,
                "status": str(status),
            }
            if answer.errors is not None:
                payload["errors"] = answer.errors
        if op is not None:
            problems = self.description.response_errors(op, status, payload)
            if problems:
                message = (
                    f"the stand-in's {status} answer strays from the description: {problems[:3]}"
                )
                self._violate("response", method, path, message)
                return 500, {}, {"message": message, "documentation_url": DOCS, "status": "500"}
        return status, out, payload

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
        malformed: bool,
        op: Operation,
        params: dict[str, str],
    ) -> tuple[int, Any, dict[str, str]]:
        app_handler = self._app_handlers.get(op.operation_id)
        if app_handler is not None:  # authenticated as the app itself, by its JWT
            app = self._authenticate_app(headers.get("authorization", ""))
            coerced = self._checked(method, path, query, body, malformed, op, params)
            return app_handler(AppCall(op, path, params, coerced, body, app))
        handler = self._handlers.get(op.operation_id)
        if handler is None and "owner" not in params:
            raise self._unimplemented(method, path, op)
        token = self._authenticate(headers.get("authorization", ""))
        repo = self.repos.get(f"{params['owner']}/{params['repo']}".lower())
        if repo is None or not token.sees(repo.full_name):
            raise Answer(404, "Not Found")
        accepted = PERMISSIONS.get(op.operation_id)
        if accepted and not token.allows(accepted):
            raise _forbidden_answer(accepted)
        coerced = self._checked(method, path, query, body, malformed, op, params)
        if handler is None:
            raise self._unimplemented(method, path, op)
        return handler(Call(op, path, params, coerced, body, token, repo))

    def _checked(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        malformed: bool,
        op: Operation,
        params: dict[str, str],
    ) -> dict[str, Any]:
        """The query as its documented types, once path, query and body pass the description."""
        for parameter in op.parameters:
            value = params.get(parameter["name"], "0")
            if parameter["schema"].get("type") == "integer" and not value.isdigit():
                self._violate("request", method, path, f"{parameter['name']} {value!r} is no id")
                raise Answer(404, "Not Found")  # GitHub's router would not have matched
        if malformed:
            self._violate("request", method, path, f"{op.operation_id}: the body is not JSON")
            raise Answer(400, "Problems parsing JSON")
        coerced = _coerce_query(op, query)
        problems = self.description.query_errors(op, coerced)
        problems += self.description.request_errors(op, body)
        if problems:
            self._violate("request", method, path, f"{op.operation_id}: {' '.join(problems)}")
            raise Answer(422, "Invalid request.\n\n" + "\n".join(problems))
        return coerced

    def _unimplemented(self, method: str, path: str, op: Operation) -> Answer:
        self._violate("unimplemented", method, path, f"the stand-in lacks {op.operation_id}")
        return Answer(501, f"The GitHub stand-in does not implement {op.operation_id}")

    def _authenticate(self, authorization: str) -> Token:
        if not authorization:
            raise Answer(401, "Requires authentication")
        scheme, _, secret = authorization.partition(" ")
        token = self.tokens.get(secret.strip()) if scheme.lower() in ("token", "bearer") else None
        if token is None or token.expired(time.time()):
            raise Answer(401, "Bad credentials")
        return token

    def _violate(self, kind: str, method: str, path: str, message: str) -> None:
        self.violations.append(Violation(kind, method, path, message))

    def _common_headers(self, op: Operation | None) -> dict[str, str]:
        used = len(self.requests) + 1
        headers = {
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Request-Id": f"STANDIN:{used}",
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(max(5000 - used, 0)),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        }
        if op is not None and op.operation_id in PERMISSIONS:
            headers["X-Accepted-GitHub-Permissions"] = PERMISSIONS[op.operation_id]
        return headers


def _forbidden_answer(accepted: str) -> Answer:
    answer = Answer(403, "Resource not accessible by integration")
    answer.headers["X-Accepted-GitHub-Permissions"] = accepted
    return answer


def _coerce_query(op: Operation, query: dict[str, list[str]]) -> dict[str, Any]:
    """The query's documented parameters, as the types the description gives them."""
    out: dict[str, Any] = {}
    for parameter in op.parameters:
        name = parameter["name"]
        if parameter["in"] != "query" or name not in query:
            continue
        value: Any = query[name][-1]
        kind = parameter.get("schema", {}).get("type")
        if kind == "integer" and re.fullmatch(r"-?\d+", value):
            value = int(value)
        elif kind == "boolean" and value in ("true", "false"):
            value = value == "true"
        out[name] = value
    return out
