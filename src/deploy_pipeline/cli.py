"""`deploy-pipeline`: validate, plan, deploy, restart, stop, delete, promote, rollback, history,
logs, and manage environments.

`main(argv) -> int` returns the exit code of DESIGN.md §5: 0 success, 1 the run failed, 2 bad
usage or bad config, 130 interrupted. Heavy imports wait until a command needs them, so `--help`
is fast and never loads an engine's SDK.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, TextIO

import deploy_pipeline
from deploy_pipeline.cli_commands import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, dispatch
from deploy_pipeline.errors import ConfigErrors, DeployPipelineError, UsageError
from deploy_pipeline.model import ACTIONS

DESCRIPTION = """\
Deploy an environment of services in ordered stages, from one file: .deploy-pipeline.yml.

Stage k+1 starts when every service of stage k is up; inside a stage, builds and deploys run in
parallel (defaults.parallelism, 7). Targets are Kubernetes, the local Docker engine, or a
simulated target for rehearsals; --dry-run rehearses any environment without touching anything."""

EPILOG = """\
examples:
  deploy-pipeline validate                          check ./.deploy-pipeline.yml
  deploy-pipeline plan -e staging                   what a deploy of staging would run, in order
  deploy-pipeline deploy -e staging --dry-run       rehearse it on the simulated target
  deploy-pipeline deploy -e staging --service api   deploy one service (even a skipped one)
  deploy-pipeline deploy -e dev -e prod             dev, then prod if dev succeeded
  deploy-pipeline env clone staging demo            a new environment with staging's skip set
  deploy-pipeline history -e staging                its releases: images by digest, newest first
  deploy-pipeline promote --from staging -e prod    staging's images to prod, prod's settings
  deploy-pipeline rollback -e prod                  prod's release before the latest, again
  deploy-pipeline stop -e demo                      scale to zero, last stage first

