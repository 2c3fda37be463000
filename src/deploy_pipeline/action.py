"""The GitHub Action: `INPUT_*` in, the same Operation as the CLI, and back out as GitHub reads
it — workflow commands in the log (masks first, a group per stage, errors on the file's line),
`$GITHUB_OUTPUT`, the job summary, and statuses, deployments and the PR comment via `github`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from deploy_pipeline.action_inputs import INPUT_ACTIONS, Inputs, Move, kubeconfig_secrets
from deploy_pipeline.config import load_config
from deploy_pipeline.durations import tenths
from deploy_pipeline.errors import ConfigError, ConfigErrors, DeployPipelineError, UsageError
from deploy_pipeline.events import secret_values
from deploy_pipeline.model import Action, Release
from deploy_pipeline.operation import Operation, Request
from deploy_pipeline.previews import PreviewPolicy, decide
from deploy_pipeline.releases import release_line
from deploy_pipeline.reporting.markdown import job_summary, service_rows, service_urls
from deploy_pipeline.runner import Cancel
from deploy_pipeline.steps import RunResult, environment_url
from deploy_pipeline.trust import ungranted
from deploy_pipeline.webhooks import Delivery
from deploy_pipeline.workflow_commands import Commands, StageGroups
from deploy_pipeline.workspace import Workspace

if TYPE_CHECKING:
    from deploy_pipeline.github import GitHubReporter

# where the clients find what the kubeconfig and registry-password inputs give (written
# privately under RUNNER_TEMP): read from the process environment, not from the step's
SDK_SETTINGS = ("KUBECONFIG", "DOCKER_CONFIG")


def _write_private(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _set_output(environ: Mapping[str, str], outputs: Mapping[str, str]) -> None:
    path = environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as f:
        for key, value in outputs.items():
            if "\n" in value:
                marker = f"ghadelimiter_{uuid.uuid4()}"
                f.write(f"{key}<<{marker}\n{value}\n{marker}\n")
            else:
                f.write(f"{key}={value}\n")


def _summary(environ: Mapping[str, str], text: str) -> None:
    path = environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with Path(path).open("a", encoding="utf-8") as f:
            f.write(text)


def run_action(environ: Mapping[str, str], out: TextIO = sys.stdout) -> int:
    """The whole step: 0 when the action succeeded, 1 when it failed or the inputs are wrong."""
    cmd = Commands(out)
    inputs = Inputs(environ)
    env = dict(environ)
    token = inputs.get("github-token")
    registry_password = inputs.get("registry-password")
    kubeconfig = inputs.get("kubeconfig")
    # masks go out before anything else is printed
    cmd.mask([v for v in (token, registry_password) if v])
    if kubeconfig:
        cmd.mask(kubeconfig_secrets(kubeconfig))
    try:
        action = inputs.get("action", "deploy") or "deploy"
        if action not in INPUT_ACTIONS:
            raise UsageError(
                f"input action: expected one of {', '.join(INPUT_ACTIONS)}, got '{action}'"
            )
        move = Move.of(inputs, action)
        config = Path(inputs.get("config") or ".deploy-pipeline.yml")
        workspace_dir = Path(environ.get("GITHUB_WORKSPACE", "."))
        if not config.is_absolute():
            config = workspace_dir / config
        if not config.is_file():
            shown = inputs.get("config") or ".deploy-pipeline.yml"
            raise UsageError(
                f"input config: {shown} not found in the workspace; check the repository out "
                "first (actions/checkout), or set `config:` to the pipeline file's path"
            )
        if api := inputs.get("github-api-url"):
            env["GITHUB_API_URL"] = api
        private = Path(environ.get("RUNNER_TEMP") or tempfile.gettempdir()) / "deploy-pipeline"
        if kubeconfig:
            env["KUBECONFIG"] = str(_write_private(private, "kubeconfig", kubeconfig + "\n"))
        registry_user = inputs.get("registry-username")
        if registry_password:
            registry = inputs.get("registry")
            if not registry and _untrusted(environ):
                raise UsageError(
                    "input registry is required with registry-password on pull_request_target: "
                    "the pipeline file may be the pull request's, so the credentials go only to "
                    "the registry the workflow names (e.g. registry: registry.example.com/acme)"
                )
            env["DOCKER_CONFIG"] = str(
                _docker_config(private, config, registry_user, registry_password, registry)
            )
        with _sdk_settings({name: env[name] for name in SDK_SETTINGS if name in env}):
            return _run(cmd, inputs, env, action, config, token, move)
    except ConfigErrors as exc:
        for error in exc.errors:
            _annotate(cmd, error, environ)
        count = len(exc.errors)
        cmd.error(
            f"{count} problem{'s' if count > 1 else ''} in the pipeline file, annotated on "
            "its lines; fix them and push again"
        )
        return 1
    except ConfigError as exc:
        _annotate(cmd, exc, environ)
        return 1
    except DeployPipelineError as exc:
        cmd.error(str(exc))
        return 1


@contextmanager
def _sdk_settings(values: Mapping[str, str]) -> Iterator[None]:
    """The inputs' files where the Kubernetes and Docker clients look for them: the process
    environment, which they read when they are made. Set for the step, then put back."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _annotate(cmd: Commands, error: ConfigError, environ: Mapping[str, str]) -> None:
    file = error.file
    root = environ.get("GITHUB_WORKSPACE")
    if root and Path(file).is_absolute() and Path(file).is_relative_to(root):
        file = str(Path(file).relative_to(root))
    message = f"{error.path}: {error.problem}" if error.path else error.problem
    cmd.error(message, file=file, line=error.line, col=error.column, title="deploy-pipeline")


