"""A service's `kubernetes.patches` applied to the objects made for it, before they are applied
to the cluster (and by `plan --manifests`). Pure functions, no SDK.

A JSON patch (RFC 6902) is applied by `jsonpatch`. A strategic merge patch is merged as the API
server and kustomize merge one: mappings key by key (null removes a key), lists replaced whole,
except the lists Kubernetes declares a merge key for, whose items are matched by it (containers
and volumes by `name`, ports by `containerPort`, mounts by `mountPath`…); `$patch: replace`
replaces a mapping (or, as a list item, the list), `$patch: delete` removes it (or the item).
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import jsonpatch

from deploy_pipeline.errors import PermanentError
from deploy_pipeline.model import Patch, Service

Manifest = dict[str, Any]


class Field(NamedTuple):
    type: str | None  # the type of the value (of each item, for a list), if it matters
    key: str | None = None  # a list's merge key; "" merges a list of plain values as a set


META = Field("ObjectMeta")
POD = Field("PodTemplateSpec")
# The fields of the API's types whose lists merge (their x-kubernetes-patch-merge-key), and the
# way down to them from the objects deploy-pipeline makes.
TYPES: dict[str, dict[str, Field]] = {
    "Deployment": {"metadata": META, "spec": Field("WorkloadSpec")},
    "StatefulSet": {"metadata": META, "spec": Field("WorkloadSpec")},
    "Job": {"metadata": META, "spec": Field("WorkloadSpec")},
    "CronJob": {"metadata": META, "spec": Field("CronJobSpec")},
    "Service": {"metadata": META, "spec": Field("ServiceSpec")},
    "WorkloadSpec": {"template": POD},
    "CronJobSpec": {"jobTemplate": Field("JobTemplateSpec")},
    "JobTemplateSpec": {"metadata": META, "spec": Field("WorkloadSpec")},
    "PodTemplateSpec": {"metadata": META, "spec": Field("PodSpec")},
    "PodSpec": {
        "containers": Field("Container", "name"),
        "initContainers": Field("Container", "name"),
        "ephemeralContainers": Field("Container", "name"),
        "volumes": Field(None, "name"),
        "imagePullSecrets": Field(None, "name"),
        "hostAliases": Field(None, "ip"),
        "topologySpreadConstraints": Field(None, "topologyKey"),
        "resourceClaims": Field(None, "name"),
        "schedulingGates": Field(None, "name"),
    },
    "Container": {
        "env": Field(None, "name"),
        "ports": Field(None, "containerPort"),
        "volumeMounts": Field(None, "mountPath"),
        "volumeDevices": Field(None, "devicePath"),
    },
    "ServiceSpec": {"ports": Field(None, "port")},
    "ObjectMeta": {"finalizers": Field(None, ""), "ownerReferences": Field(None, "uid")},
}
DIRECTIVE = "$patch"


def apply_patches(objects: list[Manifest], svc: Service) -> list[Manifest]:
    """The service's objects with its patches applied, in order; a patch that names no object
    made here, or does not apply to it, is a PermanentError naming the service, kind and patch."""
    if not svc.patches:
        return objects
    result = [copy.deepcopy(o) for o in objects]
    for patch in svc.patches:
        targets = [
            i
            for i, o in enumerate(result)
            if o["kind"] == patch.kind
            and (patch.name is None or o["metadata"]["name"] == patch.name)
        ]
        if not targets:
            made = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in result)
            named = f" named {patch.name}" if patch.name else ""
            raise PermanentError(
                f"{svc.name}: {patch.origin} names a {patch.kind}{named}, but the kubernetes "
                f"target makes none for {svc.name} here (it makes {made})"
            )
        for i in targets:
            result[i] = _applied(result[i], patch, svc)
    return result


def _applied(obj: Manifest, patch: Patch, svc: Service) -> Manifest:
    kind, name = obj["kind"], obj["metadata"]["name"]
    what = "JSON patch" if patch.is_json_patch else "strategic merge patch"
    try:
        if patch.is_json_patch:
            operations = patch.value
            assert isinstance(operations, list)
            out = jsonpatch.JsonPatch(operations).apply(obj)
        else:
            value = patch.value
            assert isinstance(value, dict)
            out = merge(obj, value, kind)
    except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise PermanentError(
            f"{svc.name}: {patch.origin} (a {what} on {kind} {name}) does not apply: {exc}; "
            "`deploy-pipeline plan -e ENV --manifests` shows the objects as they are made"
        ) from exc
    if not isinstance(out, dict) or [out.get("kind"), _name(out)] != [kind, name]:
        raise PermanentError(
            f"{svc.name}: {patch.origin} (a {what} on {kind} {name}) changes the object's kind "
            "or name, which deploy-pipeline finds it by; patch other fields"
        )
    return out


def _name(obj: Manifest) -> object:
    meta = obj.get("metadata")
    return meta.get("name") if isinstance(meta, dict) else None


def merge(original: Manifest, patch: dict[str, Any], type_: str | None) -> Manifest:
    """A strategic merge of `patch` into (a copy of) `original`, a value of type `type_`; a
    patch that does not fit raises ValueError (`apply_patches` makes it the step's error)."""
    merged = _merge_map(original, patch, type_)
    if merged is None:
        raise ValueError("`$patch: delete` at the top would delete the whole object")
    return merged


def _merge_map(
    original: dict[str, Any], patch: dict[str, Any], type_: str | None
) -> dict[str, Any] | None:
    directive = patch.get(DIRECTIVE, "merge")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: _plain(v) for k, v in patch.items() if k != DIRECTIVE}
    fields = TYPES.get(type_ or "", {})
    result = copy.deepcopy(original)
    for key, value in patch.items():
        if key == DIRECTIVE:
            continue
        field = fields.get(key, Field(None))
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(current if isinstance(current, dict) else {}, value, field.type)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(
                current if isinstance(current, list) else [], value, field, key
            )
        else:
            result[key] = value
    return result


def _merge_list(original: list[Any], patch: list[Any], field: Field, key: str) -> list[Any]:
    if any(isinstance(i, dict) and i.get(DIRECTIVE) == "replace" for i in patch):
        return [_plain(i) for i in patch if not (isinstance(i, dict) and DIRECTIVE in i)]
    if field.key is None:  # no merge key: the patch's list replaces the object's
        return [_plain(i) for i in patch]
    if field.key == "":  # plain values merged as a set, the object's first
        return [*original, *(i for i in patch if i not in original)]
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict) or field.key not in item:
            raise ValueError(
                f"each item of {key} is matched by its {field.key}, and {item!r:.80} has none"
            )
        at = next(
            (
                i
                for i, o in enumerate(result)
                if isinstance(o, dict) and o.get(field.key) == item[field.key]
            ),
            None,
        )
        if item.get(DIRECTIVE) == "delete":
            result = [
                o
                for o in result
                if not (isinstance(o, dict) and o.get(field.key) == item[field.key])
            ]
            continue
        merged = _merge_map(result[at] if at is not None else {}, item, field.type)
        if merged is None:
            continue
        if at is None:
            result.append(merged)
        else:
            result[at] = merged
    return result


def _plain(value: Any) -> Any:
    """A value with its directives taken out (what a replacing patch leaves)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != DIRECTIVE}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
