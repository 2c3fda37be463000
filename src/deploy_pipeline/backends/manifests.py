"""The Kubernetes objects for a service, as plain dicts: what a Kubernetes engineer would write by
hand. Pure functions, no SDK: the kubernetes backend applies what these return.

- container / application: Deployment (+ Service with a port, + Ingress when public,
  + HorizontalPodAutoscaler with `autoscale:`, + PodDisruptionBudget with several replicas)
- database: StatefulSet with a PersistentVolumeClaim template + headless Service
- job: a Job per run (kept for its logs, removed by TTL), or a CronJob with `schedule:`
- every workload: `imagePullSecrets` naming the image pull Secrets of its image's registry
- a public service's Ingress: a `tls:` section (and cert-manager's annotation) with `tls:`
- any but a database, with `storage:`: a PersistentVolumeClaim of its own, mounted
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from deploy_pipeline.backends import sizing
from deploy_pipeline.backends.base import DATA, data_path
from deploy_pipeline.backends.registry_login import Login, dockerconfigjson
from deploy_pipeline.model import Service, Tls

Manifest = dict[str, Any]
MANAGER = "deploy-pipeline"
PREFIX = "deploy-pipeline.io"
ENV_LABEL = f"{PREFIX}/environment"
SERVICE_LABEL = f"{PREFIX}/service"
RECORD = f"{PREFIX}/environment-record"
RELEASE = f"{PREFIX}/release"  # the namespace's latest release, JSON (DESIGN.md §9)
SECRET = "deploy-pipeline-secrets"  # one Secret per environment (namespace), values at deploy time
JOB_TTL = 24 * 3600  # a finished lifecycle job is kept a day for its logs
# the image pull Secret of the pipeline's `registry:` (its Docker login), one per environment
REGISTRY_SECRET = "deploy-pipeline-registry"
ISSUER = "cert-manager.io/cluster-issuer"


def labels(environment: str, service: str) -> dict[str, str]:
    """The recommended labels, plus deploy-pipeline's own so a sweep finds everything."""
    return {
        "app.kubernetes.io/name": service,
        "app.kubernetes.io/instance": f"{environment}-{service}",
        "app.kubernetes.io/managed-by": MANAGER,
        "app.kubernetes.io/part-of": environment,
        ENV_LABEL: environment,
        SERVICE_LABEL: service,
    }


def namespace(environment: str, record: Mapping[str, object]) -> Manifest:
    """The environment's namespace, annotated with its record (source, skipped, preview PR) so
    a receiver or a fresh Action run can read the environment back from the cluster."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": environment,
            "labels": {"app.kubernetes.io/managed-by": MANAGER, ENV_LABEL: environment},
            "annotations": {RECORD: json.dumps(dict(record), sort_keys=True)},
        },
    }


def secret(environment: str, values: Mapping[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET,
            "namespace": environment,
            "labels": {"app.kubernetes.io/managed-by": MANAGER, ENV_LABEL: environment},
        },
        "type": "Opaque",
        "stringData": dict(values),
    }


def pull_secret(environment: str, name: str, login: Login, service: str | None = None) -> Manifest:
    """An image pull Secret holding one registry's login; a service's own (its
    `registry_auth:`) carries its labels, so it goes when the service is deleted."""
    own = labels(environment, service) if service else {}
    content = base64.b64encode(dockerconfigjson(login).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": environment,
            "labels": {**own, "app.kubernetes.io/managed-by": MANAGER, ENV_LABEL: environment},
        },
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": content},
    }


def public_url(host: str | None, tls: Tls | None) -> str | None:
    """A public service's URL from its Ingress host: https when the target serves TLS (§11)."""
    return f"{'https' if tls else 'http'}://{host}" if host else None


def login_secret_name(service: str) -> str:
    """The image pull Secret of a service's own `registry_auth:` login."""
    return f"{service}-registry-auth"


