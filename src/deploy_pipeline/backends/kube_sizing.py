"""What sizing asks of a cluster at deploy time (DESIGN.md §11): an autoscaler's replicas left to
it, the autoscaler and budget a service no longer asks for removed, a database's volume size kept,
and the kubelet's refusal to run an image as non-root explained."""

from __future__ import annotations

from deploy_pipeline import quantities
from deploy_pipeline.backends import manifests, sizing
from deploy_pipeline.backends.kube import Cluster
from deploy_pipeline.errors import PermanentError
from deploy_pipeline.model import Service


def prune(cluster: Cluster, env: str, svc: Service, objects: list[manifests.Manifest]) -> bool:
    """Remove the service's autoscaler and disruption budget when it no longer asks for
    them (replicas down to 1, autoscale turned off); True when an autoscaler went."""
    wanted = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects}
    removed = False
    for api, kind in (sizing.HPA, sizing.PDB):
        for obj in cluster.objects(api, kind, env, {manifests.SERVICE_LABEL: svc.name}):
            name = obj["metadata"]["name"]
            if (api, kind, name) not in wanted and cluster.delete(api, kind, name, env):
                removed = removed or (api, kind) == sizing.HPA
    return removed


def scale_up(cluster: Cluster, env: str, name: str, least: int) -> None:
    """An autoscaled Deployment's replicas are the autoscaler's: applied without them, then
    raised to `min` only when under it (new, or stopped), never lowered from what it chose.
    A merge patch, not part of the apply: the next apply then leaves them alone."""
    current = cluster.get("apps/v1", "Deployment", name, env) or {}
    if int((current.get("spec") or {}).get("replicas") or 0) < least:
        cluster.patch("apps/v1", "Deployment", name, env, {"spec": {"replicas": least}})


def check_volume(cluster: Cluster, env: str, svc: Service) -> None:
    """A StatefulSet's volume claims cannot change: a new `storage:` size for a database
    already deployed is refused with what to do, rather than failing the apply."""
    current = cluster.get("apps/v1", "StatefulSet", svc.name, env)
    templates = ((current or {}).get("spec") or {}).get("volumeClaimTemplates") or []
    for template in templates:
        requests = ((template.get("spec") or {}).get("resources") or {}).get("requests") or {}
        has = requests.get("storage")  # as the API server writes it: 1024Mi reads 1Gi
        wanted = sizing.storage_size(svc)
        if has is not None and quantities.value(str(has)) != quantities.value(wanted):
            raise PermanentError(
                f"{svc.name}'s volume was made with {has} and `storage:` now says "
                f"{wanted}; Kubernetes does not change a StatefulSet's volume "
                f"claims: resize the claim data-{svc.name}-0 itself (if its storage class "
                f"allows expansion), then delete the StatefulSet {svc.name} with "
                "--cascade=orphan so the next deploy makes it anew; or set `storage:` "
                f"back to {has}"
            )


def advised(reasons: str) -> str:
    """The pods' reasons, with what to do when the kubelet refused to start a container as
    non-root: its image runs as root, or as a user it names but does not number."""
    if "runAsNonRoot" not in reasons:
        return reasons
    return (
        f"{reasons}; the service runs as non-root (what is built from the repo does, unless "
        "said otherwise): give its Dockerfile a numeric USER (USER 10001), or set "
        "`security: {run_as_root: true}`"
    )
