"""One action on one or more environments, end to end: load the file, plan, check secrets, take
the environments' locks, run, and record. The CLI uses it today; the Action and the receiver use
the same code, so all three share one stage runner and one set of rules.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol, TextIO, cast

from deploy_pipeline.backends import KINDS, Backend, backend_class, create_backend
from deploy_pipeline.backends.base import ImageChecker, RecordReader
from deploy_pipeline.backends.simulated import SimulatedBackend
from deploy_pipeline.config import NAME, load_config, quote
from deploy_pipeline.errors import DeployPipelineError, UsageError
from deploy_pipeline.events import MIN_SECRET, EventBus, EventSink, Redactor
from deploy_pipeline.model import (
    Action,
    Environment,
    EnvironmentRecord,
    Event,
    Pipeline,
    RunPlan,
    Target,
)
from deploy_pipeline.plan import check_services, environments, find_environment, plan_runs
from deploy_pipeline.runner import Cancel, Run, RunOptions
from deploy_pipeline.steps import RunResult
from deploy_pipeline.store.state import EventRecorder, Store, lock_ttl, open_store, store_exists
from deploy_pipeline.trust import merge_pull_request

SUPERSEDE_POLL = 0.1  # how soon a run sees that another asked it to stop (seconds)
REMIND = 30.0  # a run waiting for a lock says so again after this long without news

STATUS_AFTER: Mapping[tuple[Action, str], str] = {
    ("deploy", "succeeded"): "deployed",
    ("restart", "succeeded"): "deployed",
    ("stop", "succeeded"): "stopped",
    ("delete", "succeeded"): "not deployed",
}
STATUS_DURING: Mapping[Action, str] = {
    "deploy": "deploying",
    "restart": "deploying",
    "stop": "stopping",
    "delete": "deleting",
}


class RunObserver(Protocol):
    """Follows a run from outside (GitHub's statuses, deployments and comment): told when it
    starts, given every event, and given the result once it is recorded."""

    def start(self) -> None: ...
    def __call__(self, event: Event) -> None: ...
    def finish(self, result: RunResult) -> None: ...


@dataclass(frozen=True)
class Request:
    config: Path
    environments: Sequence[str]
    action: Action
    services: Sequence[str] = ()
    targets: Sequence[str] = ()
    dry_run: bool = False
    supersede: bool = False
    force_conflicts: bool = False
    state: Path | None = None  # the state database, when not the one beside `config`
    trusted: Path | None = None  # `config` is a pull request's; this file decides what it reaches


class Workspace:
    """A pipeline file with its state database: what `env` commands and runs work on. With
    `trusted`, the file is a pull request's, merged with that operator's file (trust.py)."""

    def __init__(
        self,
        config: Path,
        *,
        write: bool = True,
        state: Path | None = None,
        trusted: Path | None = None,
    ) -> None:
        self.config = Path(config)
        self.pipeline: Pipeline = load_config(config)
        self.ignored: tuple[str, ...] = ()  # the keys of a pull request's file overruled
        if trusted is not None:
            merged = merge_pull_request(self.pipeline, load_config(trusted))
            self.pipeline, self.ignored = merged.pipeline, merged.ignored
        exists = (state is not None and state.exists()) or store_exists(config)
        self.store: Store | None = open_store(config, state=state) if write or exists else None
        if self.store is not None:  # runs of processes that died are not left `running`
            self.store.abandon_dead_runs()

    @property
    def records(self) -> dict[str, EnvironmentRecord]:
        return self.store.environments() if self.store else {}

    def environments(self) -> dict[str, Environment]:
        return environments(self.pipeline, self.records)

    def listing(self) -> list[dict[str, object]]:
        """Every environment as `env list --format json` and the receiver's API show it."""
        records = self.records  # read once: a thousand previews are a thousand rows
        return [
            _listed(name, env, records)
            for name, env in environments(self.pipeline, records).items()
        ]

    def listed(self, name: str) -> tuple[dict[str, object], Environment] | None:
        """One environment as `listing` shows it, with its Environment; None when unknown."""
        records = self.records
        env = environments(self.pipeline, records).get(name)
        return None if env is None else (_listed(name, env, records), env)

    def record(self, name: str) -> EnvironmentRecord:
        """The store's record of an environment, made from the file's on first use."""
        if name in (records := self.records):
            return records[name]
        if name in self.pipeline.environments:
            return EnvironmentRecord(name=name, origin="file")
        raise UsageError(f"no environment named '{name}'")

    def recover(self, wanted: Collection[str] | None = None) -> list[EnvironmentRecord]:
        """Read environment records back from the targets that keep them (Kubernetes namespaces)
        into the state database: clones and previews it does not know, and the skip changes of
        the file's environments. The state database wins where it has a record already."""
        store, known = self.writable(), self.records
        found: dict[str, Mapping[str, object]] = {}
        root = self.config.resolve().parent
        for target in self.pipeline.targets.values():
            if target.kind not in KINDS or not issubclass(backend_class(target.kind), RecordReader):
                continue
            backend = create_backend(target, None, root=root, registry=self.pipeline.registry)
            try:
                for name, record in cast(RecordReader, backend).environment_records().items():
                    found.setdefault(name, record)
            finally:
                backend.close()
        recovered: list[EnvironmentRecord] = []
        pending = {n: r for n, r in found.items() if wanted is None or n in wanted}
        while pending:  # a clone's source may itself be a recovered clone
            progress = False
            for name, raw in sorted(pending.items()):
                rec = self._record_from(name, raw, known)
                if rec is None:
                    continue
                del pending[name]
                progress = True
                if name not in known and rec is not False:
                    store.save_environment(rec)
                    known[name] = rec
                    recovered.append(rec)
            if not progress:
                break
        return recovered

    def _record_from(
        self, name: str, raw: Mapping[str, object], known: Mapping[str, EnvironmentRecord]
    ) -> EnvironmentRecord | Literal[False] | None:
        """The record as the store would keep it; False when there is nothing to restore, None
        while its source is not known yet."""
        if name in known:
            return False
        services = self.pipeline.services
        skipped = raw.get("skipped")
        names = frozenset(
            str(s) for s in (skipped if isinstance(skipped, list) else []) if s in services
        )
        if name in self.pipeline.environments:
            base = self.pipeline.environments[name].skipped
            if names == base:
                return False
            return EnvironmentRecord(
                name=name,
                origin="file",
                skip_added=names - base,
                skip_removed=base - names,
                status="deployed",
            )
        source, pr = raw.get("source"), raw.get("pull_request")
        if not isinstance(source, str):
            return False
        if source not in self.pipeline.environments and source not in known:
            return None
        return EnvironmentRecord(
            name=name,
            origin="preview" if isinstance(pr, int) else "clone",
            source=source,
            skipped=names,
            pull_request=pr if isinstance(pr, int) else None,
            status="deployed",
        )

    def preview(self, number: int, *, recover: bool = True) -> EnvironmentRecord:
        """The pull request's preview: a clone of `previews.from` made on its first push (the
        skip set inherited), then kept; read back from the targets if the store lost it."""
        previews = self.pipeline.previews
        if previews is None:
            raise UsageError(
                f"{self.config.name} has no `previews:`; add `previews: {{from: staging}}` "
                "(the environment pull requests are cloned from) to give them previews"
            )
        name = preview_name(previews.name, number)
        if name not in self.records and recover:
            self.recover([name])
        if name in (records := self.records):
            return records[name]
        base = find_environment(self.environments(), previews.source)
        rec = EnvironmentRecord(
            name=name,
            origin="preview",
            source=previews.source,
            skipped=base.skipped,
            pull_request=number,
        )
        self.writable().save_environment(rec)
        return rec

    def writable(self) -> Store:
        if self.store is None:
            raise UsageError("no state database here yet")
        return self.store

    def clone(self, source: str, new: str) -> EnvironmentRecord:
        """A new environment with the source's targets and a copy of its skipped set."""
        envs = self.environments()
        base = find_environment(envs, source)
        if not NAME.fullmatch(new):
            raise UsageError(
                "environment names are lowercase letters, digits and '-' (at most 63), "
                f"got {quote(new)}"
            )
        if new in envs:
            raise UsageError(f"environment '{new}' already exists; pick another name")
        rec = EnvironmentRecord(name=new, origin="clone", source=source, skipped=base.skipped)
        self.writable().save_environment(rec)
        return rec

    def set_skipped(self, name: str, services: Sequence[str], skipped: bool) -> Environment:
        env = find_environment(self.environments(), name)
        check_services(self.pipeline, services)
        rec, names = self.record(name), frozenset(services)
        if rec.origin == "file":  # kept as changes to the file's set, so file edits still count
            added = (rec.skip_added | names) if skipped else (rec.skip_added - names)
            removed = (rec.skip_removed - names) if skipped else (rec.skip_removed | names)
            rec = replace(
                rec, skip_added=added - env.skipped if skipped else added, skip_removed=removed
            )
        else:
            rec = replace(rec, skipped=(env.skipped | names) if skipped else (env.skipped - names))
        self.writable().save_environment(rec)
        return self.environments()[name]

    def close(self) -> None:
        if self.store:
            self.store.close()


def _check_maskable(secrets: Mapping[str, Mapping[str, str]]) -> None:
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


def _listed(
    name: str, env: Environment, records: Mapping[str, EnvironmentRecord]
) -> dict[str, object]:
    return {
        "name": name,
        "source": env.source,
        "targets": list(env.targets),
        "skipped": sorted(env.skipped),
        "pull_request": env.pull_request,
        "status": records[name].status if name in records else "not deployed",
        "last_run": records[name].last_run if name in records else None,
    }


def preview_name(pattern: str, number: int) -> str:
    name = pattern.replace("{number}", str(number))
    if not NAME.fullmatch(name):
        raise UsageError(
            f"previews.name {quote(pattern)} gives {quote(name)} for pull request #{number}: "
            "environment names are lowercase letters, digits and '-' (at most 63)"
        )
    return name


class Execution:
    """Prepares a run (everything that can fail before anything is touched), then runs it."""

    def __init__(
        self,
        request: Request,
        *,
        environ: Mapping[str, str] | None = None,
        options: RunOptions | None = None,
    ) -> None:
        self.request, self.options = request, options or RunOptions()
        self.workspace = Workspace(
            request.config, write=not request.dry_run, state=request.state, trusted=request.trusted
        )
        self.pipeline = self.workspace.pipeline
        envs = self.workspace.environments()
        self.recovered: list[EnvironmentRecord] = []
        unknown = [n for n in request.environments if n not in envs]
        if unknown and not request.dry_run:  # made elsewhere, or the state database was lost
            self.recovered = self.workspace.recover(unknown)
            envs = self.workspace.environments()
        self.run_plan: RunPlan = plan_runs(
            self.pipeline,
            envs,
            request.environments,
            request.action,
            request.services,
            request.targets,
        )
        targets = {tp.target.name: tp.target for p in self.run_plan.plans for tp in p.targets}
        store = self.workspace.store
        root = Path(request.config).resolve().parent
        # a rehearsal of a real target says, as `plan` does, which images it would reuse
        rehearsing = request.dry_run and any(t.kind != "simulated" for t in targets.values())
        self.images: dict[tuple[str, str], str] = {}
        if rehearsing and request.action == "deploy":
            self.images = image_states(self.workspace, self.run_plan, root)
        self.backends: dict[str, Backend] = {
            name: create_backend(
                self.rehearsed(t) if request.dry_run else t,
                None if request.dry_run or not store else store.backend_state(name),
                dry_run=request.dry_run,
                root=root,
                registry=self.pipeline.registry,
                force_conflicts=request.force_conflicts,
            )
            for name, t in targets.items()
        }
        for name, backend in self.backends.items():
            if isinstance(backend, SimulatedBackend):
                backend.images = {s: note for (t, s), note in self.images.items() if t == name}
        self.secrets = self.resolve_secrets(os.environ if environ is None else environ, targets)
        self.run_id: int | None = None
        self.recorder: EventRecorder | None = None
        self.logs: LogFiles | None = None
        self.finished = False

    def rehearsed(self, target: Target) -> Target:
        """A real target as its rehearsal runs it: each step lasting what it last took there
        (the state database's measured durations), a build as long as a build or a reuse,
        whichever `plan` expects. A simulated target keeps the durations it was given."""
        store = self.workspace.store
        if target.kind == "simulated" or store is None:
            return target
        durations: dict[str, dict[str, float]] = {}
        for (service, phase, status), seconds in store.measured_durations(target.name).items():
            note = self.images.get((target.name, service), "")
            wanted = "reused" if phase == "build" and note.startswith("reused") else "succeeded"
            if status == wanted:
                durations.setdefault(service, {})[phase] = seconds
        return replace(target, durations=durations)

    def resolve_secrets(
        self, environ: Mapping[str, str], targets: Mapping[str, Target]
    ) -> dict[str, dict[str, str]]:
        needed = {
            p.service.name: p.service
            for plan in self.run_plan.plans
            for tp in plan.targets
            for sp in tp.stages
            for p in sp.services
        }
        # Only a deploy hands secrets to what it starts; a real target cannot do without them.
        real = (
            self.request.action == "deploy"
            and not self.request.dry_run
            and any(t.kind != "simulated" for t in targets.values())
        )
        missing: dict[str, list[str]] = {}
        for svc in needed.values():
            for name in svc.secrets:
                if name not in environ:
                    missing.setdefault(name, []).append(svc.name)
        if missing and real:
            listed = "; ".join(
                f"{name} (for {', '.join(users)})" for name, users in missing.items()
            )
            raise UsageError(
                f"secrets not set in the environment: {listed}; export them before deploying, "
                "or rehearse with --dry-run"
            )
        secrets = {
            svc.name: {n: environ[n] for n in svc.secrets if n in environ}
            for svc in needed.values()
        }
        _check_maskable(secrets)
        return secrets

    @property
    def redactor(self) -> Redactor:
        return Redactor(v for values in self.secrets.values() for v in values.values())

    @contextmanager
    def locked(
        self,
        cancel: Cancel,
        on_wait: Callable[[str], None] = lambda m: None,
        poll: float = 0.5,
        ttl: float | None = None,
    ) -> Iterator[int | None]:
        """Record the run and hold every environment's lock for as long as it lasts."""
        ttl = ttl or lock_ttl()
        store = self.workspace.store
        if self.request.dry_run or store is None:
            yield None
            return
        names = sorted({p.environment.name for p in self.run_plan.plans})
        self.run_id = run_id = store.create_run(names, self.request.action, self.request.services)
        held: list[str] = []
        stop = threading.Event()
        try:
            for name in names:
                if self.wait_for(store, name, run_id, cancel, on_wait, poll, ttl):
                    held.append(name)  # taken, even when the cancel came at that very moment
                if cancel.is_set():
                    break
            beat = threading.Thread(
                target=self.heartbeat, args=(store, held, run_id, cancel, stop, ttl), daemon=True
            )
            beat.start()
            if not cancel.is_set():  # stopped while waiting: the environments are another's
                self.mark(
                    names,
                    lambda rec: replace(
                        rec, status=STATUS_DURING[self.request.action], last_run=run_id
                    ),
                )
            yield run_id
        finally:
            stop.set()
            if not self.finished:  # interrupted while waiting, or an error before the run ended
                for name in held:  # what it left behind is not known: not `deploying`
                    rec = self.workspace.record(name)
                    if rec.last_run == run_id and rec.status in STATUS_DURING.values():
                        store.save_environment(replace(rec, status="failed"))
                store.finish_run(run_id, "cancelled" if cancel.is_set() else "failed")
            for name in held:
                store.release_lock(name, run_id)

    def wait_for(
        self,
        store: Store,
        name: str,
        run_id: int,
        cancel: Cancel,
        on_wait: Callable[[str], None],
        poll: float,
        ttl: float,
    ) -> bool:
        """Take one environment's lock, waiting while another run holds it; False when cancelled
        first. With `supersede`, every run found holding it is asked to stop, once (a plain
        waiter may take the lock before this run does). The wait is told once per holder, then
        again every REMIND seconds."""
        asked: set[int] = set()
        said: tuple[int, bool] | None = None
        since = said_at = time.monotonic()
        while (holder := store.try_lock(name, run_id, ttl)) is not None:
            if self.request.supersede and holder not in asked:
                store.supersede(name, run_id, holder)
                asked.add(holder)
            now = time.monotonic()
            if said != (holder, holder in asked):
                stop = ", asked it to stop" if holder in asked else ""
                on_wait(f"environment {name} locked by run {holder}{stop}")
                said, said_at = (holder, holder in asked), now
            elif now - said_at >= REMIND:
                on_wait(f"environment {name} still locked by run {holder} ({now - since:.0f}s)")
                said_at = now
            if cancel.event.wait(poll):
                return False
        return True

    def heartbeat(
        self,
        store: Store,
        names: list[str],
        run_id: int,
        cancel: Cancel,
        stop: threading.Event,
        ttl: float,
    ) -> None:
        """Renew the locks every ttl/3, and in between look every SUPERSEDE_POLL seconds whether
        another run asked this one to stop: it stops at its next safe point, not minutes on."""
        renew_at = time.monotonic() + ttl / 3
        while not stop.wait(min(SUPERSEDE_POLL, ttl / 3)):
            renew = time.monotonic() >= renew_at
            if renew:
                renew_at = time.monotonic() + ttl / 3
            for name in names:
                if renew:
                    by = store.renew_lock(name, run_id, ttl)
                else:
                    by = store.superseded_by(name, run_id)
                if by is not None:
                    cancel.set(f"superseded by run {by}")

    def run(self, sinks: Sequence[EventSink], cancel: Cancel) -> Run:
        recorder = None
        if self.run_id is not None and self.workspace.store is not None:
            recorder = EventRecorder(self.workspace.store, self.run_id)
        bus = EventBus([*sinks, *([recorder] if recorder else [])], self.redactor)
        self.recorder = recorder
        if self.run_id is not None and self.workspace.store is not None:
            folder = self.workspace.store.path.parent / "logs" / f"run-{self.run_id}"
            self.logs = LogFiles(folder, self.redactor)
        return Run(
            self.run_plan,
            self.backends,
            bus,
            cancel=cancel,
            secrets=self.secrets,
            options=self.options,
            logs=self.logs,
            label=f"run{self.run_id}" if self.run_id is not None else "",
        )

    def perform(
        self,
        sinks: Sequence[EventSink],
        cancel: Cancel,
        *,
        observers: Sequence[RunObserver] = (),
        on_wait: Callable[[str], None] = lambda m: None,
    ) -> RunResult | None:
        """Lock, run and record, telling the observers (GitHub) as it goes; None when cancelled
        while waiting for a lock. The CLI does the same with its live view in between."""
        with self.locked(cancel, on_wait=on_wait):
            if cancel.is_set():
                return None
            run = self.run([*sinks, *observers], cancel)
            for observer in observers:
                observer.start()
            result = run.execute()
            self.finish(result)
        for observer in observers:
            observer.finish(result)
        return result

    def close(self) -> None:
        """Release the backends' connections and the state database."""
        if self.recorder:  # what an interrupted run recorded is kept, and its timer stopped
            self.recorder.flush()
        for backend in self.backends.values():
            backend.close()
        self.workspace.close()

    def finish(self, result: RunResult) -> None:
        store = self.workspace.store
        if self.run_id is None or store is None:
            return
        if self.recorder:
            self.recorder.flush()
        if self.logs:
            self.logs.close()
        store.finish_run(self.run_id, result.status)
        self.finished = True
        action, whole = self.request.action, not self.request.services
        for name, status in result.environments.items():
            rec = self.workspace.record(name)
            if action == "delete" and whole and status == "succeeded" and rec.origin != "file":
                store.forget_environment(name)  # a deleted clone or preview is gone
                continue
            if self.request.services and status == "succeeded":
                new = rec.status if rec.status not in STATUS_DURING.values() else "deployed"
            else:
                new = STATUS_AFTER.get((action, status), "failed")
            store.save_environment(replace(rec, status=new, last_run=self.run_id))

    def mark(
        self, names: Sequence[str], change: Callable[[EnvironmentRecord], EnvironmentRecord]
    ) -> None:
        store = self.workspace.store
        if store:
            for name in names:
                store.save_environment(change(self.workspace.record(name)))


class LogFiles:
    """Every step's log lines, masked, kept in `logs/run-N/ENV.TARGET.SERVICE.PHASE.log` beside
    the state database: build output, job output, what a failed container printed."""

    def __init__(self, folder: Path, redact: Redactor) -> None:
        self.folder, self.redact = folder, redact
        self.files: dict[str, TextIO] = {}
        self.lock = threading.Lock()

    def __call__(self, environment: str, target: str, service: str, phase: str, line: str) -> None:
        name = f"{environment}.{target}.{service}.{phase}.log"
        with self.lock:
            if name not in self.files:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.files[name] = (self.folder / name).open("a", encoding="utf-8")
            self.files[name].write(self.redact(line) + "\n")

    def close(self) -> None:
        with self.lock:
            for f in self.files.values():
                f.close()
            self.files.clear()


def image_states(workspace: Workspace, run_plan: RunPlan, root: Path) -> dict[tuple[str, str], str]:
    """For `plan`: per (target, service) with a build, whether the image would be reused. Targets
    whose engine cannot be reached say so instead of failing the plan."""
    notes: dict[tuple[str, str], str] = {}
    for plan in run_plan.plans:
        for tp in plan.targets:
            built = [p.service for sp in tp.stages for p in sp.services if p.build]
            if not built or any(t == tp.target.name for t, _ in notes):
                continue
            try:
                backend = create_backend(tp.target, root=root, registry=workspace.pipeline.registry)
            except DeployPipelineError:
                unknown = "image unknown: the target's engine does not answer"
                notes.update({(tp.target.name, s.name): unknown for s in built})
                continue
            try:
                if isinstance(backend, ImageChecker):
                    for svc in built:
                        try:
                            notes[(tp.target.name, svc.name)] = backend.image_status(svc)
                        except DeployPipelineError as exc:
                            notes[(tp.target.name, svc.name)] = f"image unknown: {exc}"
            finally:
                backend.close()
    return notes
