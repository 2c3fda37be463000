"""GitHub's REST API description (`fixtures/github-rest/`): its operations, the route a request
takes, and requests and answers checked against its schemas, with errors in GitHub's own words.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT7

from tests.support.paths import FIXTURES

DESCRIPTION = FIXTURES / "github-rest" / "openapi-subset.json"
DOCS = "https://docs.github.com/rest"

# "This resource is also available via a legacy route" (list-commit-statuses-for-ref's text);
# PyGithub's Commit.get_statuses() calls it.
LEGACY_ROUTES = {
    ("GET", "/repos/{owner}/{repo}/statuses/{sha}"): "repos/list-commit-statuses-for-ref"
}

_URN = "urn:github-rest"
_DATA_KEYS = frozenset({"example", "examples", "default", "enum", "const"})


@dataclass(frozen=True)
class Operation:
    """One operation of the description, with the pattern its path template matches."""

    method: str
    template: str
    source: str  # the template under `paths` that documents it (differs for a legacy route)
    operation_id: str
    spec: dict[str, Any]
    parameters: tuple[dict[str, Any], ...]
    pattern: re.Pattern[str]
    literals: int  # characters outside the parameters: the more, the more specific the route

    @property
    def docs_url(self) -> str:
        return str(self.spec.get("externalDocs", {}).get("url", DOCS))


class Description:
    """GitHub's OpenAPI 3.0 description: routes, request and response checks, canned examples."""

    def __init__(self, path: Path = DESCRIPTION) -> None:
        self.raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        schemas = _translate_nullable(self.raw)
        self._registry: Registry[Any] = Registry().with_resource(
            _URN, DRAFT7.create_resource(schemas)
        )
        self._validators: dict[str, Draft7Validator] = {}
        self.operations: list[Operation] = []
        for template, item in self.raw["paths"].items():
            for method, spec in item.items():
                if method != "parameters":
                    self.operations.append(
                        self._operation(method.upper(), template, template, spec)
                    )
        by_id = {op.operation_id: op for op in self.operations}
        for (method, template), operation_id in LEGACY_ROUTES.items():
            real = by_id[operation_id]
            self.operations.append(self._operation(method, template, real.source, real.spec))
        self.operations.sort(key=lambda op: -op.literals)

    def _operation(
        self, method: str, template: str, source: str, spec: dict[str, Any]
    ) -> Operation:
        parameters = tuple(self.resolve(p) for p in spec.get("parameters", []))
        greedy = {p["name"] for p in parameters if p.get("x-multi-segment")}
        regex, literals = "", 0
        for piece in re.split(r"(\{[^}]+\})", template):
            if piece.startswith("{"):
                name = piece[1:-1]
                regex += f"(?P<{name}>.+)" if name in greedy else f"(?P<{name}>[^/]+)"
            else:
                regex += re.escape(piece)
                literals += len(piece)
        pattern = re.compile(regex)
        return Operation(
            method, template, source, spec["operationId"], spec, parameters, pattern, literals
        )

    def resolve(self, node: Any) -> Any:
        """Follow a local `$ref` (once per level) to what it names."""
        while isinstance(node, dict) and "$ref" in node:
            node = self._at(node["$ref"].removeprefix("#/").split("/"))
        return node

    def _at(self, parts: Iterable[str]) -> Any:
        node: Any = self.raw
        for part in parts:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def route(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for op in self.operations:
            match = op.pattern.fullmatch(path) if op.method == method else None
            if match:
                return op, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
        return None

    def example(self, name: str) -> Any:
        return copy.deepcopy(self.raw["components"]["examples"][name]["value"])

    def _validator(self, *pointer: str) -> Draft7Validator:
        ref = f"{_URN}#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in pointer)
        if ref not in self._validators:
            self._validators[ref] = Draft7Validator({"$ref": ref}, registry=self._registry)
        return self._validators[ref]

    def request_errors(self, op: Operation, body: Any) -> list[str]:
        """What GitHub would say is wrong with this body ([] when nothing is)."""
        request = op.spec.get("requestBody") or {}
        content = request.get("content", {}).get("application/json", {})
        if "schema" not in content or (body is None and not request.get("required")):
            return []  # repos/get-content documents a body with examples but no schema
        pointer = ("paths", op.source, op.method.lower(), "requestBody", "content")
        validator = self._validator(*pointer, "application/json", "schema")
        return _messages(validator.iter_errors(body))

    def query_errors(self, op: Operation, query: dict[str, Any]) -> list[str]:
        errors: list[str] = []
        for parameter in op.parameters:
            name = parameter["name"]
            if parameter["in"] == "query" and name in query:
                schema = _translate_nullable(parameter.get("schema", {}))
                for e in Draft7Validator(schema).iter_errors(query[name]):
                    errors.append(_message(e, where=f"query/{name}"))
        return errors

    def response_errors(self, op: Operation, status: int, body: Any) -> list[str]:
        """How this answer strays from what the description documents ([] when it doesn't)."""
        response = op.spec["responses"].get(str(status))
        pointer: tuple[str, ...]
        if response is not None:
            if "$ref" in response:
                pointer = tuple(response["$ref"].removeprefix("#/").split("/"))
            else:
                pointer = ("paths", op.source, op.method.lower(), "responses", str(status))
            if "schema" not in self.resolve(response).get("content", {}).get(
                "application/json", {}
            ):
                return []  # documented without a JSON body (a 204, create-deployment's 409)
            pointer = (*pointer, "content", "application/json", "schema")
        elif status >= 400:
            pointer = ("components", "schemas", "basic-error")
        else:
            return [f"{status} is not a documented answer of {op.operation_id}"]
        errors = self._validator(*pointer).iter_errors(body)
        return [f"{_where(e.absolute_path)}: {e.message}" for e in errors]


@functools.cache
def description() -> Description:
    """The description, parsed once per test session."""
    return Description()


def _translate_nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema: null joins the types (and the enum)."""
    if isinstance(node, list):
        return [_translate_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):  # names here are not keywords
            out[key] = {name: _translate_nullable(schema) for name, schema in value.items()}
        else:
            out[key] = value if key in _DATA_KEYS else _translate_nullable(value)
    if out.pop("nullable", False) is not True:
        return out
    if "type" in out and "$ref" not in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [out, {"type": "null"}]}


def _where(path: Iterable[Any]) -> str:
    parts = [f"properties/{p}" if isinstance(p, str) else f"items/{p}" for p in path]
    return "/".join(parts) or "links/0/schema"  # GitHub's name for the whole body


def _show(value: Any) -> str:
    return "nil" if value is None else json.dumps(value)


def _messages(errors: Iterable[ValidationError]) -> list[str]:
    """Schema errors worded the way GitHub words them ("Invalid request.\\n\\n…")."""
    out: list[str] = []
    for e in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        if e.validator == "oneOf" and isinstance(e.schema, dict) and "discriminator" in e.schema:
            out.extend(_discriminated(e))
        else:
            out.append(_message(e))
    return out


def _discriminated(e: ValidationError) -> list[str]:
    """A oneOf with a discriminator: report the errors of the branch the discriminator picks."""
    prop = e.schema["discriminator"]["propertyName"]
    value = e.instance.get(prop) if isinstance(e.instance, dict) else None
    branches = e.schema["oneOf"]
    allowed = [v for b in branches for v in b.get("properties", {}).get(prop, {}).get("enum", [])]
    for index, branch in enumerate(branches):
        if value in branch.get("properties", {}).get(prop, {}).get("enum", []):
            picked = [c for c in e.context or [] if c.relative_schema_path[0] == index]
            return [_message(c) for c in picked] or [_message(e)]
    where = f"{_where(e.absolute_path)}/" if e.absolute_path else ""
    return [f"For '{where}properties/{prop}', {_show(value)} is not a member of {_show(allowed)}."]


def _message(e: ValidationError, where: str | None = None) -> str:
    where = where or _where(e.absolute_path)
    if e.validator == "required" and isinstance(e.instance, dict):
        missing = [name for name in e.validator_value if name not in e.instance]
        said = " ".join(f'"{name}" wasn\'t supplied.' for name in missing)
        return f"For '{where}', {said}" if e.absolute_path else said
    if e.validator == "enum":
        return f"For '{where}', {_show(e.instance)} is not a member of {_show(e.validator_value)}."
    if e.validator == "type":
        types = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        named = " or ".join(f"{'an' if t[0] in 'aeiou' else 'a'} {t}" for t in types)
        return f"For '{where}', {_show(e.instance)} is not {named}."
    return f"For '{where}', {e.message}."
