"""The file's shape: the top mapping and its `version:`, then pydantic's checks (`schema`) in the
project's words, with a "did you mean" for an unknown key. Every shape problem is reported, and
what is well formed is kept, so that the meaning of the rest can be checked in the same pass."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from deploy_pipeline import schema
from deploy_pipeline.config.problems import SECTIONS, Loc, Problems, describe, quote


def check_shape(data: Any, problems: Problems) -> schema.PipelineModel | None:
    """The pipeline model of a file's data, or of what is well formed in it (None when too little
    is); the shape problems go to `problems`, and raise at once for no mapping or no version 1."""
    if not isinstance(data, dict):
        problems.error(
            (), f"expected a mapping at the top (version:, services:, …), got {describe(data)}"
        )
        problems.raise_if_any()
    version = data.get("version")
    if type(version) is not int or version != 1:  # True and 1.0 are not version 1
        if "version" not in data:
            problems.error((), "the file has no `version:`; add `version: 1` at the top")
        else:
            problems.error(
                ("version",),
                f"this deploy-pipeline reads version 1 files, got "
                f"{describe(version)}; write `version: 1` or upgrade deploy-pipeline",
            )
        problems.errors = [e for e in problems.errors if e.path == "version" or not e.path]
        problems.raise_if_any()
    note_names(data, problems)
    try:
        return schema.PipelineModel.model_validate(data)
    except ValidationError as exc:
        return salvage(data, exc, problems)


def note_names(data: dict[str, Any], problems: Problems) -> None:
    """The names the file gives, valid or not: references are checked against these, so a
    service with a bad key is not also reported as missing wherever it is named."""
    for section in SECTIONS:
        raw = data.get(section, {})
        problems.names[section] = [str(k) for k in raw] if isinstance(raw, dict) else None
    stages = data.get("stages")
    good = stages is None or (isinstance(stages, list) and all(isinstance(s, str) for s in stages))
    problems.names["stages"] = None if not good else None if stages is None else list(stages)
    problems.stages_known = good


def salvage(
    data: dict[str, Any], exc: ValidationError, problems: Problems
) -> schema.PipelineModel | None:
    """Report every shape problem, then keep checking what is well formed, so one run of
    `validate` shows the shape and the meaning problems together."""
    cleaned = dict(data)
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p != "[key]")
        problems.error(loc, shape_problem(err, known_keys(loc)))
        section = loc[0] if loc else None
        if section in SECTIONS and len(loc) >= 2 and isinstance(cleaned.get(section), dict):
            cleaned[section] = {k: v for k, v in cleaned[section].items() if k != loc[1]}
        elif section in SECTIONS:
            cleaned[section] = {}
            problems.names[str(section)] = None
        elif section is not None:
            cleaned.pop(str(section), None)
            if section == "stages":
                problems.stages_known = False
    try:
        return schema.PipelineModel.model_validate(cleaned)
    except ValidationError:
        return None


def shape_problem(err: Mapping[str, Any], known: list[str]) -> str:
    """One of pydantic's errors in the project's words; `known` are the keys allowed there."""
    kind, got, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key {quote(key)} ({hint})"
    if kind == "missing":
        return "required, but missing"
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return f"expected an integer, got {describe(got)}"
    if kind in {"bool_parsing", "bool_type"}:
        return f"expected true or false, got {describe(got)}"
    if kind in {"string_type", "string_too_short"}:
        return f"expected a non-empty string, got {describe(got)}"
    if kind == "list_type":
        return f"expected a list, got {describe(got)}"
    if kind in {"model_type", "model_attributes_type"} and err["loc"][-1] == "build":
        return (
            "expected a folder (build: ./api) or a mapping {context, dockerfile, args, "
            f"target}}, got {describe(got)}"
        )
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"expected a mapping of keys to values, got {describe(got)}"
    if kind == "string_pattern_mismatch":
        return f"expected a Kubernetes quantity like 250m, 2 or 512Mi, got {describe(got)}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {describe(got)}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bound = {"greater_than_equal": "≥", "less_than_equal": "≤"}.get(kind, kind)
        limit = next(iter(ctx.values()), "")
        return f"expected a number {bound} {limit}, got {describe(got)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg']}, got {describe(got)}"


def known_keys(loc: Loc) -> list[str]:
    """The keys allowed at the mapping that holds `loc`'s last key, for 'did you mean'."""
    model: Any = schema.PipelineModel
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part)) or next(
                (f for f in model.model_fields.values() if f.alias == part), None
            )
            if field is None:
                return []
            model = field.annotation
        else:  # dict[str, X] or list[X]: step into the value type
            args = [a for a in typing.get_args(model) if a is not type(None)]
            model = args[-1] if args else None
        while typing.get_origin(model) in {typing.Union, types.UnionType, typing.Annotated}:
            args = [a for a in typing.get_args(model) if a is not type(None)]
            model = args[0] if args else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []
