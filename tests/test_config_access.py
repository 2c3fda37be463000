"""A kubernetes target's `tls:` and a prebuilt image's `registry_auth:` (DESIGN.md §11) as the
file gives them: read into the model, every bad value located by line and key path, the JSON
Schema holding the same rules, and the login's names treated as the secrets they name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml

from deploy_pipeline.cli import main
from deploy_pipeline.config import load_config, parse_config
from deploy_pipeline.errors import ConfigErrors, UsageError
from deploy_pipeline.model import RegistryAuth, Tls
from deploy_pipeline.plan import plan_runs
from deploy_pipeline.run_secrets import resolve_secrets
from deploy_pipeline.trust import merge_pull_request

WriteConfig = Callable[..., Path]

GOOD = """\
version: 1
registry: registry.example.com/acme
targets:
  eu: {kind: kubernetes, domain: "{service}.{environment}.example.com", tls: {issuer: letsencrypt}}
  us: {kind: kubernetes, domain: "{service}.{environment}.example.com", tls: {secret: wildcard-tls}}
services:
  api: {type: container, image: registry.example.com/acme/api:1, port: 80, public: true}
  tool:
    type: container
    image: ghcr.io/team/tool:2
    registry_auth: {username: TOOL_USER, password: TOOL_TOKEN}
environments:
  staging: {target: eu}
  production: {target: us}
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_config(path)
    return [str(error) for error in caught.value.errors]


def test_tls_and_registry_auth_are_read_into_the_model(write_config: WriteConfig) -> None:
    """`tls: {issuer}` and `tls: {secret}` land on their targets, `registry_auth:` on its
    service, whose secret names then include the login's two variables."""
    pipeline = load_config(write_config(GOOD))
    assert pipeline.targets["eu"].tls == Tls(issuer="letsencrypt")
    assert pipeline.targets["us"].tls == Tls(secret="wildcard-tls")
    tool = pipeline.services["tool"]
    assert tool.registry_auth == RegistryAuth(username="TOOL_USER", password="TOOL_TOKEN")
    assert tool.secrets == ()
    assert tool.secret_names == ("TOOL_USER", "TOOL_TOKEN")
    assert pipeline.services["api"].registry_auth is None


def test_bad_tls_is_a_config_error_with_its_line_and_key_path(write_config: WriteConfig) -> None:
    """Both keys, neither, a docker target, no domain and a name that is no Kubernetes name are
    each refused on the line of `tls:` (or of the bad name), saying what would be right."""
    path = write_config(
        """\
        version: 1
        targets:
          eu: {kind: kubernetes, domain: "{service}.example.com", tls: {issuer: le, secret: s}}
          bare: {kind: kubernetes, tls: {}}
          laptop: {kind: docker, tls: {secret: Bad_Name}}
        services:
          web: {type: container, image: nginx:1.27}
        environments:
          dev: {target: eu}
        """
    )
    one = (
        "give exactly one of `issuer:` (a cert-manager ClusterIssuer that issues each public "
        "service's certificate, e.g. tls: {issuer: letsencrypt}) or `secret:` (an existing "
        "TLS Secret in each environment's namespace), got"
    )
    assert problems(path) == [
        f"{path}:3: targets.eu.tls: {one} both",
        f"{path}:4: targets.bare.tls: TLS is served on public services' Ingress, whose host "
        "comes from the target's `domain:`: add one, e.g. domain: "
        '"{service}.{environment}.example.com"',
        f"{path}:4: targets.bare.tls: {one} neither",
        f"{path}:5: targets.laptop.tls: only kubernetes targets take `tls:`, this one is docker",
        f"{path}:5: targets.laptop.tls.secret: expected the name of an existing TLS Secret "
        "(lowercase letters, digits, '-' and '.', at most 253), got 'Bad_Name'",
    ]


def test_an_unknown_tls_key_is_refused_with_the_keys_it_takes(write_config: WriteConfig) -> None:
    """A misspelt key under `tls:` is named with the key it probably meant."""
    path = write_config(
        """\
        version: 1
        targets:
          eu:
            kind: kubernetes
            domain: "{service}.example.com"
            tls: {isuer: letsencrypt}
        services:
          web: {type: container, image: nginx:1.27}
        """
    )
    assert problems(path) == [
        f"{path}:6: targets.eu.tls.isuer: unknown key 'isuer' (did you mean 'issuer'?)"
    ]


