"""A service's size on its target (DESIGN.md §11): requests and limits, storage, autoscaling,
the probes made from `health:` and the security context; each checked where it is written and
again as it runs in each environment that changes it (§8)."""

from __future__ import annotations

from dataclasses import replace

from deploy_pipeline import quantities, schema
from deploy_pipeline.config.problems import Loc, Problems, quote
from deploy_pipeline.model import (
    LONG_RUNNING,
    Autoscale,
    Probes,
    Security,
    Service,
    ServiceSettings,
    Storage,
)


def requests_of(r: schema.ResourcesModel | None) -> tuple[tuple[str, str], ...]:
    """(cpu|memory, quantity) of `resources:`, the limits left out."""
    return tuple((k, v) for k in ("cpu", "memory") if r is not None and (v := getattr(r, k)))


def limits_of(r: schema.ResourcesModel | None) -> tuple[tuple[str, str], ...]:
    """(cpu|memory, quantity) of `resources.limits:`."""
    limits = r.limits if r is not None else None
    return tuple(
        (k, v) for k in ("cpu", "memory") if limits is not None and (v := getattr(limits, k))
    )


def storage_of(problems: Problems, loc: Loc, s: schema.StorageModel | None) -> Storage | None:
    if s is None:
        return None
    if s.path is not None and not s.path.startswith("/"):
        problems.error(
            (*loc, "path"),
            f"expected an absolute path in the container like /data, got {quote(s.path)}",
        )
    if (quantities.value(s.size) or 0) <= 0:
        problems.error((*loc, "size"), f"expected a size above 0 like 20Gi, got {quote(s.size)}")
    return Storage(s.size, s.path)


def autoscale_of(problems: Problems, loc: Loc, a: schema.AutoscaleModel | None) -> Autoscale | None:
    if a is None:
        return None
    if a.min > a.max:
        problems.error(
            (*loc, "min"),
            f"min {a.min} is above max {a.max}; the replicas go from min up to max",
        )
    return Autoscale(a.min, a.max, a.cpu)


def with_sizing(problems: Problems, loc: Loc, s: schema.ServiceModel, svc: Service) -> Service:
    """The service with its size as the file writes it (`loc` is the service's key)."""
    if s.autoscale is not None and s.type not in LONG_RUNNING:
        problems.error(
            (*loc, "autoscale"),
            f"only containers and applications autoscale; a {s.type} "
            + ("runs one replica" if s.type == "database" else "runs to completion"),
        )
    if s.autoscale is not None and s.replicas is not None:
        problems.error(
            (*loc, "replicas"),
            "give `replicas:` or `autoscale:`, not both: autoscale sets the replicas between "
            "its min and max",
        )
    if s.probes is not None and s.type == "job":
        problems.error((*loc, "probes"), "a job runs to completion: it is not probed")
    elif s.probes is not None and s.health is None:
        problems.error(
            (*loc, "probes"),
            "probes tune the checks made from `health:`: add `health: /path` (and `port:`)",
        )
    autoscale = autoscale_of(problems, (*loc, "autoscale"), s.autoscale)
    return replace(
        svc,
        limits=limits_of(s.resources),
        storage=storage_of(problems, (*loc, "storage"), s.storage),
        autoscale=autoscale,
        replicas=autoscale.min if autoscale is not None else svc.replicas,
        probes=Probes(**s.probes.model_dump()) if s.probes is not None else Probes(),
        security=Security(**s.security.model_dump()) if s.security is not None else Security(),
    )


def check_sizing(problems: Problems, loc: Loc, svc: Service) -> None:
    """What only the whole of a service's size can tell: a limit under its request, autoscaling
    with no CPU request to aim at, a volume of one's own under several replicas."""
    requests, limits = dict(svc.resources), dict(svc.limits)
    for key in ("cpu", "memory"):
        if key in requests and key in limits:
            asked, most = quantities.value(requests[key]), quantities.value(limits[key])
            if asked is not None and most is not None and most < asked:
                problems.error(
                    (*loc, "resources", "limits", key),
                    f"the limit {limits[key]} is below the request {requests[key]} "
                    f"(resources.{key}); a limit is at least its request: raise "
                    f"resources.limits.{key} or lower resources.{key}",
                )
    # (a CPU limit alone is requested too: Kubernetes requests what is limited)
    aimless = "cpu" not in requests and "cpu" not in limits
    if svc.autoscale is not None and svc.type in LONG_RUNNING and aimless:
        problems.error(
            (*loc, "autoscale"),
            f"autoscale aims at {svc.autoscale.cpu}% of the CPU request, and {quote(svc.name)} "
            "requests none: add `resources: {cpu: 250m}` (what one replica needs)",
        )
    several = svc.autoscale is not None or svc.replicas > 1
    if svc.storage is not None and svc.type in LONG_RUNNING and several:
        scaled = "autoscale" if svc.autoscale is not None else f"replicas: {svc.replicas}"
        problems.error(
            (*loc, "storage"),
            f"a volume of {quote(svc.name)}'s own is mounted by one replica (ReadWriteOnce), and "
            f"it runs with {scaled}: keep replicas: 1 without autoscale, or keep its data in a "
            "database",
        )


def settings_with_sizing(
    problems: Problems, loc: Loc, o: schema.ServiceSettingsModel, own: ServiceSettings
) -> ServiceSettings:
    """The settings with the size an environment gives one service (`loc`: its key there)."""
    if o.autoscale is not None and o.replicas is not None:
        problems.error(
            (*loc, "replicas"),
            "give `replicas:` or `autoscale:`, not both: autoscale sets the replicas between "
            "its min and max",
        )
    return replace(
        own,
        limits=limits_of(o.resources) or None,
        autoscale=autoscale_of(problems, (*loc, "autoscale"), o.autoscale),
        storage=storage_of(problems, (*loc, "storage"), o.storage),
    )


def resized(svc: Service, own: ServiceSettings) -> Service:
    """The service with an environment's limits, autoscaling and storage. The most specific of
    `replicas:` and `autoscale:` wins: an environment's replicas turn the service's autoscaling
    off there, its autoscale turns it on."""
    limits = {**dict(svc.limits), **dict(own.limits or ())}
    autoscale = svc.autoscale
    if own.autoscale is not None:
        autoscale = own.autoscale
    elif own.replicas is not None:
        autoscale = None
    storage = svc.storage
    if own.storage is not None:
        path = own.storage.path or (svc.storage.path if svc.storage is not None else None)
        storage = Storage(own.storage.size, path)
    return replace(
        svc,
        limits=tuple(limits.items()),
        autoscale=autoscale,
        replicas=autoscale.min if autoscale is not None else svc.replicas,
        storage=storage,
    )