def _untrusted(environ: Mapping[str, str]) -> bool:
    """Whether the workspace's pipeline file may be a pull request's while the step holds the
    base repository's secrets: a `pull_request_target` workflow that checked the head out."""
    return environ.get("GITHUB_EVENT_NAME") == "pull_request_target"


def _granted(inputs: Inputs, environ: Mapping[str, str]) -> frozenset[str] | None:
    """The names services may get as `secrets:`: the `secrets` input when given, and always on
    pull_request_target (empty: none); None: any variable of the step, as the file says."""
    names = inputs.names("secrets")
    return frozenset(names) if names or _untrusted(environ) else None


def _check_granted(config: Path, granted: frozenset[str]) -> None:
    errors = ungranted(
        load_config(config),
        lambda service: granted,
        by="the step's `secrets` input",
        advice="add it to the step's `secrets:` input (in the base branch's workflow) to hand "
        "it to the service",
    )
    if errors:
        raise ConfigErrors(errors)


def _docker_config(
    folder: Path, config: Path, user: str, password: str, registry: str | None = None
) -> Path:
    """A DOCKER_CONFIG folder logging the docker SDK into `registry` (default: the pipeline's)."""
    registry = registry or load_config(config).registry
    if not registry:
        raise UsageError(
            "registry credentials were given, but the pipeline file has no `registry:`"
        )
    if not user:
        raise UsageError("input registry-password needs registry-username too")
    host = registry.split("/", 1)[0]
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    _write_private(folder / "docker", "config.json", json.dumps({"auths": {host: {"auth": auth}}}))
    return folder / "docker"


