"""The OpenAPI 3.1 description of the receiver's HTTP API, served at `GET /api/openapi.json`.

Tests check every answer the API gives against it, so it says what the receiver does.
"""

from __future__ import annotations

from typing import Any

_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _answer("A problem, said in words", _ref("Error"))
_AUTH = {"401": _answer("A bearer token is needed (DEPLOY_PIPELINE_API_TOKEN)", _ref("Error"))}
_WRITE_AUTH = {
    **_AUTH,
    "403": _answer("The write API is off: the receiver has no API token", _ref("Error")),
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_STATUS = {
    "type": "string",
    "description": "deploying, deployed, failed, stopped, deleting, not deployed…",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Environment": {
        "type": "object",
        "required": ["name", "source", "skipped", "pull_request", "status"],
        "properties": {
            "name": {"type": "string"},
            "source": _NULLABLE_STR,
            "targets": {"type": "array", "items": {"type": "string"}},
            "skipped": {"type": "array", "items": {"type": "string"}},
            "pull_request": _NULLABLE_INT,
            "status": _STATUS,
            "last_run": _NULLABLE_INT,
        },
    },
    "Service": {
        "type": "object",
        "required": ["name", "type", "status", "skipped"],
        "properties": {
            "name": {"type": "string"},
            "type": {"type": "string"},
            "status": {"type": "string"},
            "skipped": {"type": "boolean"},
            "url": _NULLABLE_STR,
            "waiting": _NULLABLE_STR,
            "message": _NULLABLE_STR,
            "elapsed": {
                "type": ["number", "null"],
                "description": "seconds in the step under way, or the last step's duration",
            },
            "run": {**_NULLABLE_INT, "description": "the run this card comes from"},
            "targets": {
                "type": "array",
                "description": "the service on each target; the card shows the most urgent",
                "items": {
                    "type": "object",
                    "required": ["name", "status"],
                    "properties": {
                        "name": {"type": "string"},
                        "status": {"type": "string"},
                        "url": _NULLABLE_STR,
                        "waiting": _NULLABLE_STR,
                    },
                },
            },
        },
    },
    "EnvironmentDetail": {
        "allOf": [
            _ref("Environment"),
            {
                "type": "object",
                "required": ["stages"],
                "properties": {
                    "pull_request_url": _NULLABLE_STR,
                    "pull_request_title": _NULLABLE_STR,
                    "branch": _NULLABLE_STR,
                    "repository": _NULLABLE_STR,
                    "sha": _NULLABLE_STR,
                    "url": _NULLABLE_STR,
                    "run": {
                        "type": ["object", "null"],
                        "description": "the latest run",
                        "properties": {
                            "id": {"type": "integer"},
                            "action": {"type": "string"},
                            "status": {"type": "string"},
                            "started_at": {"type": "number"},
                            "finished_at": {"type": ["number", "null"]},
                        },
                    },
                    "stages": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "services"],
                            "properties": {
                                "name": {"type": "string"},
                                "services": {"type": "array", "items": _ref("Service")},
                            },
                        },
                    },
                    "releases": {
                        "type": "object",
                        "description": "Its releases as the status page shows them (all of "
                        "them: GET …/releases)",
                        "required": ["current", "recent"],
                        "properties": {
                            "current": {
                                "type": "array",
                                "description": "The latest on each target, newest first; "
                                "empty before the first",
                                "items": _ref("ReleaseBrief"),
                            },
                            "recent": {
                                "type": "array",
                                "description": "The last 5, newest first",
                                "items": _ref("ReleaseBrief"),
                            },
                        },
                    },
                },
            },
        ]
    },
    "ReleaseService": {
        "type": "object",
        "description": "A service as a release has it: its image by digest and its settings",
        "required": ["image", "target"],
        "properties": {
            "image": {"type": "string", "description": "REPO@sha256:…, or sha256:… (no registry)"},
            "target": {"type": "string"},
            "env": {
                "type": "object",
                "description": "its resolved `env`, without secrets",
                "additionalProperties": {"type": "string"},
            },
            "replicas": {"type": "integer"},
        },
    },
    "Release": {
        "type": "object",
        "description": "A release (DESIGN.md §9), or a deploy that failed and made none "
        "(`status: failed`, `id: null`, no `services`)",
        "required": [
            "id",
            "run",
            "action",
            "status",
            "finished",
            "commit",
            "source",
            "rolled_back_to",
        ],
        "properties": {
            "id": {**_NULLABLE_INT, "description": "its number in the environment: v1, v2…"},
            "run": _NULLABLE_INT,
            "action": {"type": "string", "enum": ["deploy", "promote", "rollback"]},
            "status": {"type": "string", "enum": ["succeeded", "failed"]},
            "finished": {**_NULLABLE_STR, "description": "2026-12-07T15:40:12Z"},
            "commit": _NULLABLE_STR,
            "source": {**_NULLABLE_STR, "description": "the environment a promotion took"},
            "rolled_back_to": {**_NULLABLE_INT, "description": "the release a rollback restored"},
            "services": {"type": "object", "additionalProperties": _ref("ReleaseService")},
        },
    },
    "ReleaseBrief": {
        "type": "object",
        "description": "A release without its settings",
        "required": [
            "id",
            "action",
            "source",
            "rolled_back_to",
            "finished",
            "commit",
            "target",
            "images",
        ],
        "properties": {
            "id": {"type": "integer"},
            "action": {"type": "string", "enum": ["deploy", "promote", "rollback"]},
            "source": _NULLABLE_STR,
            "rolled_back_to": _NULLABLE_INT,
            "finished": {"type": "string", "description": "2026-12-07T15:40:12Z"},
            "commit": _NULLABLE_STR,
            "target": {"type": "string"},
            "images": {
                "type": "object",
                "description": "service → image by digest",
                "additionalProperties": {"type": "string"},
            },
        },
    },
    "Event": {
        "type": "object",
        "description": "One step of a run, as `deploy --events jsonl` prints it (DESIGN.md §5); "
        "the last, `phase: run`, has no target, stage or service",
        "required": ["ts", "environment", "target", "stage", "service", "phase", "status"],
        "properties": {
            "ts": {"type": "number"},
            "environment": {"type": "string"},
            "target": _NULLABLE_STR,
            "stage": _NULLABLE_STR,
            "service": _NULLABLE_STR,
            "phase": {"type": "string"},
            "status": {"type": "string"},
            "message": {"type": "string"},
            "url": {"type": "string"},
            "duration": {"type": "number"},
        },
    },
    "Run": {
        "type": "object",
        "required": ["id", "environments", "action", "services", "status", "events"],
        "properties": {
            "id": {"type": "integer"},
            "environments": {"type": "array", "items": {"type": "string"}},
            "action": {"type": "string"},
            "services": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "string"},
            "started_at": {"type": "number"},
            "finished_at": {"type": ["number", "null"]},
            "events": {"type": "array", "items": _ref("Event")},
        },
    },
    "Delivery": {
        "type": "object",
        "description": "A webhook delivery, or work asked through the API or by housekeeping",
        "required": ["id", "event", "action", "state"],
        "properties": {
            "id": {"type": "string"},
            "event": {"type": "string"},
            "action": {"type": "string"},
            "environment": _NULLABLE_STR,
            "pull_request": _NULLABLE_INT,
            "sha": _NULLABLE_STR,
            "reason": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["queued", "running", "done", "failed", "superseded", "ignored"],
            },
            "run_id": _NULLABLE_INT,
            "result": _NULLABLE_STR,
        },
    },
    "Queued": {
        "type": "object",
        "required": ["queued", "environment", "action", "services", "delivery"],
        "properties": {
            "queued": {"type": "string", "description": "the id to follow at `delivery`"},
            "environment": {"type": "string"},
            "action": {"type": "string", "enum": ["deploy", "restart", "stop", "delete"]},
            "services": {"type": "array", "items": {"type": "string"}},
            "delivery": {"type": "string"},
        },
    },
    "WebhookQueued": {
        "type": "object",
        "required": ["queued", "action", "environment", "duplicate"],
        "properties": {
            "queued": {"type": "string"},
            "action": {"type": "string"},
            "environment": _NULLABLE_STR,
            "duplicate": {"type": "boolean"},
        },
    },
}

