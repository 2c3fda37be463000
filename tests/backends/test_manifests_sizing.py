"""The objects sizing makes (DESIGN.md §11), checked without a cluster: limits, claims, the
autoscaler and the disruption budget, the probes from `health:` and the security context."""

from __future__ import annotations

from typing import Any

from deploy_pipeline.backends import manifests
from deploy_pipeline.backends.kube_sizing import advised
from deploy_pipeline.model import Autoscale, BuildSpec, Probes, Security, Service, Storage

API = Service(
    "api",
    "application",
    "apps",
    build=BuildSpec("./api"),
    port=8000,
    health="/healthz",
    replicas=2,
    resources=(("cpu", "250m"), ("memory", "256Mi")),
    limits=(("cpu", "1"), ("memory", "512Mi")),
    autoscale=Autoscale(2, 10, 70),
)


def kinds(objects: list[manifests.Manifest]) -> dict[str, manifests.Manifest]:
    return {o["kind"]: o for o in objects}


def pod(obj: manifests.Manifest) -> dict[str, Any]:
    spec = obj["spec"]
    template = (
        spec["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else spec["template"]
    )
    return dict(template["spec"])


def test_an_autoscaled_service_gets_an_hpa_and_leaves_it_the_replicas() -> None:
    """autoscaling/v2 on CPU utilisation, min and max from the file; no `replicas` in the
    Deployment (applying one would fight the autoscaler); a budget of one unavailable pod."""
    objects = kinds(manifests.service_objects("prod", API, "img", run="r"))
    assert "replicas" not in objects["Deployment"]["spec"]
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
        "minReplicas": 2,
        "maxReplicas": 10,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            }
        ],
    }
    pdb = objects["PodDisruptionBudget"]
    assert (pdb["apiVersion"], pdb["spec"]["maxUnavailable"]) == ("policy/v1", 1)
    assert pdb["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/instance": "prod-api"}}


def test_one_replica_has_no_budget_and_a_fixed_count_no_autoscaler() -> None:
    """A budget only from two replicas (or an autoscaler's minimum of two)."""
    single = Service("web", "container", "apps", image="nginx:1.27", replicas=1)
    assert [o["kind"] for o in manifests.service_objects("s", single, "i", run="r")] == [
        "Deployment"
    ]
    low = Service("web", "container", "apps", image="i", autoscale=Autoscale(1, 5, 80))
    assert [o["kind"] for o in manifests.service_objects("s", low, "i", run="r")] == [
        "Deployment",
        "HorizontalPodAutoscaler",
    ]


def test_requests_and_limits_are_the_containers_resources() -> None:
    """`resources:` are the requests, `resources.limits:` the limits."""
    container = pod(manifests.service_objects("prod", API, "img", run="r")[0])["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }


def test_health_makes_readiness_startup_and_liveness_probes_tuned_by_probes() -> None:
    """The startup probe gives `startup_timeout` (in 2 s periods), liveness asks every `period`
    and gives up after `failure_threshold`; a job only has readiness."""
    tuned = Service(
        "api", "container", "apps", image="i", port=80, health="/up", probes=Probes(5, 15, 3, 6, 90)
    )
    container = pod(manifests.service_objects("s", tuned, "i", run="r")[0])["containers"][0]
    get = {"httpGet": {"path": "/up", "port": 80}}
    assert container["startupProbe"] == {
        **get,
        "initialDelaySeconds": 5,
        "periodSeconds": 2,
        "timeoutSeconds": 3,
        "failureThreshold": 45,
    }
    assert container["livenessProbe"] == {
        **get,
        "periodSeconds": 15,
        "timeoutSeconds": 3,
        "failureThreshold": 6,
    }
    assert container["readinessProbe"]["periodSeconds"] == 2
    job = Service("check", "job", "jobs", image="i", port=80, health="/up")
    container = pod(manifests.service_objects("s", job, "i", run="r")[0])["containers"][0]
    assert "livenessProbe" not in container and "startupProbe" not in container


def test_a_database_claims_its_storage_where_the_image_keeps_data() -> None:
    """`storage:` is the claim template's size (1Gi when not given), mounted at the image's
    data folder, or at `path:`."""
    db = Service("db", "database", "data", image="postgres:16", storage=Storage("20Gi"))
    statefulset = manifests.service_objects("s", db, "postgres:16", run="r")[1]
    claim = statefulset["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"] == {"requests": {"storage": "20Gi"}}
    mount = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert mount["mountPath"] == "/var/lib/postgresql/data"
    plain = Service("db", "database", "data", image="redis:7", storage=Storage("2Gi", "/srv"))
    statefulset = manifests.service_objects("s", plain, "redis:7", run="r")[1]
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "data", "mountPath": "/srv"}
    ]
    bare = Service("db", "database", "data", image="redis:7")
    template = manifests.service_objects("s", bare, "redis:7", run="r")[1]["spec"]
    assert template["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "1Gi"
    }


def test_any_other_service_gets_a_claim_of_its_own_mounted_at_data() -> None:
    """A claim named SERVICE-data comes first (the pod waits for it), mounted at /data unless
    `path:` says; a scheduled job mounts it too."""
    cache = Service("cache", "container", "apps", image="c", storage=Storage("5Gi"))
    claim, deployment = manifests.service_objects("s", cache, "c", run="r")
    assert (claim["kind"], claim["metadata"]["name"]) == ("PersistentVolumeClaim", "cache-data")
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
    }
    spec = pod(deployment)
    assert spec["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "cache-data"}}
    ]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    report = Service(
        "report", "job", "jobs", image="r", schedule="0 3 * * *", storage=Storage("1Gi", "/out")
    )
    claim, cron = manifests.service_objects("s", report, "r", run="r")
    assert pod(cron)["containers"][0]["volumeMounts"][0]["mountPath"] == "/out"


def test_what_is_built_runs_restricted_and_prebuilt_images_as_they_say() -> None:
    """Built from the repo: non-root, no privilege escalation, no capabilities, the runtime's
    seccomp profile. A prebuilt image (a database's, nginx's) keeps its own user, with the
    seccomp profile; `security:` turns either way, and `read_only` adds a read-only root."""
    built = pod(manifests.service_objects("s", API, "i", run="r")[0])
    assert built["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
    }
    assert built["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    db = Service("db", "database", "data", image="postgres:16")
    prebuilt = pod(manifests.service_objects("s", db, "postgres:16", run="r")[1])
    assert prebuilt["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert "securityContext" not in prebuilt["containers"][0]
    opted = Service(
        "web", "container", "a", image="i", security=Security(run_as_root=False, read_only=True)
    )
    container = pod(manifests.service_objects("s", opted, "i", run="r")[0])["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    rooted = Service("api", "application", "a", build=BuildSpec("."), security=Security(True))
    assert pod(manifests.service_objects("s", rooted, "i", run="r")[0])["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"}
    }


def test_a_container_refused_as_root_says_what_to_do() -> None:
    """The kubelet's refusal to start an image as non-root comes with the two ways out; other
    reasons are left as they are."""
    refused = (
        "CreateContainerConfigError: container has runAsNonRoot and image will run as root "
        "(pod: api-1, container: api)"
    )
    assert advised(refused) == (
        f"{refused}; the service runs as non-root (what is built from the repo does, unless "
        "said otherwise): give its Dockerfile a numeric USER (USER 10001), or set "
        "`security: {run_as_root: true}`"
    )
    assert advised("ImagePullBackOff: not found") == "ImagePullBackOff: not found"
