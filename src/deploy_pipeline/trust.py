"""What a pull request's own pipeline file may change, and what it may reach. With
DEPLOY_PIPELINE_SOURCE=pull-request the file comes from the pull request: its services' code and
settings are the pull request's; targets, registry, environments, previews and the names of the
secrets a service gets stay the operator's, from the receiver's own `-f` file.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

from deploy_pipeline.config import located, quote
from deploy_pipeline.errors import ConfigError, ConfigErrors
from deploy_pipeline.model import Pipeline

# the top-level keys whose meaning is what the runs may reach: the operator's file decides them
OPERATOR_KEYS = ("registry", "targets", "environments", "strategy", "previews")


@dataclass(frozen=True)
class Merged:
    pipeline: Pipeline
    ignored: tuple[str, ...]  # the operator's keys the pull request's file set otherwise


def merge_pull_request(proposed: Pipeline, operator: Pipeline) -> Merged:
    """The pipeline a pull request's run runs: the stages, services and defaults of `proposed`
    (the pull request's file), reaching only what `operator` (the receiver's file) gives. A
    service may name only the secrets the operator's file names for the service of the same
    name; any other is a located error, so the pull request is told rather than run."""

    def granted(service: str) -> Collection[str]:
        found = operator.services.get(service)
        return found.secrets if found is not None else ()

    def granted_login(service: str) -> Collection[str]:
        """A registry login may read what the operator's service reads, its own login's too."""
        found = operator.services.get(service)
        return found.secret_names if found is not None else ()

    errors = ungranted(
        proposed,
        granted,
        by="the receiver's pipeline file",
        advice="a pull request's service gets only the secrets the receiver's own file names "
        "for the service of the same name",
        granted_login=granted_login,
    )
    if errors:
        raise ConfigErrors(errors)
    merged = replace(
        proposed,
        registry=operator.registry,
        targets=operator.targets,
        environments=operator.environments,
        environment_order=operator.environment_order,
        previews=operator.previews,
    )
    ignored = tuple(
        key
        for key in OPERATOR_KEYS
        if (key,) in proposed.lines and _differs(key, proposed, operator)
    )
    return Merged(merged, ignored)


def ungranted(
    pipeline: Pipeline,
    granted: Callable[[str], Collection[str]],
    *,
    by: str,
    advice: str,
    granted_login: Callable[[str], Collection[str]] | None = None,
) -> list[ConfigError]:
    """Each secret a service of `pipeline` names that `granted(service)` does not hold, located
    on its line: `services.api.secrets[1]: 'X' is not granted to 'api' by …`; the names of its
    `registry_auth:` login are checked the same way, by `granted_login` when given."""
    errors = []
    for name, service in pipeline.services.items():
        allowed = granted(name)
        named: list[tuple[tuple[str | int, ...], str, Collection[str]]] = [
            (("secrets", i), secret, allowed) for i, secret in enumerate(service.secrets)
        ]
        if service.registry_auth is not None:
            login = (granted_login or granted)(name)
            auth = service.registry_auth
            named += [
                (("registry_auth", "username"), auth.username, login),
                (("registry_auth", "password"), auth.password, login),
            ]
        for where, secret, holds in named:
            if secret not in holds:
                listed = ", ".join(sorted(holds)) or "none"
                errors.append(
                    located(
                        pipeline,
                        ("services", name, *where),
                        f"{quote(secret)} is not granted to {quote(name)} by {by} "
                        f"(granted: {listed}); {advice}",
                    )
                )
    return errors


def _differs(key: str, proposed: Pipeline, operator: Pipeline) -> bool:
    if key == "strategy":
        return proposed.environment_order != operator.environment_order or (
            proposed.environments != operator.environments
        )
    return bool(getattr(proposed, key) != getattr(operator, key))
