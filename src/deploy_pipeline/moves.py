"""Promote and rollback (DESIGN.md §10): plans that move releases' images instead of building.

    promote --from staging -e production   staging's latest images, production's own settings
    rollback -e production [--to 3]        release 3's images *and* settings (default: the one
                                           before the latest)

Each is the environment's deploy plan (its stages, its skip set, `--service`, `--target`) with
every built service's build and test taken out and every service's image pinned to the digest the
release recorded. A service the release does not have keeps what it runs: it is left out of the
run, and its skipped event says why. Nothing is touched when there is nothing to move: the errors
are UsageErrors (exit 2), raised before the run begins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from deploy_pipeline.errors import UsageError
from deploy_pipeline.model import (
    Action,
    Environment,
    Pipeline,
    Plan,
    PlannedService,
    Release,
    RunPlan,
    Service,
    StagePlan,
    TargetPlan,
)
from deploy_pipeline.plan import find_environment, plan_run
from deploy_pipeline.store.releases import ReleaseQueries


def plan_moves(
    pipeline: Pipeline,
    envs: Mapping[str, Environment],
    store: ReleaseQueries,
    names: Sequence[str],
    action: Action,
    *,
    source: str | None = None,
    to: int | None = None,
    services: Sequence[str] = (),
    targets: Sequence[str] = (),
    commit: str | None = None,
) -> RunPlan:
    """The run of a promotion (from `source`) or a rollback (to release `to`, or the one before
    the latest) of each named environment."""
    if action == "rollback" and to is not None and len(set(names)) > 1:
        raise UsageError(
            "rollback --to names one release of one environment; roll back one -e at a time"
        )
    plans = []
    for name in dict.fromkeys(names):
        env = find_environment(envs, name)
        base = plan_run(pipeline, env, "deploy", services, targets, commit)
        if action == "promote":
            if source is None:
                raise UsageError("promote needs --from SOURCE: the environment to take images from")
            plans.append(_promotion(envs, store, base, source))
        else:
            plans.append(_rollback(store, base, to))
    return RunPlan(tuple(plans), pipeline.environment_order)


def _promotion(
    envs: Mapping[str, Environment], store: ReleaseQueries, base: Plan, source: str
) -> Plan:
    name = base.environment.name
    find_environment(envs, source)
    if source == name:
        raise UsageError(
            f"promote --from {source} -e {name}: an environment is not promoted to itself; "
            f"to deploy {name} again, run: deploy-pipeline deploy -e {name}"
        )
    if store.latest_release(source) is None:
        raise UsageError(
            f"{source} has no release to promote: nothing has been deployed there successfully "
            f"yet. Deploy it first (deploy-pipeline deploy -e {source}), then promote"
        )
    moved = []
    for tp in base.targets:  # the source's release on the same target, else its latest
        release = store.latest_release(source, tp.target.name) or store.latest_release(source)
        assert release is not None
        moved.append((tp, release, False))
    plan = _pinned(base, moved, f"not in {source}'s release", "promote")
    return replace(plan, source=source, commit=moved[0][1].commit)


def _rollback(store: ReleaseQueries, base: Plan, to: int | None) -> Plan:
    name = base.environment.name
    everything = store.releases(name)
    if not everything:
        raise UsageError(
            f"{name} has no release to roll back: nothing has been deployed there successfully "
            "yet, so there is nothing earlier to go back to"
        )
    if to is not None and not any(r.id == to for r in everything):
        ids = sorted(r.id for r in everything)
        listed = f"v{ids[0]}" if len(ids) == 1 else f"v{ids[0]}–v{ids[-1]}"
        raise UsageError(
            f"{name} has no release {to}; its releases are {listed} "
            f"(see them with: deploy-pipeline history -e {name})"
        )
    moved = []
    for tp in base.targets:
        on_target = [r for r in everything if r.target == tp.target.name]
        if to is None:
            release = on_target[1] if len(on_target) > 1 else None
        else:
            release = next((r for r in on_target if r.id <= to), None)
        if release is not None:
            moved.append((tp, release, True))
    if not moved:
        only = everything[0]
        raise UsageError(
            f"{name} has only one release (v{only.id}): there is no earlier release to roll back to"
            if to is None
            else f"release {to} of {name} ran on no target of this rollback"
        )
    plan = _pinned(base, moved, "not in release", "rollback")
    back = tuple((tp.target.name, r.id) for tp, r, _ in moved)
    return replace(plan, rolled_back_to=back, commit=moved[0][1].commit)


def _pinned(
    base: Plan,
    moved: Sequence[tuple[TargetPlan, Release, bool]],
    missing: str,
    action: Action,
) -> Plan:
    """`base` with each target's services pinned to the release's images (and, for a rollback,
    its settings); the services it does not have are kept, with the reason they are."""
    targets, kept = [], {}
    for tp, release, settings in moved:
        stages = []
        for sp in tp.stages:
            members = []
            for planned in sp.services:
                entry = release.services.get(planned.service.name)
                image = entry.get("image") if entry else None
                if not isinstance(image, str) or not image or entry is None:
                    kept[planned.service] = f"keeps what it runs: {missing} v{release.id}"
                    continue
                members.append(
                    PlannedService(_from(planned.service, image, entry, settings), False)
                )
            if members:
                stages.append(StagePlan(sp.name, sp.index, tuple(members)))
        targets.append(TargetPlan(tp.target, tuple(stages)))
    if not any(tp.stages for tp in targets):
        names = ", ".join(sorted(s.name for s in kept)) or "none"
        raise UsageError(
            f"nothing to {action} in {base.environment.name}: the release has none of the "
            f"services this run takes ({names})"
        )
    return replace(
        base,
        action=action,
        targets=tuple(targets),
        skipped=(*base.skipped, *kept),
        notes=(*base.notes, *((s.name, why) for s, why in kept.items())),
    )


def _from(svc: Service, image: str, entry: Mapping[str, object], settings: bool) -> Service:
    """The service running the release's image; with the release's settings for a rollback.
    Its env is as the release ran it, substitutions made (`${` is written `$${` so that it is
    never read as one again), but for a value the file makes from `${url:SERVICE}`: that is made
    again, for the URL the service has now (a Docker container's port changes when it is
    replaced, so the URL the release recorded may lead nowhere)."""
    svc = replace(svc, image=image)  # its build and test do not run: the plan says so
    if not settings:
        return svc
    env, replicas = entry.get("env"), entry.get("replicas")
    if isinstance(env, Mapping):
        wiring = {k: v for k, v in svc.env if "${url:" in v}  # where a service runs now
        svc = replace(
            svc,
            env=tuple(
                (str(k), wiring.get(str(k)) or str(v).replace("${", "$${")) for k, v in env.items()
            ),
        )
    if isinstance(replicas, int) and replicas >= 0:
        svc = replace(svc, replicas=replicas)
    return svc