def test_bad_registry_auth_is_a_config_error_with_its_line(write_config: WriteConfig) -> None:
    """A built service's login (its image comes from `registry:`), a name that is no variable
    and a missing password are each refused on their line."""
    path = write_config(
        """\
        version: 1
        registry: registry.example.com/acme
        services:
          api:
            type: application
            build: ./api
            registry_auth: {username: U, password: P}
          tool:
            type: container
            image: ghcr.io/x/tool:1
            registry_auth: {username: "bad name", password: TOKEN}
          other:
            type: container
            image: ghcr.io/x/other:1
            registry_auth: {username: U}
        """
    )
    (path.parent / "api").mkdir()
    assert problems(path) == [
        f"{path}:7: services.api.registry_auth: a built image is pushed to the pipeline's "
        "`registry:` and pulled from it with the Docker login's credentials (docker login, or "
        "the Action's registry-username and registry-password); `registry_auth:` is for a "
        "prebuilt `image:` from another private registry: remove it",
        f"{path}:11: services.tool.registry_auth.username: expected the name of an environment "
        "variable holding it (letters, digits, '_'), got 'bad name'",
        f"{path}:15: services.other.registry_auth.password: required, but missing",
    ]


def schema_document(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["schema"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert isinstance(document, dict)
    return document


def test_the_schema_takes_the_keys_and_holds_their_rules(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An editor accepts the good file, and flags both TLS keys, none, a bad Secret name and a
    login without a password, as `validate` does."""
    validator = jsonschema.Draft202012Validator(schema_document(capsys))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(GOOD))] == []

    def errors(tls: object, auth: object) -> int:
        doc = {
            "version": 1,
            "targets": {"eu": {"kind": "kubernetes", "tls": tls}},
            "services": {"x": {"type": "container", "image": "a/b", "registry_auth": auth}},
        }
        return len(list(validator.iter_errors(doc)))

    good_auth = {"username": "U", "password": "P"}
    assert errors({"issuer": "letsencrypt"}, good_auth) == 0
    assert errors({"issuer": "a", "secret": "b"}, good_auth) == 1
    assert errors({}, good_auth) == 1
    assert errors({"secret": "Bad_Name"}, good_auth) == 1
    assert errors({"secret": "ok"}, {"username": "U"}) == 1
    assert errors({"secret": "ok"}, {"username": "U", "password": "not a name"}) == 1


def test_a_deploy_needs_the_logins_variables_and_masks_only_what_it_can(
    write_config: WriteConfig,
) -> None:
    """A real deploy without the login's password is refused naming it; a short username is
    handed on (it is no secret), a short password is refused as too short to mask."""
    pipeline = load_config(write_config(GOOD))
    run_plan = plan_runs(pipeline, pipeline.environments, ["production"], "deploy")
    targets = dict(pipeline.targets)

    def resolve(environ: dict[str, str]) -> dict[str, dict[str, str]]:
        return resolve_secrets(run_plan, "deploy", environ, targets, dry_run=False)

    with pytest.raises(UsageError) as caught:
        resolve({"TOOL_USER": "bot"})
    assert str(caught.value) == (
        "secrets not set in the environment: TOOL_TOKEN (for tool); export them before "
        "deploying, or rehearse with --dry-run"
    )
    assert resolve({"TOOL_USER": "bot", "TOOL_TOKEN": "ghp_token-0042"})["tool"] == {
        "TOOL_USER": "bot",
        "TOOL_TOKEN": "ghp_token-0042",
    }
    with pytest.raises(UsageError) as caught:
        resolve({"TOOL_USER": "bot", "TOOL_TOKEN": "ghp"})
    assert "TOOL_TOKEN (for tool) is under 4 characters" in str(caught.value)


def test_a_pull_requests_login_may_read_only_what_the_operator_grants() -> None:
    """A pull request's file cannot point a service's registry login at a variable the
    operator's file does not name for that service; the refusal is on the login's line."""
    operator = parse_config(GOOD, "operator.yml")
    proposed = parse_config(
        GOOD.replace("password: TOOL_TOKEN", "password: GITHUB_TOKEN"), "proposed.yml"
    )
    with pytest.raises(ConfigErrors) as caught:
        merge_pull_request(proposed, operator)
    assert [str(e) for e in caught.value.errors] == [
        "proposed.yml:11: services.tool.registry_auth.password: 'GITHUB_TOKEN' is not granted "
        "to 'tool' by the receiver's pipeline file (granted: TOOL_TOKEN, TOOL_USER); a pull "
        "request's service gets only the secrets the receiver's own file names for the "
        "service of the same name",
    ]
    assert merge_pull_request(operator, operator).pipeline.services["tool"].registry_auth
