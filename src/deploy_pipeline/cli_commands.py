"""What each command of `deploy-pipeline` does, given its parsed arguments (cli.py parses them
and turns errors into exit codes): validate, schema, plan, env, serve, and the runs (deploy,
restart, stop, delete) through one Operation with the terminal's view observing it. Heavy
imports wait until a command needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploy_pipeline.workspace import Workspace

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TERMINATED = 143  # SIGTERM (128 + 15): stopped like Ctrl-C, said apart from it
TERMINATED = "terminated (SIGTERM)"


def dispatch(args: argparse.Namespace) -> int:
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
    if args.command == "logs":
        return _logs(args)
    if args.command == "history":
        return _history(args)
    return _run(args)


def _logs(args: argparse.Namespace) -> int:
    """`logs`: the services' output (Ctrl-C ends --follow: exit 130), or a run's record."""
    from deploy_pipeline.errors import UsageError
    from deploy_pipeline.logs import show_run, show_service_logs
    from deploy_pipeline.workspace import Workspace

    def out(line: str) -> None:
        print(line, flush=True)

    if args.run is not None and args.follow:
        raise UsageError(
            "--follow follows the services' output, and --run shows a recorded run: "
            "leave out one of them"
        )
    with Workspace(args.file, write=False) as ws:
        if args.run is not None:
            show_run(
                ws,
                args.environment,
                args.run,
                args.services,
                tail=args.tail,
                out=out,
                environ=os.environ,
            )
            return EXIT_OK
        show_service_logs(
            ws,
            args.environment,
            args.services,
            tail=args.tail,
            follow=args.follow,
            out=out,
            note=lambda line: print(line, file=sys.stderr, flush=True),
            environ=os.environ,
        )
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from deploy_pipeline.receiver import serve

    serve(args.file, os.environ, host=args.host, port=args.port)
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    from deploy_pipeline.plan import plan_json, plan_runs, plan_text
    from deploy_pipeline.rehearsal import image_states
    from deploy_pipeline.workspace import Workspace

    if args.manifests and (args.action != "deploy" or args.format != "text"):
        from deploy_pipeline.errors import UsageError

        raise UsageError(
            "--manifests prints the objects a deploy applies, as YAML: leave out "
            + ("--action" if args.action != "deploy" else "--format")
        )
    with Workspace(args.file, write=False) as ws:
        run_plan = plan_runs(
            ws.pipeline,
            ws.environments(),
            args.environments,
            args.action,
            args.services,
            commit=head_commit(Path(args.file)),
        )
        if args.manifests:
            from deploy_pipeline.rendering import manifests_text

            root = Path(args.file).resolve().parent
            print(manifests_text(run_plan, root, ws.pipeline.registry))
            return EXIT_OK
        images = {}
        if args.format == "text" and args.action == "deploy":
            root = Path(args.file).resolve().parent
            images = image_states(run_plan, root, ws.pipeline.registry)
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
    from deploy_pipeline.workspace import Workspace

    with Workspace(args.file, write=args.env_command != "list") as ws:
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
                print(f"✔ {ws.describe(rec)}")
            for release in ws.restored:
                print(
                    f"✔ {release.environment}: release v{release.id} on {release.target} "
                    f"(run {release.run}, {_count(len(release.services), 'service')})"
                )
            if not recovered and not ws.restored:
                print("nothing to read back: the state database knows every environment deployed")
            return EXIT_OK
        env = ws.set_skipped(args.environment, args.services, args.env_command == "skip")
        print(f"✔ {env.name} skips: {', '.join(sorted(env.skipped)) or 'nothing'}")
        return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    from deploy_pipeline.plan import find_environment
    from deploy_pipeline.releases import history, history_text
    from deploy_pipeline.workspace import Workspace

    with Workspace(args.file, write=False) as ws:
        find_environment(ws.environments(), args.environment)  # an unknown name: exit 2
        doc = history(ws.store, args.environment, args.limit) if ws.store else None
    doc = doc or {"environment": args.environment, "releases": []}
    print(json.dumps(doc, indent=2) if args.format == "json" else history_text(doc))
    return EXIT_OK


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
    from deploy_pipeline.operation import Operation, Request
    from deploy_pipeline.releases import release_line
    from deploy_pipeline.reporting.terminal import LiveView, print_summary
    from deploy_pipeline.runner import Cancel

    moves = args.command in ("promote", "rollback")  # the commit is the release's, not HEAD
    request = Request(
        args.file,
        args.environments,
        args.command,
        args.services,
        getattr(args, "targets", ()),
        getattr(args, "dry_run", False),
        args.supersede,
        getattr(args, "force_conflicts", False),
        commit=None if moves else head_commit(Path(args.file)),
        source=getattr(args, "source", None),
        to=getattr(args, "to", None),
    )
    with Operation(request) as operation:
        jsonl = args.events == "jsonl"
        console = Console(stderr=jsonl, highlight=False)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = 120  # logs are read in wide windows; don't wrap them at 80
        live = console.is_terminal and not jsonl and "DEPLOY_PIPELINE_PLAIN" not in os.environ
        sinks: list[EventSink] = (
            [JsonLines(sys.stdout)] if jsonl else [] if live else [PlainLines(sys.stdout)]
        )
        view = LiveView(console, live=live, numbered=not jsonl)
        cancel = Cancel()

        def interrupt(signum: int, frame: FrameType | None) -> None:
            """Ctrl-C, or SIGTERM (a service manager, CI, `kill`): stop at the next safe point,
            record the run cancelled and print the report; a second signal quits at once."""
            if cancel.is_set():
                raise KeyboardInterrupt
            cancel.set("interrupted" if signum == signal.SIGINT else TERMINATED)
            again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            console.print(f"[yellow]stopping at the next safe point ({again} again to quit now)[/]")

        def waiting(message: str) -> None:
            view.waiting(message)
            if not live and not jsonl:
                print(f"waiting: {message}", flush=True)

        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if request.dry_run and not jsonl:
                console.print(
                    "[dim]rehearsal (--dry-run): simulated targets, nothing is touched[/]"
                )
            for rec in operation.recovered:
                said = operation.workspace.describe(rec)
                console.print(f"[dim]read back from the targets: {said}[/]")
            for release in operation.restored:
                said = release_line(release)
                console.print(f"[dim]read back from {release.target}: {said}[/]", highlight=False)
            view.follow(operation)
            result = operation.perform(sinks, cancel, observers=[view], on_wait=waiting)
        finally:
            view.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if result is None:
        return EXIT_TERMINATED if cancel.reason == TERMINATED else EXIT_INTERRUPTED
    print_summary(console, result, args.command)
    for release in operation.releases:
        console.print(release_line(release), highlight=False)
    if result.status == "succeeded":
        return EXIT_OK
    if cancel.reason == TERMINATED:
        return EXIT_TERMINATED
    return EXIT_INTERRUPTED if cancel.reason == "interrupted" else EXIT_FAILED


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def head_commit(config: Path) -> str | None:
    """The commit checked out in the pipeline file's folder (`git rev-parse HEAD`), for
    `${commit}`; None when it is no git checkout or git is missing."""
    import re
    import subprocess

    try:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=config.resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha) else None