exit codes: 0 success · 1 the run failed · 2 bad usage or bad config · 130 interrupted
            (143 after SIGTERM: stopped the same way)"""


class _Version(argparse.Action):
    """`--version`, reading the package's version only when asked for it."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: object) -> None:
        super().__init__(
            option_strings,
            argparse.SUPPRESS,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show program's version number and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"deploy-pipeline {deploy_pipeline.__version__}")  # on stdout, as argparse's
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="deploy-pipeline", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt
    )
    parser.add_argument("--version", action=_Version)
    file = argparse.ArgumentParser(add_help=False)
    file.add_argument(
        "-f",
        "--file",
        type=Path,
        default=Path(".deploy-pipeline.yml"),
        help="the pipeline file (default: ./.deploy-pipeline.yml)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser(
        "validate",
        parents=[file],
        formatter_class=fmt,
        help="check a pipeline file and say what is wrong, with line numbers",
        description="Check a pipeline file. Every problem is listed as "
        "FILE:LINE: key.path: what is wrong; exit code 2 when there is any.",
    )
    sub.add_parser(
        "schema",
        help="print the JSON Schema of .deploy-pipeline.yml (for editors)",
        description="Print the JSON Schema of .deploy-pipeline.yml version 1. Point "
        "your editor's YAML language server at it for completion and checks.",
    )

    plan = sub.add_parser(
        "plan",
        parents=[file],
        formatter_class=fmt,
        help="show the stages and services a run would go through",
        description="Show, per target, the stages in the order they run, each "
        "with its services (built or prebuilt), and what is skipped.",
        epilog="examples:\n  deploy-pipeline plan -e staging --action delete --format json\n"
        "  deploy-pipeline plan -e staging --manifests     the objects a deploy would apply",
    )
    _env_args(plan)
    plan.add_argument(
        "--action", choices=ACTIONS, default="deploy", help="the action to plan (default: deploy)"
    )
    plan.add_argument("--format", choices=("text", "json"), default="text")
    plan.add_argument(
        "--manifests",
        action="store_true",
        help="print, per kubernetes target, the exact objects a deploy would apply, as YAML "
        "documents (as helm template does), patches applied; secrets' values are left out, a "
        "built image is shown by the tag its build pushes (the deploy runs it by that tag's "
        "digest) and a lifecycle Job's run label as <run>. Needs no cluster",
    )

    for action, summary in (
        ("deploy", "build what needs building, then deploy, stage by stage"),
        ("restart", "restart running services, stage by stage (no build)"),
        ("stop", "scale services to zero and suspend cron jobs, last stage first"),
        ("delete", "remove everything, skipped services too, last stage first"),
    ):
        cmd = sub.add_parser(
            action,
            parents=[file],
            formatter_class=fmt,
            help=summary,
            description=f"{action.capitalize()}: {summary}.\n\nWith --service, "
            "only the named services (skipped or not), in stage order.",
            epilog=f"example:\n  deploy-pipeline {action} -e staging --dry-run",
        )
        _env_args(cmd)
        cmd.add_argument(
            "--target",
            dest="targets",
            action="append",
            default=[],
            metavar="NAME",
            help="only this target of the environment (repeat for several)",
        )
        cmd.add_argument(
            "--dry-run",
            action="store_true",
            help="rehearse on the simulated target with the real ordering; touch nothing",
        )
        cmd.add_argument(
            "--force-conflicts",
            action="store_true",
            help="kubernetes: take over fields another tool owns (server-side apply --force)",
        )
        _run_args(cmd)

    _moves_args(sub, file, fmt)
    _logs_args(sub, file, fmt)
    history = sub.add_parser(
        "history",
        parents=[file],
        formatter_class=fmt,
        help="list an environment's releases, newest first, and the deploys that failed",
        description="Every deploy that succeeds on an environment and target records a "
        "release: a number (v1, v2, …), the run, the time, the git commit, and for every "
        "service the image by digest and the settings it runs with (env without secrets, "
        "replicas). Services a run did not touch carry over, so each release is the whole "
        "picture of what runs. Deploys that failed are listed too, with no release.",
        epilog="""examples:
  deploy-pipeline history -e staging                one line per release, newest first
  deploy-pipeline history -e staging --limit 5 --format json

text columns: release, finished (UTC), run, action, commit, images by digest""",
    )
    _one_env_arg(history, "the environment whose releases to list")
    history.add_argument("--format", choices=("text", "json"), default="text")
    history.add_argument(
        "--limit", type=_count, default=20, metavar="N", help="at most N entries (default: 20)"
    )

    serve = sub.add_parser(
        "serve",
        parents=[file],
        formatter_class=fmt,
        help="run the webhook receiver: a preview environment for every pull request",
        description="Serve GitHub webhooks: POST /webhooks/github. pull_request opened, "
        "reopened, synchronize and ready_for_review deploy the PR's preview (a clone of "
        "previews.from) at its head commit; closed deletes it. Deliveries are verified, stored "
        "and answered at once; workers run them. Also a status page (GET /) and a JSON API "
        "(GET /api/openapi.json describes it).",
        epilog="""environment:
  DEPLOY_PIPELINE_WEBHOOK_SECRET   required: the webhook's secret on GitHub
  GITHUB_TOKEN                     report to GitHub with a token, or as a GitHub App:
  GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_FILE),
  GITHUB_APP_INSTALLATION_ID       (looked up per repository when unset)
  GITHUB_API_URL                   GitHub Enterprise's API (https://api.github.com)
  DEPLOY_PIPELINE_SOURCE           file (default: -f FILE and its folder) or pull-request
                                   (each PR head's .deploy-pipeline.yml and build contexts)
  DEPLOY_PIPELINE_API_TOKEN        bearer token for /api (writes are off without one)
  DEPLOY_PIPELINE_DATABASE_URL     postgresql://… to share the work between receivers
  DEPLOY_PIPELINE_PUBLIC_URL       where GitHub links to runs and the status page
  DEPLOY_PIPELINE_REPOSITORY       owner/name: ignore the deliveries of any other repository
  DEPLOY_PIPELINE_WORKERS          runs at once (2); DEPLOY_PIPELINE_SWEEP_SECONDS (300)
  DEPLOY_PIPELINE_UPLOADS          webhook bodies read at once (8), each within
                                   DEPLOY_PIPELINE_READ_SECONDS (10)

example:
  DEPLOY_PIPELINE_WEBHOOK_SECRET=… GITHUB_TOKEN=… deploy-pipeline serve --host 0.0.0.0""",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8080, help="port to listen on (8080)")
    env = sub.add_parser(
        "env",
        help="list, clone, recover and change the skip sets of environments",
        description="Environments come from the file; clones and skip changes "
        "are kept in .deploy-pipeline/state.db (or $DEPLOY_PIPELINE_STATE).",
    )
    env_sub = env.add_subparsers(dest="env_command", metavar="SUBCOMMAND", required=True)
    listing = env_sub.add_parser(
        "list", parents=[file], help="environments with their skip sets and status"
    )
    listing.add_argument("--format", choices=("text", "json"), default="text")
    clone = env_sub.add_parser(
        "clone", parents=[file], help="a new environment copying one's targets and skip set"
    )
    clone.add_argument("source")
    clone.add_argument("new")
    recover = env_sub.add_parser(
        "recover",
        parents=[file],
        help="read environments back from the Kubernetes targets into the state database",
        description="Every namespace deploy-pipeline makes carries its environment's record "
        "(source, skipped services, preview PR). After the state database is lost, or on "
        "another machine, this restores the clones and previews it does not know and the skip "
        "changes of the file's environments, and each environment's latest release (kept on "
        "its containers' labels and its namespace). deploy, restart, stop and delete do it by "
        "themselves for an environment they do not know.",
    )
    recover.add_argument(
        "environments", nargs="*", metavar="ENVIRONMENT", help="only these (default: all found)"
    )
    for verb, text in (
        ("skip", "leave services out of environment-level runs"),
        ("unskip", "put skipped services back"),
    ):
        cmd = env_sub.add_parser(verb, parents=[file], help=text)
        cmd.add_argument("environment")
        cmd.add_argument("services", nargs="+", metavar="SERVICE")
    return parser


