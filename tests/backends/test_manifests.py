"""The Kubernetes objects for each service type, checked without a cluster."""

from __future__ import annotations

import json

from deploy_pipeline.backends import manifests
from deploy_pipeline.model import Service


def by_kind(objects: list[manifests.Manifest]) -> dict[str, manifests.Manifest]:
    return {o["kind"]: o for o in objects}


API = Service(
    "api",
    "application",
    "apps",
    port=8000,
    health="/healthz",
    replicas=2,
    env=(("LOG_LEVEL", "info"),),
    secrets=("DATABASE_URL",),
    public=True,
)


def test_an_application_is_a_deployment_a_service_and_an_ingress_when_public() -> None:
    """replicas, the readiness probe from `health:`, the Service's port and the Ingress host
    (and, for its 2 replicas, a disruption budget)."""
    objects = manifests.service_objects(
        "staging", API, "reg/api:sha-1", run="run7", host="api.staging.example.com"
    )
    kinds = ["Deployment", "Service", "Ingress", "PodDisruptionBudget"]
    assert [o["kind"] for o in objects] == kinds
    deployment = by_kind(objects)["Deployment"]
    assert deployment["metadata"]["namespace"] == "staging"
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg/api:sha-1"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8000}
    assert by_kind(objects)["Service"]["spec"]["ports"][0]["port"] == 8000
    assert by_kind(objects)["Ingress"]["spec"]["rules"][0]["host"] == "api.staging.example.com"
    assert deployment["metadata"]["annotations"] == {
        "deploy-pipeline.io/run": "run7",
        "deploy-pipeline.io/image": "reg/api:sha-1",
    }


def test_secrets_are_referenced_by_name_never_by_value() -> None:
    """A secret reaches the pod through the environment's Secret; no value is in the object."""
    deployment = manifests.service_objects("staging", API, "img", run="r")[0]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "LOG_LEVEL", "value": "info"} in env
    assert {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "deploy-pipeline-secrets", "key": "DATABASE_URL"}},
    } in env
    secret = manifests.secret("staging", {"DATABASE_URL": "postgres://u:hunter2@db/x"})
    assert "hunter2" not in json.dumps(secret["metadata"])


def test_every_object_carries_the_recommended_and_the_pipeline_labels() -> None:
    """managed-by, name, instance, part-of, and deploy-pipeline's environment and service."""
    for obj in manifests.service_objects("staging", API, "img", run="r", host="h"):
        assert obj["metadata"]["labels"] == {
            "app.kubernetes.io/name": "api",
            "app.kubernetes.io/instance": "staging-api",
            "app.kubernetes.io/managed-by": "deploy-pipeline",
            "app.kubernetes.io/part-of": "staging",
            "deploy-pipeline.io/environment": "staging",
            "deploy-pipeline.io/service": "api",
        }


def test_a_database_is_a_statefulset_with_a_volume_claim_and_a_headless_service() -> None:
    """The claim is mounted where the image keeps its data; the Service has no cluster IP."""
    db = Service("db", "database", "data", image="postgres:16", port=5432)
    service, statefulset = manifests.service_objects("staging", db, "postgres:16", run="r")
    assert service["spec"]["clusterIP"] == "None"
    mount = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert mount == {"name": "data", "mountPath": "/var/lib/postgresql/data"}
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_a_job_is_named_after_its_run_and_a_scheduled_one_is_a_cronjob() -> None:
    """Each run's Job is kept apart (and cleaned up by TTL); `schedule:` makes a CronJob."""
    migrate = Service("migrate", "job", "jobs", image="m:1", command=("migrate",))
    (job,) = manifests.service_objects("staging", migrate, "m:1", run="run12")
    assert job["kind"] == "Job" and job["metadata"]["name"] == "migrate-run12"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == manifests.JOB_TTL
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    report = Service("report", "job", "jobs", image="r:1", schedule="0 3 * * *")
    (cron,) = manifests.service_objects("staging", report, "r:1", run="run12")
    assert cron["kind"] == "CronJob" and cron["spec"]["schedule"] == "0 3 * * *"


def test_the_namespace_carries_the_environment_record() -> None:
    """Source, skipped services and the preview's pull request can be read back from it."""
    ns = manifests.namespace(
        "pr-7", {"source": "staging", "skipped": ["report"], "pull_request": 7}
    )
    record = json.loads(ns["metadata"]["annotations"]["deploy-pipeline.io/environment-record"])
    assert record == {"pull_request": 7, "skipped": ["report"], "source": "staging"}
