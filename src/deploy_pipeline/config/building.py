"""The meaning of a well-formed file (DESIGN.md §2–§3): stages, services and their types,
targets, environments and what they refer to, previews; each section checked against the others
and turned into the model (`model.Pipeline`) the plan and the runner read."""

from __future__ import annotations

from dataclasses import replace

from deploy_pipeline import schema
from deploy_pipeline.config.access import registry_auth, target_tls
from deploy_pipeline.config.checks import NAME, VARIABLE, check_texts, one_line, preview_template
from deploy_pipeline.config.overrides import check_env, service_settings
from deploy_pipeline.config.patches import check_patches, kinds_made
from deploy_pipeline.config.problems import Loc, Problems, quote
from deploy_pipeline.config.schedules import schedule_problem, timezone_problem
from deploy_pipeline.config.sizing import check_sizing, requests_of, with_sizing
from deploy_pipeline.errors import choices
from deploy_pipeline.model import (
    BUILT,
    DEFAULT_STAGE_OF,
    DEFAULT_STAGES,
    LONG_RUNNING,
    BuildSpec,
    Defaults,
    Environment,
    Pipeline,
    Previews,
    Service,
    Strategy,
    Target,
)


def build(problems: Problems, m: schema.PipelineModel | None) -> Pipeline:
    """The pipeline of a file's model (None: too broken to read further); raises ConfigErrors
    with every problem found, the shape's (already in `problems`) and the meaning's."""
    if m is None:  # too broken to check the meaning: report the shape problems
        problems.raise_if_any()
        raise AssertionError("a failed validation always has errors")
    stages = tuple(m.stages) if m.stages is not None else DEFAULT_STAGES
    if problems.names["stages"] is None and problems.stages_known:
        problems.names["stages"] = list(stages)
    if not stages:
        problems.error(("stages",), "an empty list; name at least one stage or remove `stages:`")
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        if stage in seen:
            problems.error(
                ("stages", i), f"stage {quote(stage)} is listed twice; stage names are unique"
            )
        seen.add(stage)
    if not m.services and problems.names["services"] == []:
        problems.error(("services",), "no services; describe at least one")
    services = {name: build_service(problems, name, s, stages) for name, s in m.services.items()}
    targets = {name: build_target(problems, name, t) for name, t in m.targets.items()}
    if not m.targets and problems.names["targets"] == []:  # no targets: the local engine
        targets = {"local": Target(name="local", kind="docker")}
        problems.names["targets"] = list(targets)
    order = m.strategy.environments if m.strategy and m.strategy.environments else "sequential"
    environments = {
        name: build_environment(problems, name, e, m.strategy) for name, e in m.environments.items()
    }
    for name, s in m.services.items():
        own: Loc = ("services", name, "env")
        check_env(problems, own, s.env, [services[name]], services, stages, keys=False)
    for name, e in m.environments.items():
        at: Loc = ("environments", name)
        check_env(problems, (*at, "env"), e.env, services.values(), services, stages)
        settings = service_settings(problems, (*at, "services"), e.services, services, stages)
        environments[name] = replace(
            environments[name], env=tuple(e.env.items()), settings=settings
        )
    previews = None
    if m.previews is not None:
        problems.refer(("previews", "from"), "environment", m.previews.from_)
        preview_template(problems, m.previews.name)
        previews = Previews(
            source=m.previews.from_,
            name=m.previews.name,
            label=m.previews.label,
            drafts=m.previews.drafts,
            forks=m.previews.forks,
            ttl=m.previews.ttl,
            max=m.previews.max,
            env=tuple(m.previews.env.items()),
        )
        check_env(
            problems, ("previews", "env"), m.previews.env, services.values(), services, stages
        )
    check_texts(problems, m)
    problems.raise_if_any()
    d = m.defaults
    return Pipeline(
        path=problems.name,
        stages=stages,
        services=services,
        targets=targets,
        environments=environments,
        defaults=Defaults(d.parallelism, d.timeout, d.build_ahead, d.retries),
        registry=m.registry,
        previews=previews,
        environment_order=order,
        lines=problems.lines,
    )


