"""The secrets a run hands its services: read from the environment by the names each service
lists (`secrets:`, and its `registry_auth:` login), refused when a real deploy lacks one or when
a value is too short to mask in logs (a registry username is no secret: it may be short)."""

from __future__ import annotations

from collections.abc import Mapping

from deploy_pipeline.errors import UsageError
from deploy_pipeline.events import MIN_SECRET, RunSecrets
from deploy_pipeline.model import Action, RunPlan, Service, Target


def resolve_secrets(
    run_plan: RunPlan,
    action: Action,
    environ: Mapping[str, str],
    targets: Mapping[str, Target],
    *,
    dry_run: bool,
) -> dict[str, dict[str, str]]:
    """Per service of the plan, the values of the secrets it lists that `environ` has."""
    needed = {
        p.service.name: p.service
        for plan in run_plan.plans
        for tp in plan.targets
        for sp in tp.stages
        for p in sp.services
    }
    # Only a deploy hands secrets to what it starts; a real target cannot do without them.
    real = (
        action == "deploy" and not dry_run and any(t.kind != "simulated" for t in targets.values())
    )
    missing: dict[str, list[str]] = {}
    for svc in needed.values():
        for name in svc.secret_names:
            if name not in environ:
                missing.setdefault(name, []).append(svc.name)
    if missing and real:
        listed = "; ".join(f"{name} (for {', '.join(users)})" for name, users in missing.items())
        raise UsageError(
            f"secrets not set in the environment: {listed}; export them before deploying, "
            "or rehearse with --dry-run"
        )
    secrets = {
        svc.name: {n: environ[n] for n in svc.secret_names if n in environ}
        for svc in needed.values()
    }
    check_maskable(
        {
            svc.name: {n: v for n, v in secrets[svc.name].items() if n in _masked(svc)}
            for svc in needed.values()
        }
    )
    return secrets


def _masked(svc: Service) -> set[str]:
    """The names whose values must be long enough to mask: all but a registry username."""
    auth = svc.registry_auth
    return {*svc.secrets, *((auth.password,) if auth else ())}


def check_maskable(secrets: RunSecrets) -> None:
    """A secret value under 4 characters cannot be masked in logs (masking it would mask
    ordinary words), so a run that would hand one over does not start."""
    short: dict[str, list[str]] = {}
    for service, values in secrets.items():
        for name, value in values.items():
            if 0 < len(value) < MIN_SECRET:
                short.setdefault(name, []).append(service)
    if short:
        listed = "; ".join(f"{name} (for {', '.join(users)})" for name, users in short.items())
        one = len(short) == 1
        raise UsageError(
            f"secret{'' if one else 's'} {listed} {'is' if one else 'are'} under {MIN_SECRET} "
            "characters: too short to mask in logs; give "
            f"{'it a longer value' if one else 'them longer values'}"
        )
