"""GitHub, the only place PyGithub is imported: `reporter` shows a run as commit statuses,
Deployments and one PR comment; `client` is the receiver's access (a token or a GitHub App):
installation tokens, the pipeline file at a commit, open pull requests, the clone URL."""

from deploy_pipeline.errors import GitHubError
from deploy_pipeline.github.client import GitHubApp, GitHubClient
from deploy_pipeline.github.common import GitHubSettings, describe, unreachable
from deploy_pipeline.github.reporter import GitHubReporter

__all__ = [
    "GitHubApp",
    "GitHubClient",
    "GitHubError",
    "GitHubReporter",
    "GitHubSettings",
    "describe",
    "unreachable",
]
