"""Failures forced on purpose: any status, a missing permission, or GitHub's primary or secondary
rate limit, answered to the requests that match instead of what GitHub would answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from tests.support.github_standin.description import DOCS, Operation
from tests.support.github_standin.state import PERMISSIONS, Fault

_RATE_LIMITS = f"{DOCS}/using-the-rest-api/rate-limits-for-the-rest-api"


class Faults:
    """The fault methods of `GitHubStandin`; `handle` answers with a matching fault first."""

    _faults: list[Fault]
    _lock: threading.Lock

    def fail(
        self,
        method: str,
        path_glob: str,
        status: int,
        *,
        times: int | None = 1,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer matching requests (method or "*", fnmatch glob on the path) with `status`."""
        default = {
            "message": HTTPStatus(status).phrase,
            "documentation_url": DOCS,
            "status": str(status),
        }
        answer = (status, dict(headers or {}), default if body is None else body)
        return self._fault(method, path_glob, times, lambda op: answer)

    def deny(self, method: str, path_glob: str, *, times: int | None = None) -> Fault:
        """Answer as GitHub does when the token lacks the operation's permission."""
        return self._fault(method, path_glob, times, _forbidden)

    def rate_limit(
        self,
        method: str = "*",
        path_glob: str = "*",
        *,
        secondary: bool = False,
        times: int | None = 1,
        retry_after: int = 1,
        reset_in: int = 1,
        status: int = 403,
    ) -> Fault:
        """Answer as GitHub's primary rate limit (X-RateLimit-Remaining: 0 until the reset) or
        its secondary one (Retry-After seconds) does."""
        if secondary:
            message = (
                "You have exceeded a secondary rate limit. "
                "Please wait a few minutes before you try again."
            )
            url = f"{_RATE_LIMITS}#about-secondary-rate-limits"
            headers = {"Retry-After": str(retry_after)}
        else:
            message = "API rate limit exceeded for installation ID 1."
            url = _RATE_LIMITS
            reset = str(int(time.time()) + reset_in)
            headers = {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Used": "5000",
                "X-RateLimit-Reset": reset,
                "X-RateLimit-Resource": "core",
            }
        body = {"message": message, "documentation_url": url, "status": str(status)}
        return self._fault(method, path_glob, times, lambda op: (status, dict(headers), body))

    def _fault(
        self,
        method: str,
        glob: str,
        times: int | None,
        respond: Callable[[Operation | None], tuple[int, dict[str, str], Any]],
    ) -> Fault:
        fault = Fault(method.upper(), glob, times, respond)
        with self._lock:
            self._faults.append(fault)
        return fault


def _forbidden(op: Operation | None) -> tuple[int, dict[str, str], Any]:
    accepted = PERMISSIONS.get(op.operation_id, "") if op else ""
    body = {
        "message": "Resource not accessible by integration",
        "documentation_url": op.docs_url if op else DOCS,
        "status": "403",
    }
    return 403, {"X-Accepted-GitHub-Permissions": accepted}, body