def _moves_args(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    file: argparse.ArgumentParser,
    fmt: type[argparse.HelpFormatter],
) -> None:
    """`promote` and `rollback` (DESIGN §10): deploys of images a release recorded."""
    promote = sub.add_parser(
        "promote",
        parents=[file],
        formatter_class=fmt,
        help="deploy another environment's images here, with this environment's settings",
        description="Deploy to ENV the images of SOURCE's latest release, by digest, with "
        "ENV's own settings: the image moves, settings stay with their environment. Nothing is "
        "built or tested (the images passed their tests when they were built); the deploy is "
        "staged and waits for health like any other, holds ENV's lock, and records a release "
        "of ENV that names SOURCE. Services SOURCE's release does not have keep what they run "
        "(the summary names them).",
        epilog="""examples:
  deploy-pipeline promote --from staging -e production
  deploy-pipeline promote --from staging -e production --service api""",
    )
    promote.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="SOURCE",
        help="the environment whose latest release's images to deploy",
    )
    rollback = sub.add_parser(
        "rollback",
        parents=[file],
        formatter_class=fmt,
        help="deploy an earlier release again: its images and its settings",
        description="Deploy again the images *and the settings* (env, replicas) of an earlier "
        "release of ENV (default: the release before the latest), stage by stage, waiting "
        "for health as a deploy does. Nothing is built or tested. It records a new release "
        "that says which one it restored; it stays until the next deploy or promote.",
        epilog="""examples:
  deploy-pipeline rollback -e production            the release before the latest
  deploy-pipeline rollback -e production --to 3     release v3 (history lists them)""",
    )
    rollback.add_argument(
        "--to",
        type=_count,
        metavar="RELEASE",
        help="the release number to go back to (default: the one before the latest)",
    )
    for cmd in (promote, rollback):
        _env_args(cmd)
        _run_args(cmd)


def _run_args(cmd: argparse.ArgumentParser) -> None:
    """--events and --supersede: what every command that runs steps takes."""
    cmd.add_argument(
        "--events",
        choices=("jsonl",),
        help="print one JSON object per event on stdout (the summary goes to stderr)",
    )
    cmd.add_argument(
        "--supersede",
        action="store_true",
        help="if another run holds the environment, ask it to stop and take over",
    )


