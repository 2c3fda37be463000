"""The parts of the Kubernetes objects that size a service (DESIGN.md §11), as plain dicts:
probes from `health:`, security contexts, a volume claim of its own, the HorizontalPodAutoscaler
and the PodDisruptionBudget. Pure functions; `manifests` puts them into the objects it makes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from deploy_pipeline.model import Autoscale, Service, Storage

HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
PDB = ("policy/v1", "PodDisruptionBudget")
STARTUP_PERIOD = 2  # seconds between startup probes: ready soon after it answers
DATABASE_SIZE = "1Gi"  # a database's volume when `storage:` does not say


def probes(svc: Service, path: str, port: int) -> dict[str, Any]:
    """Readiness (out of the Service's endpoints within ~6 s), and for what keeps running a
    startup probe (`startup_timeout` to answer at all) then a liveness probe (restarted after
    `failure_threshold` failures, one every `period`), all asking `health:`."""
    tuning = svc.probes
    timeout = int(tuning.timeout)
    found: dict[str, Any] = {
        "readinessProbe": {
            **_get(path, port),
            "periodSeconds": 2,
            "timeoutSeconds": timeout,
            "failureThreshold": 3,
        }
    }
    if svc.type != "job":
        found["startupProbe"] = {
            **_get(path, port),
            "initialDelaySeconds": int(tuning.initial_delay),
            "periodSeconds": STARTUP_PERIOD,
            "timeoutSeconds": timeout,
            "failureThreshold": max(1, math.ceil(tuning.startup_timeout / STARTUP_PERIOD)),
        }
        found["livenessProbe"] = {
            **_get(path, port),
            "periodSeconds": int(tuning.period),
            "timeoutSeconds": timeout,
            "failureThreshold": tuning.failure_threshold,
        }
    return found


def _get(path: str, port: int) -> dict[str, Any]:
    """A probe's request, a dict of its own for each probe (a patch to one leaves the others)."""
    return {"httpGet": {"path": path, "port": port}}


def runs_as_root(svc: Service) -> bool:
    """Whether the image runs as the user it says (root, for most prebuilt images: a database's
    entrypoint starts as root to own its data folder, then drops to its own user) rather than
    restricted. Restricted unless said otherwise: what is built from the repo."""
    if svc.security.run_as_root is not None:
        return svc.security.run_as_root
    return svc.build is None


def pod_security(svc: Service) -> dict[str, Any]:
    context: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if not runs_as_root(svc):
        context["runAsNonRoot"] = True
    return context


def container_security(svc: Service) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if not runs_as_root(svc):
        context = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    if svc.security.read_only:
        context["readOnlyRootFilesystem"] = True
    return context


def storage_size(svc: Service) -> str:
    """A database's volume: `storage:`, or 1Gi."""
    return svc.storage.size if svc.storage is not None else DATABASE_SIZE


def claim_name(svc: Service) -> str:
    """The name of the volume claim of a service that is no database (`storage:`)."""
    return f"{svc.name}-data"


def claim(meta: Mapping[str, Any], storage: Storage) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": dict(meta),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage.size}},
        },
    }


def autoscaler(meta: Mapping[str, Any], deployment: str, scale: Autoscale) -> dict[str, Any]:
    """Replicas between min and max on CPU utilisation (percent of the request); the
    Deployment's own `replicas` is then left to it."""
    target = {"type": "Utilization", "averageUtilization": scale.cpu}
    return {
        "apiVersion": HPA[0],
        "kind": HPA[1],
        "metadata": dict(meta),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicas": scale.min,
            "maxReplicas": scale.max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
    }


def disruption_budget(meta: Mapping[str, Any], selector: Mapping[str, Any]) -> dict[str, Any]:
    """A node drain takes one replica at a time, never the whole service."""
    return {
        "apiVersion": PDB[0],
        "kind": PDB[1],
        "metadata": dict(meta),
        "spec": {"maxUnavailable": 1, "selector": dict(selector)},
    }
