"""A service's `kubernetes.patches` (DESIGN.md §11), checked when the file is read: each names an
object its type makes and holds a strategic merge patch (a mapping) or a JSON patch (RFC 6902,
a list of operations), whose directives, operations and paths are checked here; whether a path
exists in the object is known only once the objects are made (backends.patches)."""

from __future__ import annotations

import json
import re
from typing import Any

from deploy_pipeline import schema
from deploy_pipeline.config.checks import NAME
from deploy_pipeline.config.problems import Loc, Problems, describe, key_path, quote
from deploy_pipeline.model import Patch, ServiceType

OPERATIONS = {
    "add": ("path", "value"),
    "remove": ("path",),
    "replace": ("path", "value"),
    "move": ("from", "path"),
    "copy": ("from", "path"),
    "test": ("path", "value"),
}
POINTER = re.compile(r"(/([^~/]|~[01])*)+\Z")  # RFC 6901: '/'-separated, '~0' and '~1' escapes
DIRECTIVES = ("merge", "replace", "delete")
# What deploy-pipeline names and places itself: a patch that changed these would lose the object.
OWN = (("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"))
# made for a long-running service only when its settings (in an environment, too) ask for them
SIZING = ("HorizontalPodAutoscaler", "PodDisruptionBudget")
EXAMPLE = "{kind: Deployment, patch: {spec: {template: {spec: {priorityClassName: high}}}}}"


def kinds_made(kind_of: ServiceType, *, schedule: bool, port: bool, public: bool) -> list[str]:
    """The kinds of the objects the kubernetes target makes for a service, as far as the file
    says (an autoscaler and a disruption budget depend on settings an environment may change)."""
    if kind_of == "database":
        return ["StatefulSet", "Service"]
    if kind_of == "job":
        return ["CronJob"] if schedule else ["Job"]
    kinds = ["Deployment"]
    if port:
        kinds.append("Service")
    if port and public:
        kinds.append("Ingress")
    return [*kinds, *SIZING]


def check_patches(
    problems: Problems,
    loc: Loc,
    model: schema.KubernetesModel | None,
    made: list[str],
    service: str,
) -> tuple[Patch, ...] | None:
    """The patches of one `kubernetes:` (at `loc`), each checked; None when it gives none (an
    environment's `kubernetes: {}` keeps the service's list, `patches: []` empties it)."""
    if model is None or "patches" not in model.model_fields_set:
        return None
    found = []
    for i, p in enumerate(model.patches):
        where: Loc = (*loc, "patches", i)
        if p.kind not in made:
            what = f"{quote(service)} makes " + ", ".join(k for k in made if k not in SIZING)
            if any(k in SIZING for k in made):
                what += " (and with autoscale: or several replicas, " + " or ".join(SIZING) + ")"
            other = "" if p.kind in schema.PATCH_KINDS else f" ({quote(p.kind)} is no such kind)"
            problems.error(
                (*where, "kind"),
                f"a patch applies to an object the kubernetes target makes for the service, and "
                f"{what}; got {quote(p.kind)}{other}",
            )
        if p.name is not None and not NAME.fullmatch(p.name):
            problems.error(
                (*where, "name"),
                f"expected the name of an object (lowercase letters, digits and '-'), "
                f"got {quote(p.name)}",
            )
        if isinstance(p.patch, dict):
            _strategic(problems, (*where, "patch"), p.patch, ())
        elif isinstance(p.patch, list) and p.patch:
            _json_patch(problems, (*where, "patch"), p.patch)
        else:
            problems.error(
                (*where, "patch"),
                "expected a mapping (a strategic merge patch, like kubectl patch's) or a list of "
                "JSON patch operations ({op: replace, path: /spec/replicas, value: 3}), got "
                f"{describe(p.patch)}; for example {EXAMPLE}",
            )
            continue
        document = json.dumps(p.patch, sort_keys=True, separators=(",", ":"))
        found.append(Patch(p.kind, p.name, document, key_path(where)))
    return tuple(found)


def _strategic(problems: Problems, loc: Loc, patch: dict[str, Any], at: tuple[str, ...]) -> None:
    """A strategic merge patch's keys: `$patch: merge|replace|delete` is the one directive
    taken; what deploy-pipeline names itself is not patched."""
    for key, value in patch.items():
        where: Loc = (*loc, key)
        path = (*at, str(key))
        if path in OWN:
            problems.error(
                where,
                f"{'.'.join(path)} is set by deploy-pipeline, which finds its objects by it; "
                "patch other fields",
            )
        elif key == "$patch":
            if value not in DIRECTIVES:
                problems.error(
                    where,
                    f"expected one of {', '.join(DIRECTIVES)} (the strategic merge directive), "
                    f"got {describe(value)}",
                )
        elif str(key).startswith("$"):
            problems.error(
                where,
                f"the directive {quote(key)} is not supported; `$patch: replace|delete` is, and a "
                "JSON patch (a list of operations) reaches anything else",
            )
        elif isinstance(value, dict):
            _strategic(problems, where, value, path)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _strategic(problems, (*where, i), item, (*path, "[]"))


def _json_patch(problems: Problems, loc: Loc, operations: list[Any]) -> None:
    for i, op in enumerate(operations):
        where: Loc = (*loc, i)
        if not isinstance(op, dict):
            problems.error(
                where,
                "expected a JSON patch operation like {op: replace, path: /spec/replicas, "
                f"value: 3}}, got {describe(op)}",
            )
            continue
        name = op.get("op")
        if name not in OPERATIONS:
            problems.error(
                (*where, "op") if "op" in op else where,
                f"expected `op:` one of {', '.join(OPERATIONS)}, got {describe(name)}",
            )
            continue
        wanted = OPERATIONS[name]
        for key in wanted:
            if key not in op:
                problems.error(where, f"a {name} operation needs `{key}:`")
        for key in op:
            if key != "op" and key not in wanted:
                problems.error(
                    (*where, key),
                    f"a {name} operation takes {', '.join(f'`{k}:`' for k in wanted)}, "
                    f"not `{key}:`",
                )
        for key in ("path", "from"):
            if key in wanted and key in op:
                _pointer(problems, (*where, key), op[key])


def _pointer(problems: Problems, loc: Loc, pointer: object) -> None:
    if not isinstance(pointer, str) or not POINTER.fullmatch(pointer):
        problems.error(
            loc,
            "expected a JSON pointer into the object, like /spec/replicas or "
            "/spec/template/spec/containers/0/env/- ('~1' for a '/' in a key, '~0' for '~'), "
            f"got {describe(pointer)}",
        )
        return
    parts = tuple(p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:])
    if parts == ("metadata",) or any(parts[: len(own)] == own for own in OWN):
        problems.error(
            loc,
            f"{'.'.join(parts)} is set by deploy-pipeline, which finds its objects by it; "
            "patch other fields (under it, for metadata: /metadata/labels/…)",
        )