def _logs_args(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    file: argparse.ArgumentParser,
    fmt: type[argparse.HelpFormatter],
) -> None:
    """`logs` (DESIGN §10): the services' own output, or one run's events and step logs."""
    logs = sub.add_parser(
        "logs",
        parents=[file],
        formatter_class=fmt,
        help="the services' output from their target, or a run's events and step logs",
        description="The services' own output, read from their target (container logs on "
        "Docker, pod logs on Kubernetes), each line prefixed with its service (SERVICE-N for "
        "replica N of several). With --run ID: that run's events and step logs (build, test, "
        "job output) instead. Secrets are masked.",
        epilog="examples:\n  deploy-pipeline logs -e staging --service api --tail 50 --follow"
        "\n  deploy-pipeline logs -e staging --run 12",
    )
    _one_env_arg(logs, "the environment")
    _service_arg(logs)
    logs.add_argument(
        "--run", type=_count_arg, metavar="ID", help="that run's events and step logs instead"
    )
    logs.add_argument(
        "--tail", type=_count_arg, metavar="N", help="the last N lines of each replica (or step)"
    )
    logs.add_argument("--follow", action="store_true", help="go on printing new lines until Ctrl-C")


MAX_WHOLE = 2**63 - 1  # the largest number a database column holds


def _whole(low: int, high: int, wanted: str) -> Callable[[str], int]:
    """argparse's type for a whole number from `low` to `high` (decimal ASCII digits: `²` is a
    digit to str.isdigit). A number past what a database column holds reads as that most: a
    --limit or --tail that large means all, and no run has such an id."""

    def parse(text: str) -> int:
        if text.isascii() and text.isdigit():
            number = MAX_WHOLE if len(text) > 19 else min(int(text), MAX_WHOLE)
            if low <= number <= high:
                return number
        raise argparse.ArgumentTypeError(f"{wanted}, got {text!r}")

    return parse


_count_arg = _whole(0, MAX_WHOLE, "expected a whole number (0 or more)")  # --tail, --run
_count = _whole(1, MAX_WHOLE, "expected a whole number from 1 up")  # --limit, --to
# --port: a socket would take 99999 modulo 65536
_port = _whole(1, 65535, "a port is a number from 1 to 65535")


def _env_args(cmd: argparse.ArgumentParser) -> None:
    """-e ENV (repeatable: several environments, DESIGN §2) and --service NAME."""
    cmd.add_argument(
        "-e",
        "--environment",
        dest="environments",
        action="append",
        required=True,
        metavar="ENV",
        help="the environment (repeat for several, run in the order given)",
    )
    _service_arg(cmd)


def _one_env_arg(cmd: argparse.ArgumentParser, help: str) -> None:
    """-e ENV, once: commands about one environment's history."""
    cmd.add_argument(
        "-e", "--environment", dest="environment", required=True, metavar="ENV", help=help
    )


def _service_arg(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--service",
        dest="services",
        action="append",
        default=[],
        metavar="NAME",
        help="only this service (repeat for several)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2)
        return int(exc.code or 0)
    out = ReaderMayLeave(sys.stdout)
    try:
        with redirect_stdout(out):
            return dispatch(args)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        count = len(exc.errors)
        print(f"{count} problem{'s' if count > 1 else ''} found; nothing was run", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeployPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        out.finish()


class ReaderMayLeave:
    """stdout for one command, whose reader may stop reading (`plan | head -c 1`): from then on
    the output is dropped, quietly, and the command goes on, so a run is never cut short by its
    reader and the exit code stays the command's own. (It was a BrokenPipeError traceback.)"""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.gone = stream, False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self.leave()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self.leave()

    def leave(self) -> None:
        """The Python docs' recipe: point the descriptor at /dev/null, so what is still buffered
        (flushed again at exit) goes nowhere instead of raising again."""
        self.gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no descriptor (a test's capture): dropping is enough
            pass

    def finish(self) -> None:
        self.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding… for rich's Console
        return getattr(self.stream, name)


def entry() -> None:
    sys.exit(main())
