"""`deploy-pipeline serve`: the receiver configured from the environment, under uvicorn, with
JSON-lines logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from deploy_pipeline.receiver.http import create_app
from deploy_pipeline.receiver.service import GitHubAccess, Receiver, log


def from_environ(config: Path, environ: Mapping[str, str]) -> Receiver:
    """A receiver configured as `deploy-pipeline serve` documents it."""
    token = environ.get("GITHUB_TOKEN", "")
    github = None
    if token:
        github = GitHubAccess(
            token=token, api_url=environ.get("GITHUB_API_URL", "https://api.github.com")
        )
    return Receiver(
        config,
        secret=environ.get("DEPLOY_PIPELINE_WEBHOOK_SECRET", ""),
        github=github,
        workers=int(environ.get("DEPLOY_PIPELINE_WORKERS", "2")),
        api_token=environ.get("DEPLOY_PIPELINE_API_TOKEN") or None,
        public_url=environ.get("DEPLOY_PIPELINE_PUBLIC_URL") or None,
    )


class JsonLogs(logging.Formatter):
    """One JSON object per log line, carrying the delivery, PR, environment and run it is about."""

    FIELDS = ("delivery", "pr", "environment", "run")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def serve(config: Path, environ: Mapping[str, str], *, host: str, port: int) -> None:
    """Run the receiver under uvicorn until it is stopped (Ctrl-C, SIGTERM); logs are JSON
    lines on stderr, uvicorn's included."""
    import uvicorn

    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogs())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    receiver = from_environ(config, environ)
    if receiver.github is None:
        log.warning("reporting to GitHub is off: set GITHUB_TOKEN to turn it on")
    uvicorn.run(create_app(receiver), host=host, port=port, log_config=None, log_level="info")
