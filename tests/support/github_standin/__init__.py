"""A stand-in for GitHub's REST API: a real HTTP server on loopback that routes, checks and answers
requests by GitHub's own OpenAPI description (`fixtures/github-rest/`), keeps what it was sent and
behaves like GitHub for the operations the project calls, GitHub Apps and git over HTTP included.
Tests can make it fail on purpose.
"""

from tests.support.github_standin.apps import APP_PERMISSIONS
from tests.support.github_standin.description import (
    DESCRIPTION,
    DOCS,
    LEGACY_ROUTES,
    Description,
    Operation,
    description,
)
from tests.support.github_standin.server import BOT, REPO, TOKEN, GitHubStandin
from tests.support.github_standin.state import (
    PERMISSIONS,
    Answer,
    App,
    AppCall,
    Call,
    Fault,
    Handler,
    Installation,
    Pull,
    Recorded,
    Repo,
    Token,
    Violation,
)

__all__ = [
    "APP_PERMISSIONS",
    "BOT",
    "DESCRIPTION",
    "DOCS",
    "LEGACY_ROUTES",
    "PERMISSIONS",
    "REPO",
    "TOKEN",
    "Answer",
    "App",
    "AppCall",
    "Call",
    "Description",
    "Fault",
    "GitHubStandin",
    "Handler",
    "Installation",
    "Operation",
    "Pull",
    "Recorded",
    "Repo",
    "Token",
    "Violation",
    "description",
]
