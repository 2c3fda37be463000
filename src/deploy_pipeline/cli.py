"""`deploy-pipeline`: validate, plan, deploy, restart, stop, delete, and manage environments.

`main(argv) -> int` returns the exit code of DESIGN.md §5: 0 success, 1 the run failed, 2 bad
usage or bad config, 130 interrupted. Heavy imports wait until a command needs them, so `--help`
is fast and never loads an engine's SDK.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import deploy_pipeline
from deploy_pipeline.errors import ConfigErrors, DeployPipelineError, UsageError
from deploy_pipeline.model import ACTIONS

if TYPE_CHECKING:
    from deploy_pipeline.execution import Workspace
    from deploy_pipeline.model import EnvironmentRecord

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TERMINATED = 143  # SIGTERM (128 + 15): stopped like Ctrl-C, said apart from it
TERMINATED = "terminated (SIGTERM)"

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
  deploy-pipeline deploy -e dev -e prod             promote: dev, then prod if dev succeeded
  deploy-pipeline env clone staging demo            a new environment with staging's skip set
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
        epilog="example:\n  deploy-pipeline plan -e staging --action delete --format json",
    )
    _env_args(plan)
    plan.add_argument(
        "--action", choices=ACTIONS, default="deploy", help="the action to plan (default: deploy)"
    )
    plan.add_argument("--format", choices=("text", "json"), default="text")

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
            "--events",
            choices=("jsonl",),
            help="print one JSON object per event on stdout (the summary goes to stderr)",
        )
        cmd.add_argument(
            "--force-conflicts",
            action="store_true",
            help="kubernetes: take over fields another tool owns (server-side apply --force)",
        )
        cmd.add_argument(
            "--supersede",
            action="store_true",
            help="if another run holds the environment, ask it to stop and take over",
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
        "changes of the file's environments. deploy, restart, stop and delete do it by "
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


def _port(text: str) -> int:
    """argparse's type for --port: 1 to 65535 (a socket would take 99999 modulo 65536)."""
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, got {text!r}")


def _env_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "-e",
        "--environment",
        dest="environments",
        action="append",
        required=True,
        metavar="ENV",
        help="the environment (repeat for several, run in the order given)",
    )
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
            return _dispatch(args)
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


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def entry() -> None:
    sys.exit(main())


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "schema":
        from deploy_pipeline.schema import json_schema

        print(json.dumps(json_schema(), indent=2))
        return EXIT_OK
    if args.command == "validate":
        from deploy_pipeline.config import load_config

        p = load_config(args.file)
        counts = ", ".join(
            _count(n, word)
            for n, word in [(len(p.environments), "environment"), (len(p.targets), "target")]
        )
        print(
            f"✔ {args.file} is valid: {_count(len(p.services), 'service')} in "
            f"{_count(len(p.stages), 'stage')}, {counts}"
        )
        return EXIT_OK
    if args.command == "plan":
        return _plan(args)
    if args.command == "env":
        return _env(args)
    if args.command == "serve":
        return _serve(args)
    return _run(args)


def _serve(args: argparse.Namespace) -> int:
    from deploy_pipeline.receiver import serve

    serve(args.file, os.environ, host=args.host, port=args.port)
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    from deploy_pipeline.execution import Workspace, image_states
    from deploy_pipeline.plan import plan_json, plan_runs, plan_text

    ws = Workspace(args.file, write=False)
    try:
        run_plan = plan_runs(
            ws.pipeline, ws.environments(), args.environments, args.action, args.services
        )
        images = {}
        if args.format == "text" and args.action == "deploy":
            images = image_states(ws, run_plan, Path(args.file).resolve().parent)
    finally:
        ws.close()
    if args.format == "json":
        docs = [plan_json(p) for p in run_plan.plans]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        order = run_plan.environment_order
        if len(run_plan.plans) > 1:
            print(
                f"{len(run_plan.plans)} environments, {order}; a failure stops the ones after it"
                if order == "sequential"
                else f"{len(run_plan.plans)} environments, in parallel"
            )
        print("\n\n".join(plan_text(p, images) for p in run_plan.plans))
    return EXIT_OK


