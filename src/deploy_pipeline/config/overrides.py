"""An environment's settings (DESIGN.md §8): its `env`, its services' overrides, the previews'
`env`; each checked against the services it names, and every env value's substitutions checked,
`${url:SERVICE}` by the stage rule (SERVICE deploys in an earlier stage, so its URL is known)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from deploy_pipeline import schema
from deploy_pipeline.config.checks import one_line
from deploy_pipeline.config.patches import check_patches, kinds_made
from deploy_pipeline.config.problems import Loc, Problems, describe, quote
from deploy_pipeline.config.sizing import check_sizing, requests_of, resized, settings_with_sizing
from deploy_pipeline.config.substitution import problem, urls
from deploy_pipeline.model import LONG_RUNNING, Service, ServiceSettings


def service_settings(
    problems: Problems,
    loc: Loc,
    overrides: Mapping[str, schema.ServiceSettingsModel],
    services: Mapping[str, Service],
    stages: tuple[str, ...],
) -> tuple[tuple[str, ServiceSettings], ...]:
    """An environment's `services:` (at `loc`) as settings, each checked against its service."""
    found = []
    for name, o in overrides.items():
        where: Loc = (*loc, name)
        problems.refer(where, "service", name)
        svc = services.get(name)
        if svc is None:
            continue
        if o.image is not None and svc.build is not None:
            problems.error(
                (*where, "image"),
                f"{quote(name)} is built from the repo ({quote(svc.build.context)}), its image "
                "is named by its content; only prebuilt services (with `image:`) take an image "
                "per environment",
            )
        if o.image is not None and not one_line(o.image):
            problems.error(
                (*where, "image"),
                "expected single-line printable text (no line breaks, tabs or control "
                f"characters), got {describe(o.image)}",
            )
        if o.replicas is not None and svc.type not in LONG_RUNNING:
            problems.error((*where, "replicas"), "only containers and applications have replicas")
        check_env(problems, (*where, "env"), o.env, [svc], services, stages)
        made = kinds_made(
            svc.type, schedule=bool(svc.schedule), port=bool(svc.port), public=svc.public
        )
        patches = check_patches(problems, (*where, "kubernetes"), o.kubernetes, made, name)
        own = ServiceSettings(
            env=tuple(o.env.items()),
            replicas=o.replicas,
            image=o.image,
            resources=requests_of(o.resources) or None,
            timeout=o.timeout,
            patches=patches,
        )
        own = settings_with_sizing(problems, where, o, own)
        found.append((name, own))
        if o.resources or o.autoscale or o.storage or o.replicas is not None:
            if o.autoscale is not None and svc.type not in LONG_RUNNING:
                problems.error((*where, "autoscale"), "only containers and applications autoscale")
            requests = {**dict(svc.resources), **dict(own.resources or ())}
            replicas = svc.replicas if o.replicas is None else o.replicas
            sized = replace(svc, resources=tuple(requests.items()), replicas=replicas)
            check_sizing(problems, where, resized(sized, own))
    return tuple(found)


def check_env(
    problems: Problems,
    loc: Loc,
    env: Mapping[str, str],
    users: Iterable[Service],
    services: Mapping[str, Service],
    stages: tuple[str, ...],
    *,
    keys: bool = True,
) -> None:
    """The keys (unless `check_texts` does) and substitutions of one `env:` (at `loc`) given to
    `users`: each `${url:SERVICE}` names a service of an earlier stage than all of theirs."""
    users = list(users)
    for key, value in env.items():
        where: Loc = (*loc, key)
        if keys and not one_line(key):
            problems.error(
                where,
                "expected single-line printable text (no line breaks, tabs or control "
                f"characters), got {describe(key)}",
            )
        wrong = problem(value)
        if wrong is not None:
            problems.error(where, wrong)
            continue
        for name in urls(value):
            if name not in services:
                problems.refer(where, "service", name)
                continue
            earlier = services[name]
            for user in users:
                late = _late(earlier, user, stages)
                if late and user.name == name:
                    problems.error(
                        where,
                        f"${{url:{name}}}: {quote(name)} cannot use its own URL; only a service "
                        "of an earlier stage has its URL when it deploys",
                    )
                    break
                if late:
                    problems.error(
                        where,
                        f"${{url:{name}}}: {quote(user.name)} (stage {quote(user.stage)}) names "
                        f"the URL of {quote(name)} (stage {quote(earlier.stage)}), which deploys "
                        f"{late}; only a service of an earlier stage has its URL by then: move "
                        f"{quote(name)} to an earlier stage",
                    )
                    break


def _late(earlier: Service, user: Service, stages: tuple[str, ...]) -> str:
    """'in the same stage' or 'in a later stage' when `earlier` does not deploy before `user`."""
    if earlier.stage not in stages or user.stage not in stages:
        return ""  # an unknown stage is reported on its own
    a, b = stages.index(earlier.stage), stages.index(user.stage)
    return "in the same stage" if a == b else "in a later stage" if a > b else ""
