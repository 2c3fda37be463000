"""(environment, action, services?) → Plan: targets × stages × steps, in the order they run.

Pure functions over the model. The rules are DESIGN.md §2: stop and delete run the stages last to
first; an environment-level run leaves skipped services out, except delete, which removes them
too; a service-level run includes the named services whether skipped or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from deploy_pipeline.config import resized, substitute
from deploy_pipeline.errors import UsageError, choices
from deploy_pipeline.model import (
    LONG_RUNNING,
    REVERSED_ACTIONS,
    Action,
    Environment,
    EnvironmentRecord,
    Pipeline,
    Plan,
    PlannedService,
    RunPlan,
    Service,
    ServiceSettings,
    StagePlan,
    TargetPlan,
)


def environments(
    pipeline: Pipeline, records: Mapping[str, EnvironmentRecord]
) -> dict[str, Environment]:
    """The file's environments with the store's skip changes, then clones and previews."""
    result: dict[str, Environment] = {}
    for name, env in pipeline.environments.items():
        rec = records.get(name)
        if rec is not None and rec.origin == "file":
            skipped = (env.skipped | rec.skip_added) - rec.skip_removed
            result[name] = replace(env, skipped=skipped)
        else:
            result[name] = env
    pending = [r for r in records.values() if r.origin != "file" and r.name not in result]
    while pending:  # a clone of a clone resolves once its source has
        ready = [r for r in pending if r.source in result]
        if not ready:
            break  # sources no longer in the file: those clones cannot be planned
        for rec in ready:
            base = result[rec.source or ""]
            known = rec.skipped & set(pipeline.services)
            own = base.env  # clones and previews start from their source's settings
            if rec.origin == "preview" and pipeline.previews is not None:
                own = tuple({**dict(own), **dict(pipeline.previews.env)}.items())
            result[rec.name] = Environment(
                rec.name,
                base.targets,
                known,
                base.strategy,
                rec.source,
                rec.pull_request,
                False,
                env=own,
                settings=base.settings,
            )
        pending = [r for r in pending if r.name not in result]  # by name: a thousand previews
    return result


def find_environment(envs: Mapping[str, Environment], name: str) -> Environment:
    if name not in envs:
        raise UsageError(f"no environment named '{name}'; " + choices(name, envs, "environments"))
    return envs[name]


def check_services(pipeline: Pipeline, names: Iterable[str]) -> None:
    for name in names:
        if name not in pipeline.services:
            raise UsageError(
                f"no service named '{name}'; " + choices(name, pipeline.services, "services")
            )


def taken(
    pipeline: Pipeline, environment: Environment, action: Action, services: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """The services a run takes and the ones it reports skipped, in the file's order. A service
    named in `services` that the pipeline lacks is left out (`plan_run` refuses it first)."""
    if services:  # service-level: exactly the named services, skipped or not
        return [s for s in pipeline.services if s in set(services)], []
    if action == "delete":  # delete removes everything, skipped services too
        return list(pipeline.services), []
    chosen = [s for s in pipeline.services if s not in environment.skipped]
    return chosen, [s for s in pipeline.services if s in environment.skipped]


def stage_order(pipeline: Pipeline, action: Action) -> list[str]:
    """The stages in the order an action runs them: stop and delete go last to first."""
    return list(reversed(pipeline.stages)) if action in REVERSED_ACTIONS else list(pipeline.stages)


def plan_stages(
    pipeline: Pipeline, environment: Environment, action: Action, services: Sequence[str] = ()
) -> tuple[StagePlan, ...]:
    """The stages a run goes through on each target, in order, each with the services it takes
    there; stages with none are left out. The status page asks this too, so it never disagrees
    with the runner about which services a run takes or in which order."""
    chosen = taken(pipeline, environment, action, services)[0]
    stages = []
    for name in stage_order(pipeline, action):
        members = tuple(
            PlannedService(
                in_environment(environment, svc), build=action == "deploy" and svc.needs_build
            )
            for svc in (pipeline.services[s] for s in chosen)
            if svc.stage == name
        )
        if members:
            stages.append(StagePlan(name, pipeline.stages.index(name), members))
    return tuple(stages)


def plan_run(
    pipeline: Pipeline,
    environment: Environment,
    action: Action,
    services: Sequence[str] = (),
    targets: Sequence[str] = (),
    commit: str | None = None,
) -> Plan:
    check_services(pipeline, services)
    for target in targets:
        if target not in environment.targets:
            raise UsageError(
                f"environment '{environment.name}' does not deploy to target '{target}'; "
                + choices(target, environment.targets, "targets of this environment")
            )
    stages = plan_stages(pipeline, environment, action, services)
    skipped = taken(pipeline, environment, action, services)[1]
    wanted = [t for t in environment.targets if not targets or t in targets]
    sequential = environment.strategy.services == "sequential"
    return Plan(
        environment=environment,
        action=action,
        targets=tuple(TargetPlan(pipeline.targets[t], stages) for t in wanted),
        skipped=tuple(pipeline.services[s] for s in skipped),
        parallelism=1 if sequential else pipeline.defaults.parallelism,
        build_ahead=pipeline.defaults.build_ahead,
        timeout=pipeline.defaults.timeout,
        retries=pipeline.defaults.retries,
        commit=commit,
        services=tuple(in_environment(environment, s) for s in pipeline.services.values()),
    )


def plan_runs(
    pipeline: Pipeline,
    envs: Mapping[str, Environment],
    names: Sequence[str],
    action: Action,
    services: Sequence[str] = (),
    targets: Sequence[str] = (),
    commit: str | None = None,
) -> RunPlan:
    plans = tuple(
        plan_run(pipeline, find_environment(envs, n), action, services, targets, commit)
        for n in dict.fromkeys(names)
    )
    return RunPlan(plans, pipeline.environment_order)


def plan_json(plan: Plan) -> dict[str, object]:
    """The `plan --format json` contract of DESIGN.md §5."""
    return {
        "environment": plan.environment.name,
        "action": plan.action,
        "targets": [
            {
                "target": tp.target.name,
                "stages": [
                    {
                        "name": sp.name,
                        "services": [
                            {
                                "name": p.service.name,
                                "type": p.service.type,
                                "build": p.build,
                                "env": shown_env(plan, p.service),
                                "replicas": p.service.replicas,
                            }
                            for p in sp.services
                        ],
                    }
                    for sp in tp.stages
                ],
            }
            for tp in plan.targets
        ],
        "skipped": [s.name for s in plan.skipped],
    }


def plan_text(plan: Plan, images: Mapping[tuple[str, str], str] | None = None) -> str:
    """The plan for a person; `images` adds, per (target, service), whether its build is reused."""
    env = plan.environment
    how = "one at a time" if plan.parallelism == 1 else f"up to {plan.parallelism} at once"
    lines = [f"{plan.action} {env.name}" + (f" (clone of {env.source})" if env.source else "")]
    for tp in plan.targets:
        lines.append(f"  target {tp.target.name} ({tp.target.kind}), {how}")
        if not tp.stages:
            lines.append("    nothing to do")
        for i, sp in enumerate(tp.stages, 1):
            lines.append(f"    {i}. {sp.name}")
            for p in sp.services:
                svc = p.service
                if p.build and svc.build is not None:
                    what = f"build {svc.build.context}"
                elif svc.image:
                    what = f"prebuilt {svc.image}"
                else:
                    what = "built image" if svc.build else ""
                cron = f", cron {svc.schedule}" if svc.schedule else ""
                cron += f" ({svc.timezone})" if svc.schedule and svc.timezone else ""
                note = (images or {}).get((tp.target.name, svc.name)) if p.build else None
                image = f"  ({note})" if note else ""
                lines.append(f"       - {svc.name:<16} {svc.type:<12} {what}{cron}{image}")
                if plan.action in {"deploy", "restart"}:
                    lines.append(" " * 9 + settings_text(plan, svc))
    if plan.skipped:
        lines.append(f"  skipped: {', '.join(s.name for s in plan.skipped)}")
    return "\n".join(lines)


# --- settings per environment (DESIGN.md §8) -----------------------------------------------------


def in_environment(environment: Environment, svc: Service) -> Service:
    """The service as it runs in `environment`: env merged lowest first (the service's, the
    environment's, the environment's for this service), its replicas, image, resources,
    timeout and kubernetes patches (a list there replaces the service's) where the environment
    changes them. Env values keep their `${…}`: `resolve_env`
    makes them once the run knows the URLs and the commit."""
    if not environment.env and not environment.settings:
        return svc
    own = dict(environment.settings).get(svc.name, ServiceSettings())
    env = {**dict(svc.env), **dict(environment.env), **dict(own.env)}
    resources = {**dict(svc.resources), **dict(own.resources or ())}
    changed = replace(
        svc,
        env=tuple(env.items()),
        replicas=svc.replicas if own.replicas is None else own.replicas,
        image=own.image or svc.image,
        resources=tuple(resources.items()),
        timeout=svc.timeout if own.timeout is None else own.timeout,
        patches=svc.patches if own.patches is None else own.patches,
    )
    return resized(changed, own)  # limits, autoscale and storage (DESIGN.md §11)


def resolve_env(
    plan: Plan, svc: Service, url: Callable[[str], str | None] = lambda s: None
) -> Service:
    """The service with its env values' substitutions made: the environment's name, its pull
    request, the plan's commit, and `url(SERVICE)` (a URL not known yet is left as written)."""
    env = plan.environment
    values = {
        "environment": env.name,
        "pull_request": str(env.pull_request) if env.pull_request is not None else "",
        "commit": plan.commit or "",
    }
    resolved = tuple((k, substitute(v, values, url)) for k, v in svc.env)
    return svc if resolved == svc.env else replace(svc, env=resolved)


def shown_env(plan: Plan, svc: Service) -> dict[str, str]:
    """A service's resolved env as `plan` shows it: secrets left out."""
    return {k: v for k, v in resolve_env(plan, svc).env if k not in svc.secrets}


def settings_text(plan: Plan, svc: Service) -> str:
    """A service's settings on one line: replicas (long-running services), then its env."""
    env = shown_env(plan, svc)
    parts = [f"replicas {svc.replicas}"] if svc.type in LONG_RUNNING else []
    if svc.autoscale is not None:  # DESIGN.md §11
        scale = svc.autoscale
        parts = [f"replicas {scale.min}–{scale.max} (autoscaled at {scale.cpu}% CPU)"]
    parts.append("env " + (", ".join(f"{k}={v}" for k, v in env.items()) if env else "-"))
    return " · ".join(parts)