def _container(svc: Service, image: str) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in svc.env]
    env += [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": name}}}
        for name in svc.secrets
    ]
    container: dict[str, Any] = {"name": svc.name, "image": image}
    if svc.command is not None:
        container["command"] = list(svc.command)
    if env:
        container["env"] = env
    if svc.port:
        container["ports"] = [{"name": "main", "containerPort": svc.port}]
    if svc.resources or svc.limits:
        resources = {"requests": dict(svc.resources), "limits": dict(svc.limits)}
        container["resources"] = {k: v for k, v in resources.items() if v}
    if svc.health and svc.port:
        container.update(sizing.probes(svc, svc.health, svc.port))
    context = sizing.container_security(svc)
    if context:
        container["securityContext"] = context
    if svc.storage is not None and svc.type != "database":
        container["volumeMounts"] = [{"name": "data", "mountPath": svc.storage.path or DATA}]
    return container


def _meta(environment: str, svc: Service, name: str, annotations: Mapping[str, str]) -> Manifest:
    return {
        "name": name,
        "namespace": environment,
        "labels": labels(environment, svc.name),
        "annotations": dict(annotations),
    }


def _template(environment: str, svc: Service, image: str, restart: str | None) -> Manifest:
    spec: dict[str, Any] = {
        "securityContext": sizing.pod_security(svc),
        "containers": [_container(svc, image)],
    }
    if restart:
        spec["restartPolicy"] = restart
    if svc.storage is not None and svc.type != "database":
        spec["volumes"] = [
            {"name": "data", "persistentVolumeClaim": {"claimName": sizing.claim_name(svc)}}
        ]
    return {"metadata": {"labels": labels(environment, svc.name)}, "spec": spec}


def _selector(environment: str, svc: Service) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/instance": f"{environment}-{svc.name}"}}


def service_objects(
    environment: str,
    svc: Service,
    image: str,
    *,
    run: str,
    host: str | None = None,
    tls: Tls | None = None,
    pull_secrets: Sequence[str] = (),
) -> list[Manifest]:
    """Everything one service is made of, in the order to apply it; its workloads pull their
    image with `pull_secrets`, and its Ingress serves `tls` (DESIGN.md §11)."""
    objects = _objects(environment, svc, image, run=run, host=host, tls=tls)
    if pull_secrets:
        for obj in objects:
            spec = pod_spec(obj)
            if spec is not None:
                spec["imagePullSecrets"] = [{"name": name} for name in pull_secrets]
    return objects


def pod_spec(obj: Manifest) -> dict[str, Any] | None:
    """A workload's pod template spec (a CronJob's within its job template); None for others."""
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec") or {}
    template = spec.get("template") if obj["kind"] in WORKLOAD_KINDS else None
    return template.get("spec") if isinstance(template, dict) else None


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")


def _objects(
    environment: str,
    svc: Service,
    image: str,
    *,
    run: str,
    host: str | None,
    tls: Tls | None,
) -> list[Manifest]:
    notes = {f"{PREFIX}/run": run, f"{PREFIX}/image": image}
    if svc.type == "database":
        return [_headless(environment, svc), _statefulset(environment, svc, image, notes)]
    volume = []
    if svc.storage is not None:
        meta = _meta(environment, svc, sizing.claim_name(svc), {})
        volume.append(sizing.claim(meta, svc.storage))
    if svc.type == "job":
        if svc.schedule:
            return [*volume, _cronjob(environment, svc, image, notes)]
        return [*volume, _job(environment, svc, image, run, notes)]
    objects: list[Manifest] = [*volume, _deployment(environment, svc, image, notes)]
    if svc.port:
        objects.append(_service(environment, svc))
        if svc.public and host:
            objects.append(_ingress(environment, svc, host, tls))
    if svc.autoscale is not None:
        meta = _meta(environment, svc, svc.name, {})
        objects.append(sizing.autoscaler(meta, svc.name, svc.autoscale))
    if (svc.autoscale.min if svc.autoscale is not None else svc.replicas) > 1:
        meta = _meta(environment, svc, svc.name, {})
        objects.append(sizing.disruption_budget(meta, _selector(environment, svc)))
    return objects


