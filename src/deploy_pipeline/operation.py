"""One action on one or more environments, from request to record: the one path of every run,
whether the CLI, the Action or the receiver asked for it.

    with Operation(request) as operation:      # workspace, plan, backends, secrets: or nothing
        result = operation.perform(sinks, cancel, observers=[...])  # lock, run, record, unlock

Everything that can fail before anything is touched fails while it opens, and what it opened by
then is closed again; `perform` takes the environments' locks, runs the plan, records the
result and lets the locks go; leaving the block closes the backends and the state database.
Observers (GitHub's reporter, the CLI's live view, the receiver's queue) follow the run from
outside: told when it starts, given every event, and given the result once it is recorded.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Protocol

from deploy_pipeline.backends import Backend, create_backend
from deploy_pipeline.backends.base import ReleaseKeeper, ReleaseReader
from deploy_pipeline.backends.simulated import SimulatedBackend
from deploy_pipeline.errors import UsageError
from deploy_pipeline.events import EventBus, EventSink, Redactor
from deploy_pipeline.locks import heartbeat, wait_for
from deploy_pipeline.model import (
    RELEASE_MOVES,
    Action,
    Environment,
    EnvironmentRecord,
    Event,
    Release,
    RunPlan,
)
from deploy_pipeline.moves import plan_moves
from deploy_pipeline.plan import plan_runs
from deploy_pipeline.rehearsal import ImageNotes, image_states, rehearsed
from deploy_pipeline.releases import (
    RELEASE_ACTIONS,
    from_target,
    on_target,
    record_releases,
    release_notes,
)
from deploy_pipeline.run_secrets import resolve_secrets
from deploy_pipeline.runner import Cancel, Run, RunOptions
from deploy_pipeline.step_logs import LogFiles
from deploy_pipeline.steps import RunResult
from deploy_pipeline.store.state import EventRecorder, lock_ttl
from deploy_pipeline.workspace import Workspace

STATUS_AFTER: Mapping[tuple[Action, str], str] = {
    ("deploy", "succeeded"): "deployed",
    ("restart", "succeeded"): "deployed",
    ("stop", "succeeded"): "stopped",
    ("delete", "succeeded"): "not deployed",
    ("promote", "succeeded"): "deployed",
    ("rollback", "succeeded"): "deployed",
}
STATUS_DURING: Mapping[Action, str] = {
    "deploy": "deploying",
    "restart": "deploying",
    "stop": "stopping",
    "delete": "deleting",
    "promote": "deploying",
    "rollback": "deploying",
}


def _history_advice(names: Sequence[str], state: Path | str | None) -> str:
    """What a rollback needs when this state database has no release history of `names`."""
    where = f" ({state})" if state else ""
    return (
        f"This state database{where} had no release of {', '.join(names)}: a target keeps only "
        "its latest release, and the ones before it are in the state database of the runs that "
        "made them (.deploy-pipeline/ beside the pipeline file). Keep that folder between "
        "runs (in a GitHub workflow: actions/cache) to roll back past the latest release"
    )


class RunObserver(Protocol):
    """Follows a run from outside (GitHub's statuses, deployments and comment; the CLI's live
    view): told when it starts, given every event, and given the result once it is recorded."""

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
    commit: str | None = None  # the git commit deployed (GITHUB_SHA, a PR's head; the CLI's
    # git rev-parse HEAD), for ${commit} in env values and the release; None when unknown
    source: str | None = None  # promote: the environment whose latest release's images move
    to: int | None = None  # rollback: the release to go back to (None: the one before the latest)


class Operation:
    """One action on one or more environments. Made ready when created (the workspace opened,
    unknown environments read back from the targets, the plan made, the backends created, the
    secrets resolved), or, when any of that fails, closed again before the error goes on."""

    def __init__(
        self,
        request: Request,
        *,
        environ: Mapping[str, str] | None = None,
        options: RunOptions | None = None,
    ) -> None:
        self.request, self.options = request, options or RunOptions()
        self.backends: dict[str, Backend] = {}
        self.recovered: list[EnvironmentRecord] = []
        self.restored: list[Release] = []  # releases a move read back from its targets first
        self.images: ImageNotes = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.run_id: int | None = None
        self.run: Run | None = None
        self.recorder: EventRecorder | None = None
        self.logs: LogFiles | None = None
        self.releases: list[Release] = []  # what the run recorded, once it has
        self.release_notes: dict[str, dict[str, object]] = {}
        self.finished = self.closed = False
        self.workspace = Workspace(
            request.config, write=not request.dry_run, state=request.state, trusted=request.trusted
        )
        self.pipeline = self.workspace.pipeline
        try:
            self.run_plan: RunPlan = self._plan()
            self._open_backends()
            targets = {t.target.name: t.target for p in self.run_plan.plans for t in p.targets}
            self.secrets = resolve_secrets(
                self.run_plan,
                request.action,
                os.environ if environ is None else environ,
                targets,
                dry_run=request.dry_run,
            )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Operation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _plan(self) -> RunPlan:
        request, envs = self.request, self.workspace.environments()
        unknown = [n for n in request.environments if n not in envs]
        if unknown and not request.dry_run:  # made elsewhere, or the state database was lost
            self.recovered = self.workspace.recover(unknown)
            envs = self.workspace.environments()
        if request.action in RELEASE_MOVES:
            return self._plan_move(envs)
        return plan_runs(
            self.pipeline,
            envs,
            request.environments,
            request.action,
            request.services,
            request.targets,
            request.commit,
        )

    def _plan_move(self, envs: Mapping[str, Environment]) -> RunPlan:
        """A promotion's or a rollback's plan. The environments whose releases it reads and
        this state database has none of (a fresh runner, another machine) are read back from
        the targets first, as `env recover` does: each target keeps its latest (§9)."""
        request, store = self.request, self.workspace.store
        if store is None:  # a rehearsal with no state database yet
            raise UsageError(
                f"{request.action} moves what releases recorded, and there is no state "
                f"database beside {request.config} yet: deploy first"
            )
        reads = [request.source] if request.source else list(request.environments)
        fresh = [name for name in dict.fromkeys(reads) if store.latest_release(name) is None]
        if fresh and not request.dry_run:
            self.workspace.recover(fresh)
            self.restored = list(self.workspace.restored)
            envs = self.workspace.environments()  # a clone's record comes back with it
        try:
            return plan_moves(
                self.pipeline,
                envs,
                store,
                request.environments,
                request.action,
                source=request.source,
                to=request.to,
                services=request.services,
                targets=request.targets,
                commit=request.commit,
            )
        except UsageError as exc:
            read = sorted({r.environment for r in self.restored})  # the latest, and no more
            if read and request.action == "rollback":
                raise UsageError(f"{exc}. {_history_advice(read, store.path)}") from exc
            raise

    def _open_backends(self) -> None:
        """A backend per target of the plan; a rehearsal's simulate the real ones (with the
        images `plan` would say are reused, and the durations they last took)."""
        request, store = self.request, self.workspace.store
        targets = {tp.target.name: tp.target for p in self.run_plan.plans for tp in p.targets}
        root = Path(request.config).resolve().parent
        # a rehearsal of a real target says, as `plan` does, which images it would reuse
        rehearsing = request.dry_run and any(t.kind != "simulated" for t in targets.values())
        if rehearsing and request.action == "deploy":
            self.images = image_states(self.run_plan, root, self.pipeline.registry)
        for name, target in targets.items():
            self.backends[name] = backend = create_backend(
                rehearsed(target, store, self.images) if request.dry_run else target,
                None if request.dry_run or not store else store.backend_state(name),
                dry_run=request.dry_run,
                root=root,
                registry=self.pipeline.registry,
                force_conflicts=request.force_conflicts,
            )
            if isinstance(backend, SimulatedBackend):
                backend.images = {s: note for (t, s), note in self.images.items() if t == name}

    @property
    def redactor(self) -> Redactor:
        return Redactor.of(self.secrets)

    def perform(
        self,
        sinks: Sequence[EventSink],
        cancel: Cancel,
        *,
        observers: Sequence[RunObserver] = (),
        on_wait: Callable[[str], None] = lambda m: None,
    ) -> RunResult | None:
        """Lock, run and record, telling the observers as it goes; None when cancelled while
        waiting for a lock."""
        with self.locked(cancel, on_wait=on_wait):
            if cancel.is_set():
                return None
            run = self.begin([*sinks, *observers], cancel)
            for observer in observers:
                observer.start()
            result = run.execute()
            self.record(result)
        for observer in observers:
            observer.finish(result)
        return result

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
        self.run_id = run_id = store.create_run(
            names, self.request.action, self.request.services, self.request.commit
        )
        held: list[str] = []
        stop = threading.Event()
        beat: threading.Thread | None = None
        try:
            for name in names:
                supersede = self.request.supersede
                if wait_for(
                    store, name, run_id, cancel, on_wait, supersede=supersede, poll=poll, ttl=ttl
                ):
                    held.append(name)  # taken, even when the cancel came at that very moment
                if cancel.is_set():
                    break
            beat = threading.Thread(
                target=heartbeat, args=(store, held, run_id, cancel, stop, ttl), daemon=True
            )
            beat.start()
            if not cancel.is_set():  # stopped while waiting: the environments are another's
                during = STATUS_DURING[self.request.action]
                self._mark(names, lambda rec: replace(rec, status=during, last_run=run_id))
            yield run_id
        finally:
            stop.set()
            if beat is not None:  # its last look at the store ends before the store may close
                beat.join()
            if not self.finished:  # interrupted while waiting, or an error before the run ended
                for name in held:  # what it left behind is not known: not `deploying`
                    rec = self.workspace.record(name)
                    if rec.last_run == run_id and rec.status in STATUS_DURING.values():
                        store.save_environment(replace(rec, status="failed"))
                store.finish_run(run_id, "cancelled" if cancel.is_set() else "failed")
            for name in held:
                store.release_lock(name, run_id)

    def begin(self, sinks: Sequence[EventSink], cancel: Cancel) -> Run:
        """The run, its events going to `sinks` and, once recorded, to the state database."""
        store = self.workspace.store
        if self.run_id is not None and store is not None:
            self.recorder = EventRecorder(store, self.run_id)
            self.logs = LogFiles.of_run(store.path, self.run_id, self.redactor)
            self._read_back_releases()
            self.release_notes = release_notes(
                store,
                self.run_plan,
                run=self.run_id,
                action=self.request.action,
                commit=self.request.commit,
            )
        bus = EventBus([*sinks, *([self.recorder] if self.recorder else [])], self.redactor)
        self.run = Run(
            self.run_plan,
            self.backends,
            bus,
            cancel=cancel,
            secrets=self.secrets,
            options=self.options,
            logs=self.logs,
            label=f"run{self.run_id}" if self.run_id is not None else "",
            releases=self.release_notes,
        )
        return self.run

    def _read_back_releases(self) -> None:
        """An environment and target the state database has no release of, but whose target
        keeps one (the database was lost): that release first, so numbers go on from it and
        the services this run does not touch carry over from it (DESIGN.md §9)."""
        store = self.workspace.store
        if store is None or self.request.action not in RELEASE_ACTIONS:
            return
        for plan in self.run_plan.plans:
            env = plan.environment.name
            for tp in plan.targets:
                backend = self.backends.get(tp.target.name)
                if not isinstance(backend, ReleaseReader):
                    continue
                if store.latest_release(env, tp.target.name) is not None:
                    continue
                raw = backend.environment_releases([env]).get(env)
                release = from_target(env, raw) if raw is not None else None
                if release is None or release.target != tp.target.name:
                    continue
                if release.run is not None and store.ended_badly(release.run):
                    continue  # what a run left running when it failed is no release
                store.add_release(release)

    def record(self, result: RunResult) -> None:
        """The run's end in the state database: the run's status, each environment's."""
        store = self.workspace.store
        if self.run_id is None or store is None:
            return
        if self.recorder:
            self.recorder.flush()
        if self.logs:
            self.logs.close()
        self.releases = record_releases(
            store,
            self.run_plan,
            result,
            run=self.run_id,
            commit=self.request.commit,
            services=self.pipeline.services,
            numbers=self.release_notes,
            now=store.clock(),
        )
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
        for release in self.releases:  # the target keeps its latest release too (§9)
            backend = self.backends.get(release.target)
            if isinstance(backend, ReleaseKeeper):
                backend.keep_release(release.environment, on_target(release))

    def _mark(
        self, names: Sequence[str], change: Callable[[EnvironmentRecord], EnvironmentRecord]
    ) -> None:
        store = self.workspace.store
        if store:
            for name in names:
                store.save_environment(change(self.workspace.record(name)))

    def close(self) -> None:
        """Release the backends' connections and the state database (what was opened); once."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.recorder:  # what an interrupted run recorded is kept, and its timer stopped
                self.recorder.flush()
            if self.logs:
                self.logs.close()
            for backend in self.backends.values():
                backend.close()
        finally:
            self.workspace.close()