def build_service(
    problems: Problems, name: str, s: schema.ServiceModel, stages: tuple[str, ...]
) -> Service:
    loc: Loc = ("services", name)
    if not NAME.fullmatch(name):
        problems.error(
            loc,
            "service names are lowercase letters, digits and '-' (at most 63), "
            f"starting and ending with a letter or digit, got {quote(name)}",
        )
    if s.type in BUILT and s.build is None and s.image is None:
        if s.type == "job":
            problems.error(
                loc, "a job needs `build:` (a folder of the repo) or `image:` (a prebuilt one)"
            )
        else:
            problems.error(
                loc,
                "an application is built from the repo: add `build: ./folder` "
                "(or use type: container with `image:`)",
            )
    if s.type in BUILT and s.build is not None and s.image is not None:
        problems.error(
            (*loc, "image"),
            "give `build:` or `image:`, not both: a built image is named by its content",
        )
    if s.build is not None and s.type not in BUILT:
        problems.error(
            (*loc, "build"),
            f"a {s.type} runs a prebuilt image, it is not built: use "
            "`image:`, or type: application to build it from the repo",
        )
    if s.type not in BUILT and s.image is None:
        problems.error(loc, f"a {s.type} needs `image:` (for example postgres:16 or nginx:1.27)")
    if s.test is not None and (s.type not in BUILT or s.build is None):
        what = f"runs the prebuilt image {quote(s.image)}" if s.image else "is not built"
        problems.error(
            (*loc, "test"),
            "only a service built from the repo (a job or an application with `build:`) is "
            f"tested; this {s.type} {what}: remove `test:`, or build it with `build:`",
        )
    if s.schedule is not None and s.type != "job":
        problems.error((*loc, "schedule"), "only a job can have a schedule (it becomes a cron job)")
    elif (
        s.schedule is not None
        and one_line(s.schedule)
        and (wrong := schedule_problem(s.schedule)) is not None
    ):
        problems.error((*loc, "schedule"), wrong)
    if s.timezone is not None and (s.schedule is None or s.type != "job"):
        problems.error(
            (*loc, "timezone"),
            "only a cron job (a job with `schedule:`) has a time zone: add `schedule:` or "
            "remove `timezone:`",
        )
    elif s.timezone is not None and (wrong := timezone_problem(s.timezone)) is not None:
        problems.error((*loc, "timezone"), wrong)
    if s.replicas is not None and s.type not in LONG_RUNNING:
        problems.error((*loc, "replicas"), "only containers and applications have replicas")
    if s.public and s.type not in LONG_RUNNING:
        problems.error((*loc, "public"), "only containers and applications can be public")
    if s.health is not None and s.port is None:
        problems.error(
            (*loc, "health"), "a health path is probed on the service's port: add `port:`"
        )
    if s.health is not None and not s.health.startswith("/"):
        problems.error(
            (*loc, "health"), f"expected an HTTP path starting with '/', got {quote(s.health)}"
        )
    for i, secret in enumerate(s.secrets):
        if not VARIABLE.fullmatch(secret):
            problems.error(
                (*loc, "secrets", i),
                "expected the name of an environment variable "
                f"(letters, digits, '_'), got {quote(secret)}",
            )
    if s.stage is not None:
        stage = s.stage
        if problems.stages_known:
            problems.refer((*loc, "stage"), "stage", stage)
    else:  # the default stage of its type if that exact name exists, otherwise the last stage
        default = DEFAULT_STAGE_OF[s.type]
        stage = default if default in stages else stages[-1] if stages else ""
    made = kinds_made(s.type, schedule=bool(s.schedule), port=bool(s.port), public=s.public)
    patches = check_patches(problems, (*loc, "kubernetes"), s.kubernetes, made, name)
    b = s.build
    svc = Service(
        name=name,
        type=s.type,
        stage=stage,
        image=s.image,
        build=BuildSpec(b.context, b.dockerfile, tuple(b.args.items()), b.target) if b else None,
        command=tuple(s.command) if s.command is not None else None,
        env=tuple(s.env.items()),
        port=s.port,
        replicas=s.replicas if s.replicas is not None else 1,
        health=s.health,
        secrets=tuple(s.secrets),
        schedule=s.schedule,
        public=s.public,
        timeout=s.timeout,
        resources=requests_of(s.resources),
        test=_command(s.test),
        registry_auth=registry_auth(problems, loc, s),
        patches=patches or (),
        timezone=s.timezone,
    )
    svc = with_sizing(problems, loc, s, svc)
    check_sizing(problems, loc, svc)
    return svc


