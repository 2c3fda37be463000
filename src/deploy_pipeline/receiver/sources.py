"""Where a run's pipeline file comes from: the receiver's own `-f FILE`, or with
DEPLOY_PIPELINE_SOURCE=pull-request the pull request's head, read through GitHub's API with its
build contexts fetched into the preview's checkout. What a run may reach is always `-f FILE`'s
(see trust.py): a pull request's file is run trusted by the receiver's.
"""

from __future__ import annotations

from pathlib import Path

from deploy_pipeline.errors import UsageError
from deploy_pipeline.github import GitHubClient
from deploy_pipeline.model import Action
from deploy_pipeline.receiver import checkout
from deploy_pipeline.store.queue import Job

SOURCES = ("file", "pull-request")
PIPELINE_FILE = ".deploy-pipeline.yml"


class Sources:
    """The pipeline files of the receiver's runs, and the checkouts they are kept in beside the
    state database (`checkouts/<environment>`)."""

    def __init__(
        self, config: Path, *, state: Path, source: str, github: GitHubClient | None
    ) -> None:
        if source not in SOURCES:
            raise UsageError(
                f"DEPLOY_PIPELINE_SOURCE is one of {', '.join(SOURCES)}, got {source!r}"
            )
        if source == "pull-request" and github is None:
            raise UsageError(
                "DEPLOY_PIPELINE_SOURCE=pull-request reads each pull request's pipeline file "
                "from GitHub: set GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY"
            )
        self.config, self.state, self.source, self.github = config, state, source, github

    def checkout_of(self, environment: str) -> Path:
        return self.state.parent / "checkouts" / environment

    def config_of(self, environment: str) -> Path:
        """The pipeline file an environment last ran: its pull request's, fetched for its last
        deploy (DEPLOY_PIPELINE_SOURCE=pull-request), else `-f FILE`."""
        kept = self.checkout_of(environment) / PIPELINE_FILE
        return kept if self.source == "pull-request" and kept.exists() else self.config

    def trusted_for(self, config: Path) -> Path | None:
        """The file that decides what a run of `config` may reach: `-f FILE` when `config` is a
        pull request's (see trust.py), else None (it is `-f FILE` itself)."""
        return None if config == self.config else self.config

    def pipeline_for(self, job: Job, action: Action) -> Path:
        """The pipeline file a job runs: `-f FILE`, or with DEPLOY_PIPELINE_SOURCE=pull-request
        the PR head's, read through the API, with its build contexts fetched (depth 1)."""
        repository = job.repository
        if self.source != "pull-request" or job.pull_request is None or self.github is None:
            return self.config
        if action != "deploy" or not job.sha or not repository:  # the last commit deployed
            return self.config_of(job.environment)
        dest = self.checkout_of(job.environment)
        text = self.github.pipeline_file(repository, job.sha, PIPELINE_FILE)
        if text is None:
            raise UsageError(
                f"{repository} has no {PIPELINE_FILE} at {job.sha[:7]}: nothing to deploy "
                f"for pull request #{job.pull_request}"
            )
        clone_url = self.github.clone_url(repository)
        checkout.fetch(clone_url, job.sha, self.github.token(repository), dest)
        (dest / PIPELINE_FILE).unlink(missing_ok=True)  # a committed link: not written through
        (dest / PIPELINE_FILE).write_text(text)  # what the API said is what runs
        return dest / PIPELINE_FILE

    def remove(self, environment: str) -> None:
        """Drop a deleted preview's checkout."""
        checkout.remove(self.checkout_of(environment))