def _env(args: argparse.Namespace) -> int:
    from deploy_pipeline.execution import Workspace

    ws = Workspace(args.file, write=args.env_command != "list")
    try:
        if args.env_command == "list":
            return _env_list(ws, args.format)
        if args.env_command == "clone":
            rec = ws.clone(args.source, args.new)
            skipped = ", ".join(sorted(rec.skipped)) or "nothing"
            print(f"✔ cloned {args.source} → {args.new} (skipped: {skipped})")
            return EXIT_OK
        if args.env_command == "recover":
            recovered = ws.recover(args.environments or None)
            for rec in recovered:
                print(f"✔ {_recovered(rec, ws)}")
            if not recovered:
                print("nothing to read back: the state database knows every environment deployed")
            return EXIT_OK
        env = ws.set_skipped(args.environment, args.services, args.env_command == "skip")
        print(f"✔ {env.name} skips: {', '.join(sorted(env.skipped)) or 'nothing'}")
        return EXIT_OK
    finally:
        ws.close()


def _recovered(rec: EnvironmentRecord, ws: Workspace) -> str:
    skipped = ", ".join(sorted(ws.environments()[rec.name].skipped)) or "nothing"
    if rec.origin == "file":
        return f"{rec.name} skips {skipped}"
    what = f"preview of PR #{rec.pull_request}" if rec.pull_request else "clone"
    return f"{rec.name}, {what} of {rec.source}, skips {skipped}"


def _env_list(ws: Workspace, fmt: str) -> int:
    rows: list[dict[str, Any]] = ws.listing()
    if fmt == "json":
        print(json.dumps({"environments": rows}, indent=2))
        return EXIT_OK
    header = ["NAME", "SOURCE", "TARGETS", "SKIPPED", "STATUS", "LAST RUN"]
    table = [header] + [
        [
            str(r["name"]),
            str(r["source"] or "(file)"),
            ",".join(r["targets"]),
            ",".join(r["skipped"]) or "-",
            str(r["status"]),
            str(r["last_run"] or "-"),
        ]
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from deploy_pipeline.events import EventSink, JsonLines, PlainLines
    from deploy_pipeline.execution import Execution, Request
    from deploy_pipeline.reporting.terminal import LiveView, print_summary
    from deploy_pipeline.runner import Cancel

    request = Request(
        args.file,
        args.environments,
        args.command,
        args.services,
        args.targets,
        args.dry_run,
        args.supersede,
        args.force_conflicts,
    )
    execution = Execution(request)
    jsonl = args.events == "jsonl"
    console = Console(stderr=jsonl, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # logs are read in wide windows; don't wrap them at 80
    live = console.is_terminal and not jsonl and "DEPLOY_PIPELINE_PLAIN" not in os.environ
    sinks: list[EventSink] = (
        [JsonLines(sys.stdout)] if jsonl else [] if live else [PlainLines(sys.stdout)]
    )
    view = LiveView(console)
    cancel = Cancel()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        """Ctrl-C, or SIGTERM (a service manager, CI, `kill`): stop at the next safe point,
        record the run cancelled and print the report; a second signal quits at once."""
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set("interrupted" if signum == signal.SIGINT else TERMINATED)
        again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        console.print(f"[yellow]stopping at the next safe point ({again} again to quit now)[/]")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.dry_run and not jsonl:
            console.print("[dim]rehearsal (--dry-run): simulated targets, nothing is touched[/]")
        for rec in execution.recovered:
            console.print(
                f"[dim]read back from the targets: {_recovered(rec, execution.workspace)}[/]"
            )

        def waiting(message: str) -> None:
            view.waiting(message)
            if not live and not jsonl:
                print(f"waiting: {message}", flush=True)

        with execution.locked(cancel, on_wait=waiting) as run_id:
            if cancel.is_set():
                return EXIT_TERMINATED if cancel.reason == TERMINATED else EXIT_INTERRUPTED
            run = execution.run(sinks, cancel)
            if run_id is not None and not jsonl:
                console.print(f"[dim]run {run_id}[/]")
            view.attach(run)
            if live:
                with view.showing():
                    result = run.execute()
            else:
                result = run.execute()
            execution.finish(result)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        execution.close()
    print_summary(console, result, args.command)
    if result.status == "succeeded":
        return EXIT_OK
    if cancel.reason == TERMINATED:
        return EXIT_TERMINATED
    return EXIT_INTERRUPTED if cancel.reason == "interrupted" else EXIT_FAILED
