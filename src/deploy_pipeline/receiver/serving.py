"""`deploy-pipeline serve`: the receiver configured from the environment, under uvicorn, with
JSON-lines logs."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Mapping
from pathlib import Path

from deploy_pipeline.errors import UsageError
from deploy_pipeline.github import GitHubClient
from deploy_pipeline.receiver.housekeeping import RETENTION_DAYS, SWEEP_EVERY
from deploy_pipeline.receiver.http import create_app
from deploy_pipeline.receiver.service import Receiver, log


def from_environ(config: Path, environ: Mapping[str, str]) -> Receiver:
    """A receiver configured as `deploy-pipeline serve` documents it (README: run the receiver)."""
    return Receiver(
        config,
        secret=environ.get("DEPLOY_PIPELINE_WEBHOOK_SECRET", ""),
        github=GitHubClient.from_environ(environ),
        workers=_number(environ, "DEPLOY_PIPELINE_WORKERS", 2),
        api_token=environ.get("DEPLOY_PIPELINE_API_TOKEN") or None,
        public_url=environ.get("DEPLOY_PIPELINE_PUBLIC_URL") or None,
        sweep_every=_number(environ, "DEPLOY_PIPELINE_SWEEP_SECONDS", int(SWEEP_EVERY)),
        source=environ.get("DEPLOY_PIPELINE_SOURCE", "file"),
        retention_days=_number(environ, "DEPLOY_PIPELINE_RETENTION_DAYS", RETENTION_DAYS),
    )


def _number(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{name} is a whole number of at least 1, got {text!r}")
    return int(text)


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
        log.warning(
            "reporting to GitHub is off: set GITHUB_TOKEN, or GITHUB_APP_ID with "
            "GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_FILE), to turn it on"
        )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            receiver.stopping.set()  # open event streams end now: uvicorn waits for none of them
            await super().shutdown(sockets)

    app = create_app(receiver)
    Server(uvicorn.Config(app, host=host, port=port, log_config=None, log_level="info")).run()