def _run(
    cmd: Commands,
    inputs: Inputs,
    env: dict[str, str],
    action: str,
    config: Path,
    token: str,
    move: Move,
) -> int:
    environments = inputs.names("environment")
    sha = env.get("GITHUB_SHA", "")
    dry_run = inputs.flag("dry-run")
    run_action_: Action
    if action == "preview":
        preview = _preview(cmd, env, config, dry_run)
        if preview is None:
            return 0
        run_action_, environments, sha = preview[0], [preview[1]], preview[2] or sha
    elif not environments:
        raise UsageError(
            "input environment is required: the environment to act on (e.g. `staging`)"
        )
    else:
        run_action_ = action  # type: ignore[assignment]
    request = Request(
        config,
        environments,
        run_action_,
        inputs.names("services"),
        inputs.names("targets"),
        dry_run,
        supersede=action == "preview",
        # a promotion's or a rollback's release keeps the commit of the release it moves
        commit=None if move.moves else sha or None,
        source=move.source,
        to=move.to,
    )
    granted = _granted(inputs, env)
    secrets_from: Mapping[str, str] = env
    if granted is not None:  # the services get these variables of the step, no other
        _check_granted(config, granted)
        secrets_from = {name: value for name, value in env.items() if name in granted}
    with Operation(request, environ=secrets_from) as operation:
        for release in operation.restored:  # a fresh runner's: read back from the target
            cmd.line(f"read back from {release.target}: {release_line(release)}")
        cmd.mask(secret_values(operation.secrets))
        groups = StageGroups(cmd, operation.run_plan)
        observers = _reporters(cmd, env, token, sha, operation, run_action_)
        cancel = Cancel()

        def stop(signum: int, frame: FrameType | None) -> None:
            cancel.set("the workflow run was cancelled")  # GitHub's cancel: SIGINT, then SIGTERM

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            result = operation.perform(
                [groups], cancel, observers=observers, on_wait=lambda m: cmd.emit(f"waiting: {m}")
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            groups.close()
            groups.flush(None)
            operation.close()  # released before waiting for GitHub to hear the end
            for observer in observers:
                observer.close()
    if result is None:
        cmd.error("cancelled while waiting for the environment's lock")
        return 1
    _finish(cmd, env, operation, result, run_action_, sha)
    return 0 if result.status == "succeeded" else 1


def _preview(
    cmd: Commands, env: dict[str, str], config: Path, dry_run: bool
) -> tuple[Action, str, str | None] | None:
    """What the pull_request event asks of its preview (action, environment, head commit), by
    the receiver's rules exactly (labels, drafts, forks as `previews:` says); None: nothing."""
    event_path = env.get("GITHUB_EVENT_PATH")
    if not event_path or not Path(event_path).is_file():
        raise UsageError(
            "action preview reads the pull_request event, and GITHUB_EVENT_PATH is not set: "
            "run it in a workflow `on: pull_request`"
        )
    payload = json.loads(Path(event_path).read_text(encoding="utf-8"))
    with Workspace(config, write=not dry_run) as ws:
        policy = PreviewPolicy.of(ws.pipeline.previews)
        decision = decide(Delivery("action", "pull_request", payload), policy)
        if decision.action == "ignore" or decision.pull_request is None:
            cmd.line(f"{decision.reason}: the preview is left as it is")
            skipped = {"status": "skipped", "environment-url": "", "services": "{}", "release": ""}
            _set_output(env, skipped)
            return None
        name = ws.preview(decision.pull_request.number, recover=not dry_run).name
    return decision.action, name, decision.sha


def _reporters(
    cmd: Commands,
    env: Mapping[str, str],
    token: str,
    sha: str,
    operation: Operation,
    action: Action,
) -> list[GitHubReporter]:
    from deploy_pipeline.github import GitHubReporter, GitHubSettings

    settings = GitHubSettings.from_actions(env, token, sha)
    if settings is None:
        missing = [
            name
            for name, value in (
                ("the github-token input", token),
                ("GITHUB_REPOSITORY", env.get("GITHUB_REPOSITORY")),
                ("the commit (GITHUB_SHA)", sha),
            )
            if not value
        ]
        cmd.line(f"GitHub reporting is off: {_missing(missing)}")
        return []
    reporter = GitHubReporter(
        settings,
        operation.run_plan,
        action,
        log=cmd.warning,
        redact=operation.redactor,
    )
    return [reporter]


def _missing(names: list[str]) -> str:
    """`the github-token input is empty`, `GITHUB_REPOSITORY and the commit (GITHUB_SHA) are
    not set`: what reporting to GitHub lacks, said as a sentence."""
    empty = "the github-token input is empty" if "the github-token input" in names else ""
    unset = [n for n in names if n != "the github-token input"]
    said = " and ".join(unset) + (" is not set" if len(unset) == 1 else " are not set")
    return "; ".join(part for part in (empty, said if unset else "") if part)


def _finish(
    cmd: Commands,
    env: Mapping[str, str],
    operation: Operation,
    result: RunResult,
    action: Action,
    sha: str,
) -> None:
    redact = operation.redactor
    rows = service_rows(result, operation.run_plan)
    public = [s.name for s in operation.pipeline.services.values() if s.public]
    services = {
        f"{r.environment}/{r.service}" if len(operation.run_plan.plans) > 1 else r.service: {
            "image": r.image,
            "url": r.url,
            "result": r.status,
            "target": r.target,
            "stage": r.stage,
        }
        for r in rows
    }
    _set_output(
        env,
        {
            "status": result.status,
            "environment-url": environment_url(service_urls(rows, public)) or "",
            "services": json.dumps(services, sort_keys=True),
            "release": _release_output(operation.releases, len(operation.run_plan.plans) > 1),
        },
    )
    summary = job_summary(
        result, operation.run_plan, action=action, sha=sha or None, releases=operation.releases
    )
    _summary(env, redact(summary))
    for failure in result.failures:
        cmd.error(failure)
    cmd.line(f"{action} {result.status} in {tenths(result.duration)}")
    for release in operation.releases:
        cmd.line(release_line(release))


def _release_output(releases: Sequence[Release], several: bool) -> str:
    """The `release` output: the number of the release the run recorded ("" when none: a
    failed run, a dry run, an action that makes none); with several environments, as the
    `services` output keys them, a JSON object of environment → number."""
    numbers = {r.environment: r.id for r in releases}  # a number per environment, not target
    if several:
        return json.dumps(numbers, sort_keys=True)
    return str(next(iter(numbers.values()), ""))


def main() -> int:
    return run_action(os.environ)


if __name__ == "__main__":
    raise SystemExit(main())
