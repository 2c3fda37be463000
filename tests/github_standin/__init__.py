"""A stand-in for GitHub's REST API: a real HTTP server on loopback that routes, checks and answers
requests by GitHub's own OpenAPI description (`fixtures/github-rest/`), keeps what it was sent and
behaves like GitHub for the operations the project calls. Tests can make it fail on purpose.
"""

from tests.github_standin.description import (
    DESCRIPTION,
    DOCS,
    LEGACY_ROUTES,
    Description,
    Operation,
    description,
)
from tests.github_standin.server import BOT, REPO, TOKEN, GitHubStandin
from tests.github_standin.state import (
    PERMISSIONS,
    Answer,
    Call,
    Fault,
    Handler,
    Pull,
    Recorded,
    Repo,
    Token,
    Violation,
)

__all__ = [
    "BOT",
    "DESCRIPTION",
    "DOCS",
    "LEGACY_ROUTES",
    "PERMISSIONS",
    "REPO",
    "TOKEN",
    "Answer",
    "Call",
    "Description",
    "Fault",
    "GitHubStandin",
    "Handler",
    "Operation",
    "Pull",
    "Recorded",
    "Repo",
    "Token",
    "Violation",
    "description",
]