def _deployment(environment: str, svc: Service, image: str, notes: Mapping[str, str]) -> Manifest:
    spec: dict[str, Any] = {
        "replicas": svc.replicas,
        "selector": _selector(environment, svc),
        "template": _template(environment, svc, image, None),
    }
    if svc.autoscale is not None:  # the autoscaler's to set: applying it would fight it
        del spec["replicas"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(environment, svc, svc.name, notes),
        "spec": spec,
    }


def _service(environment: str, svc: Service, *, headless: bool = False) -> Manifest:
    spec: dict[str, Any] = {
        "selector": {"app.kubernetes.io/instance": f"{environment}-{svc.name}"},
        "ports": [{"name": "main", "port": svc.port or 80, "targetPort": svc.port or 80}],
    }
    if headless:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(environment, svc, svc.name, {}),
        "spec": spec,
    }


def _headless(environment: str, svc: Service) -> Manifest:
    return _service(environment, svc, headless=True)


def _ingress(environment: str, svc: Service, host: str, tls: Tls | None = None) -> Manifest:
    backend = {"service": {"name": svc.name, "port": {"number": svc.port}}}
    ingress: Manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(environment, svc, svc.name, {}),
        "spec": {
            "rules": [
                {
                    "host": host,
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ]
        },
    }
    if tls is not None:
        _serve_tls(ingress, svc, host, tls)
    return ingress


def _serve_tls(ingress: Manifest, svc: Service, host: str, tls: Tls) -> None:
    """https on the Ingress's host: with an issuer, cert-manager makes `<service>-tls` (asked by
    its annotation); else the target's existing Secret serves it."""
    if tls.issuer:
        ingress["metadata"]["annotations"][ISSUER] = tls.issuer
    secret = tls.secret or tls_secret_name(svc.name)
    ingress["spec"]["tls"] = [{"hosts": [host], "secretName": secret}]


def tls_secret_name(service: str) -> str:
    """The Secret cert-manager keeps a public service's certificate in (with `tls: {issuer}`)."""
    return f"{service}-tls"


def _statefulset(environment: str, svc: Service, image: str, notes: Mapping[str, str]) -> Manifest:
    template = _template(environment, svc, image, None)
    path = svc.storage.path if svc.storage is not None else None
    template["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": path or data_path(svc.image or image)}
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(environment, svc, svc.name, notes),
        "spec": {
            "serviceName": svc.name,
            "replicas": 1,
            "selector": _selector(environment, svc),
            "template": template,
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": labels(environment, svc.name)},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": sizing.storage_size(svc)}},
                    },
                }
            ],
        },
    }


def job_name(svc: Service, run: str) -> str:
    """A lifecycle Job is named after its run, so each run's logs stay apart."""
    return f"{svc.name}-{run}"[:63].rstrip("-")


def _job_spec(environment: str, svc: Service, image: str) -> dict[str, Any]:
    return {
        "backoffLimit": 0,  # a failing job fails the deploy: no retrying a failing container
        "ttlSecondsAfterFinished": JOB_TTL,
        "template": _template(environment, svc, image, "Never"),
    }


def _job(
    environment: str, svc: Service, image: str, run: str, notes: Mapping[str, str]
) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(environment, svc, job_name(svc, run), notes),
        "spec": _job_spec(environment, svc, image),
    }


def _cronjob(environment: str, svc: Service, image: str, notes: Mapping[str, str]) -> Manifest:
    spec = _job_spec(environment, svc, image)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(environment, svc, svc.name, notes),
        "spec": {
            "schedule": svc.schedule,
            "suspend": False,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"metadata": {"labels": labels(environment, svc.name)}, "spec": spec},
            **({"timeZone": svc.timezone} if svc.timezone else {}),
        },
    }


def host_for(pattern: str | None, environment: str, service: str) -> str | None:
    """An Ingress host from the target's domain pattern: `{service}.{environment}.example.com`."""
    if not pattern:
        return None
    return pattern.format(service=service, environment=environment)
