"""`deploy-pipeline serve`: the receiver configured from the environment, under uvicorn, with
JSON-lines logs."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Mapping
from pathlib import Path

from deploy_pipeline.github import GitHubClient
from deploy_pipeline.receiver.housekeeping import RETENTION_DAYS, SWEEP_EVERY
from deploy_pipeline.receiver.http import Uploads, create_app
from deploy_pipeline.receiver.service import Receiver, log
from deploy_pipeline.settings import seconds, whole
from deploy_pipeline.store.queue import lease_of
from deploy_pipeline.store.state import lock_ttl


def from_environ(config: Path, environ: Mapping[str, str]) -> Receiver:
    """A receiver configured as `deploy-pipeline serve` documents it (README: run the receiver);
    UsageError, naming the variable, for a value out of its range."""
    lock_ttl(environ)  # read by each run: a bad value stops the start, not every run
    return Receiver(
        config,
        secret=environ.get("DEPLOY_PIPELINE_WEBHOOK_SECRET", ""),
        github=GitHubClient.from_environ(environ),
        workers=whole(environ, "DEPLOY_PIPELINE_WORKERS", 2, 1, 64),
        api_token=environ.get("DEPLOY_PIPELINE_API_TOKEN") or None,
        public_url=environ.get("DEPLOY_PIPELINE_PUBLIC_URL") or None,
        sweep_every=whole(
            environ, "DEPLOY_PIPELINE_SWEEP_SECONDS", int(SWEEP_EVERY), 1, 7 * 24 * 3600
        ),
        source=environ.get("DEPLOY_PIPELINE_SOURCE", "file"),
        lease=lease_of(environ),
        repository=environ.get("DEPLOY_PIPELINE_REPOSITORY", "").strip() or None,
        retention_days=whole(environ, "DEPLOY_PIPELINE_RETENTION_DAYS", RETENTION_DAYS, 1, 36500),
    )


def uploads_from_environ(environ: Mapping[str, str]) -> Uploads:
    """How webhook bodies are read: DEPLOY_PIPELINE_UPLOADS at once, each within
    DEPLOY_PIPELINE_READ_SECONDS."""
    return Uploads(
        limit=whole(environ, "DEPLOY_PIPELINE_UPLOADS", Uploads.limit, 1, 1024),
        seconds=seconds(environ, "DEPLOY_PIPELINE_READ_SECONDS", Uploads.seconds, 0.5, 600),
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
    uploads = uploads_from_environ(environ)
    receiver = from_environ(config, environ)
    if receiver.github is None:
        log.warning(
            "reporting to GitHub is off: set GITHUB_TOKEN, or GITHUB_APP_ID with "
            "GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_FILE), to turn it on"
        )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            receiver.stopping.set()  # open event streams end now: uvicorn waits for none of them
            await super().shutdown(sockets)

    app = create_app(receiver, uploads)
    Server(uvicorn.Config(app, host=host, port=port, log_config=None, log_level="info")).run()