def _command(test: list[str] | str | None) -> tuple[str, ...] | None:
    """A test's argv: a list as it is, a string run by /bin/sh -c (DESIGN §9)."""
    if test is None:
        return None
    return ("/bin/sh", "-c", test) if isinstance(test, str) else tuple(test)


def build_target(problems: Problems, name: str, t: schema.TargetModel) -> Target:
    loc: Loc = ("targets", name)
    if not NAME.fullmatch(name):
        problems.error(
            loc, f"target names are lowercase letters, digits and '-', got {quote(name)}"
        )
    if t.kind != "simulated":
        for key in ("durations", "fail"):
            if getattr(t, key):
                problems.error(
                    (*loc, key), f"only simulated targets take `{key}:`, this one is {t.kind}"
                )
    if t.domain is not None and t.kind != "kubernetes":
        problems.error(
            (*loc, "domain"), f"only kubernetes targets take a `domain:`, this one is {t.kind}"
        )
    if t.domain is not None and "{service}" not in t.domain:
        problems.error(
            (*loc, "domain"),
            f"must contain {{service}} (and usually {{environment}}), got {quote(t.domain)}",
        )
    if t.context is not None and t.kind != "kubernetes":
        problems.error(
            (*loc, "context"),
            f"only kubernetes targets take a `context:`, this one is {t.kind}",
        )
    for key in ("durations", "fail"):
        for service in getattr(t, key):
            problems.refer((*loc, key, service), "service", service)
    return Target(
        name=name,
        kind=t.kind,
        context=t.context,
        domain=t.domain,
        durations={k: {str(ph): d for ph, d in v.items()} for k, v in t.durations.items()},
        fail=dict(t.fail),
        tls=target_tls(problems, loc, t),
    )


def build_environment(
    problems: Problems,
    name: str,
    e: schema.EnvironmentModel,
    strategy: schema.StrategyModel | None,
) -> Environment:
    loc: Loc = ("environments", name)
    if not NAME.fullmatch(name):
        problems.error(
            loc, f"environment names are lowercase letters, digits and '-', got {quote(name)}"
        )
    if e.target is not None and e.targets is not None:
        problems.error((*loc, "targets"), "give `target:` or `targets:`, not both")
    names = e.targets if e.targets is not None else [e.target] if e.target else []
    known = problems.names["targets"]
    if not names and known is not None:  # (a broken targets: section is reported alone)
        if len(known) == 1:
            names = list(known)
        elif e.targets is None:
            problems.error(
                loc, "say where it deploys with `target:`; " + choices("", known, "targets")
            )
    if e.targets is not None and not e.targets:
        problems.error((*loc, "targets"), "an empty list; name at least one target")
    for i, target in enumerate(names):
        where = (*loc, "targets", i) if e.targets is not None else (*loc, "target")
        problems.refer(where, "target", target)
    for i, skipped in enumerate(e.skip):
        problems.refer((*loc, "skip", i), "service", skipped)
    own = e.strategy or strategy
    return Environment(
        name=name,
        targets=tuple(names),
        skipped=frozenset(e.skip),
        strategy=Strategy(own.services, own.targets) if own else Strategy(),
        production=e.production,
    )