PATHS: dict[str, Any] = {
    "/webhooks/github": {
        "post": {
            "summary": "A GitHub webhook delivery (DESIGN.md §6)",
            "description": "Read up to 25 MiB, the signature checked before anything is parsed, "
            "stored before the answer.",
            "parameters": [
                {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                for h in ("X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256")
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "202": _answer(
                    "Stored and queued (also for a repeated delivery id)", _ref("WebhookQueued")
                ),
                "200": _answer(
                    "An event that asks for nothing (ping, other events, another repository's, "
                    "a replay of an older one)",
                    {
                        "type": "object",
                        "required": ["ignored"],
                        "properties": {"ignored": {"type": "string"}},
                    },
                ),
                "400": _answer(
                    "The body is not JSON, or lacks what a preview needs", _ref("Error")
                ),
                "401": _answer("A missing or wrong signature", _ref("Error")),
                "408": _answer(
                    "The body did not arrive within DEPLOY_PIPELINE_READ_SECONDS", _ref("Error")
                ),
                "413": _answer("Over 25 MiB", _ref("Error")),
                "503": _answer(
                    "DEPLOY_PIPELINE_UPLOADS bodies are being read already (Retry-After)",
                    _ref("Error"),
                ),
            },
        }
    },
    "/healthz": {"get": {"summary": "The process answers", "responses": {"200": _answer("ok")}}},
    "/readyz": {
        "get": {
            "summary": "The store is reachable and every worker runs",
            "responses": {
                "200": _answer("ready"),
                "503": _answer("store unreachable, or workers stopped (named in `error`)"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/api/environments": {
        "get": {
            "summary": "Every environment: the file's, clones and previews (a page at a time "
            "with `limit` or `cursor`)",
            "security": [{"bearer": []}],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "Environments on a page (the file's and clones first, then "
                    "previews, newest pull request first); 50 when only `cursor` is given",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "description": "Where the page starts: from the `next` of the page before",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": _answer(
                    "The environments; with `limit` or `cursor`, one page of them",
                    {
                        "type": "object",
                        "required": ["environments"],
                        "properties": {
                            "environments": {"type": "array", "items": _ref("Environment")},
                            "next": {
                                "type": ["string", "null"],
                                "description": "The path of the next page; null on the last",
                            },
                            "total": {
                                "type": "integer",
                                "description": "How many environments there are in all",
                            },
                        },
                    },
                ),
                "400": _answer("A `limit` or `cursor` that is not one", _ref("Error")),
                **_AUTH,
            },
        }
    },
    "/api/environments/{name}": {
        "get": {
            "summary": "One environment, as its stages with their services' cards",
            "security": [{"bearer": []}],
            "parameters": [_NAME],
            "responses": {
                "200": _answer("The environment", _ref("EnvironmentDetail")),
                "404": _ERROR,
                **_AUTH,
            },
        }
    },
    "/api/environments/{name}/releases": {
        "get": {
            "summary": "The environment's releases and failed deploys, newest first, as "
            "`deploy-pipeline history --format json` gives them (DESIGN.md §10)",
            "security": [{"bearer": []}],
            "parameters": [
                _NAME,
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "At most this many, as `history --limit` (default: 20)",
                    "schema": {"type": "integer", "minimum": 1},
                },
            ],
            "responses": {
                "200": _answer(
                    "The history",
                    {
                        "type": "object",
                        "required": ["environment", "releases"],
                        "properties": {
                            "environment": {"type": "string"},
                            "releases": {"type": "array", "items": _ref("Release")},
                        },
                    },
                ),
                "400": _answer("A `limit` that is not a whole number from 1 up", _ref("Error")),
                "404": _answer("No environment of that name", _ref("Error")),
                **_AUTH,
            },
        }
    },
    "/api/environments/{name}/clone": {
        "post": {
            "summary": "A new environment cloned from this one (its skipped set copied)",
            "security": [{"bearer": []}],
            "parameters": [_NAME],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": {
                "201": _answer(
                    "Made (not deployed: POST …/deploy for that)",
                    {
                        "type": "object",
                        "required": ["environment"],
                        "properties": {"environment": _ref("Environment")},
                    },
                ),
                "400": _ERROR,
                "404": _ERROR,
                "409": _ERROR,
                **_WRITE_AUTH,
            },
        }
    },
    "/api/environments/{name}/{action}": {
        "post": {
            "summary": "Deploy, restart, stop or delete an environment, or some of its services",
            "description": "Queued like a webhook delivery: runs of one environment never "
            "overlap. Follow `delivery` for the run id, then the run's events.",
            "security": [{"bearer": []}],
            "parameters": [
                _NAME,
                {
                    "name": "action",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ["deploy", "restart", "stop", "delete"]},
                },
            ],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "services": {"type": "array", "items": {"type": "string"}}
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": _answer("Queued", _ref("Queued")),
                "400": _ERROR,
                "404": _ERROR,
                **_WRITE_AUTH,
            },
        }
    },
    "/api/runs/{id}": {
        "get": {
            "summary": "A run with its events",
            "security": [{"bearer": []}],
            "parameters": [_ID],
            "responses": {"200": _answer("The run", _ref("Run")), "404": _ERROR, **_AUTH},
        }
    },
    "/api/runs/{id}/events": {
        "get": {
            "summary": "A run's events as Server-Sent Events, live until it ends",
            "description": "Each event is `event: run-event`, `id: <seq>`, `data: <Event JSON>`; "
            'the stream ends with `event: end`, `data: {"status": …}`. Send `Last-Event-ID` to '
            "resume.",
            "security": [{"bearer": []}],
            "parameters": [_ID],
            "responses": {
                "200": {
                    "description": "The stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "404": _ERROR,
                **_AUTH,
            },
        }
    },
    "/api/deliveries/{id}": {
        "get": {
            "summary": "A delivery (or API/housekeeping work) and the run it started",
            "security": [{"bearer": []}],
            "parameters": [_ID],
            "responses": {"200": _answer("The delivery", _ref("Delivery")), "404": _ERROR, **_AUTH},
        }
    },
    "/api/openapi.json": {
        "get": {"summary": "This description", "responses": {"200": _answer("OpenAPI 3.1")}}
    },
}

DESCRIPTION: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "deploy-pipeline receiver",
        "version": "1",
        "description": "Preview environments for pull requests, and the environments' API. "
        "Send `Authorization: Bearer <DEPLOY_PIPELINE_API_TOKEN>` to /api routes when the "
        "receiver has a token; write routes need one.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}
