"""What `deploy-pipeline logs` shows (DESIGN.md §10): the services' own output, read from their
targets, each line prefixed with its service (and replica) as `docker compose logs` does; or one
recorded run's events and step logs, in order. Secrets are masked in both."""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from deploy_pipeline.backends import Backend, create_backend
from deploy_pipeline.backends.base import LogStream
from deploy_pipeline.errors import DeployPipelineError, NoLogs, UsageError
from deploy_pipeline.events import Redactor, format_event
from deploy_pipeline.model import Event, Pipeline
from deploy_pipeline.plan import check_services, find_environment, plan_run
from deploy_pipeline.step_logs import LogFiles
from deploy_pipeline.workspace import Workspace

Write = Callable[[str], None]
LATEST = 2**62  # above every run id: "the latest run"


def pipeline_redactor(pipeline: Pipeline, environ: Mapping[str, str]) -> Redactor:
    """The values the process environment holds for the secrets the file's services name: what
    a run from here would hand out, so what `logs` prints never shows them."""
    return Redactor.of(
        {
            s.name: {n: environ[n] for n in s.secret_names if n in environ}
            for s in pipeline.services.values()
        }
    )


def show_service_logs(
    ws: Workspace,
    environment: str,
    services: Sequence[str],
    *,
    tail: int | None,
    follow: bool,
    out: Write,
    note: Write,
    environ: Mapping[str, str],
) -> None:
    """Every replica's output of the environment's services (or of `services`), stage by stage;
    with `follow`, the lines of all of them as they come until they end or Ctrl-C. What cannot be
    read (a simulated target, a node that serves no logs, nothing deployed) is a `note`."""
    env = find_environment(ws.environments(), environment)
    plan = plan_run(ws.pipeline, env, "deploy", services)
    redact = pipeline_redactor(ws.pipeline, environ)
    root = ws.config.resolve().parent
    several = len(plan.targets) > 1  # the same service on two targets: say which
    stop = threading.Event()
    backends: list[Backend] = []
    streams: list[LogStream] = []
    try:
        for tp in plan.targets:
            state = ws.store.backend_state(tp.target.name) if ws.store else None
            backend = create_backend(tp.target, state, root=root, registry=ws.pipeline.registry)
            backends.append(backend)
            for sp in tp.stages:
                for planned in sp.services:
                    name = planned.service.name + (f"@{tp.target.name}" if several else "")
                    try:
                        found = backend.service_logs(
                            environment, planned.service, tail=tail, follow=follow, stop=stop
                        )
                    except NoLogs as exc:
                        note(f"{name}: {redact(str(exc))}")
                        continue
                    if not found:
                        note(
                            f"{name}: nothing deployed in {environment} on target {tp.target.name}"
                        )
                    for s in found:
                        source = s.source + (f"@{tp.target.name}" if several else "")
                        streams.append(dataclasses.replace(s, source=source))
        width = max((len(s.source) for s in streams), default=0)

        def line(source: str, text: str) -> None:
            out(f"{source.ljust(width)} | {redact(text)}")

        if follow:
            _follow(streams, line, lambda s, t: note(f"{s}: {redact(t)}"))
            return
        for s in streams:
            said = False
            try:
                for text in s.lines:
                    line(s.source, text)
                    said = True
            except NoLogs as exc:
                note(f"{s.source}: {redact(str(exc))}")
                continue
            if not said:  # an empty answer is not a broken command: say so
                note(f"{s.source}: no output (it has written nothing yet)")
    finally:
        stop.set()  # the followed streams close, their readers end
        for backend in backends:
            backend.close()


_DONE = object()


def _follow(
    streams: Sequence[LogStream], line: Callable[[str, str], None], note: Callable[[str, str], None]
) -> None:
    """Read every stream in a thread of its own and write their lines here, one at a time, as
    they come, until every stream has ended; Ctrl-C ends the wait (the caller closes them)."""
    lines: queue.Queue[tuple[str, object]] = queue.Queue()

    def pump(stream: LogStream) -> None:
        try:
            for text in stream.lines:
                lines.put((stream.source, text))
        except NoLogs as exc:
            lines.put((stream.source, exc))
        except DeployPipelineError as exc:  # handed over: the command fails with it
            lines.put((stream.source, exc))
        finally:
            lines.put((stream.source, _DONE))

    for stream in streams:
        threading.Thread(target=pump, args=(stream,), daemon=True).start()
    running = len(streams)
    while running:
        source, item = lines.get()  # Ctrl-C interrupts the wait
        if item is _DONE:
            running -= 1
        elif isinstance(item, NoLogs):
            note(source, str(item))
        elif isinstance(item, DeployPipelineError):
            raise item
        else:
            line(source, str(item))


def show_run(
    ws: Workspace,
    environment: str,
    run_id: int,
    services: Sequence[str],
    *,
    tail: int | None,
    out: Write,
    environ: Mapping[str, str],
) -> None:
    """The run's events of `environment` as the CLI prints them, each step's log lines after
    the event that ends the step, then the lines of steps that never ended (an interrupted run).
    Events and step logs were masked when recorded; masked again with the secrets known here."""
    store = ws.store
    run = store.run(run_id) if store is not None else None
    latest = store.run_ids(environment, LATEST, 1) if store is not None else []
    then = (
        f"the latest run of {environment} is {latest[0]}"
        if latest
        else f"no run of {environment} is recorded here yet"
    )
    if store is None or run is None:
        raise UsageError(f"no run {run_id} in this state database; {then}")
    listed = run["environments"]
    ran = [str(e) for e in listed] if isinstance(listed, list) else []
    if environment not in ran:
        raise UsageError(f"run {run_id} was a run of {', '.join(ran)}, not {environment}; {then}")
    find_environment(ws.environments(), environment)
    check_services(ws.pipeline, services)
    wanted = set(services)
    redact = pipeline_redactor(ws.pipeline, environ)
    logs = LogFiles.of_run(store.path, run_id, redact)
    fields = {f.name for f in dataclasses.fields(Event)}
    shown: set[tuple[str, str, str, str]] = set()

    def step_lines(step: tuple[str, str, str, str]) -> None:
        shown.add(step)
        found = logs.lines(*step) or []
        for text in found[max(len(found) - tail, 0) :] if tail is not None else found:
            out(redact(f"    {step[2]} {step[3]} | {text}"))

    for body in store.events(run_id):
        known: dict[str, Any] = {k: v for k, v in body.items() if k in fields}
        event = Event(**known)
        if event.environment not in (environment, None):
            continue
        if wanted and event.service is not None and event.service not in wanted:
            continue
        out(redact(format_event(event)))
        if event.service and event.target and event.status != "started":
            step = (environment, event.target, event.service, str(event.phase))
            if step not in shown:
                step_lines(step)
    for step in logs.steps():
        if step not in shown and step[0] == environment and (not wanted or step[2] in wanted):
            step_lines(step)
