"""A pipeline file with its state database: what `env` commands, `plan` and every run work on.
The environments it knows (the file's, and the clones and previews the store keeps), the listing
the CLI and the receiver's API show, and the changes `env clone`, `skip` and `recover` make.
Used as a context manager, it closes its database however the block ends.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Literal

from deploy_pipeline.backends import KINDS, backend_class, create_backend
from deploy_pipeline.backends.base import RecordReader, ReleaseReader
from deploy_pipeline.config import NAME, load_config, quote
from deploy_pipeline.errors import UsageError
from deploy_pipeline.model import Environment, EnvironmentRecord, Pipeline, Release
from deploy_pipeline.plan import check_services, environments, find_environment
from deploy_pipeline.releases import from_target
from deploy_pipeline.store.state import Store, open_store, store_exists
from deploy_pipeline.trust import merge_pull_request


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
        self.restored: list[Release] = []  # the releases `recover` read back from the targets
        if trusted is not None:
            merged = merge_pull_request(self.pipeline, load_config(trusted))
            self.pipeline, self.ignored = merged.pipeline, merged.ignored
        exists = (state is not None and state.exists()) or store_exists(config)
        self.store: Store | None = open_store(config, state=state) if write or exists else None
        if self.store is not None:  # runs of processes that died are not left `running`
            try:
                self.store.abandon_dead_runs()
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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
        releases: list[tuple[str, Mapping[str, object]]] = []
        root = self.config.resolve().parent
        for target in self.pipeline.targets.values():
            kind = backend_class(target.kind) if target.kind in KINDS else None
            if kind is None or not (
                issubclass(kind, RecordReader) or issubclass(kind, ReleaseReader)
            ):
                continue
            backend = create_backend(target, None, root=root, registry=self.pipeline.registry)
            try:
                if isinstance(backend, RecordReader):
                    for name, record in backend.environment_records().items():
                        found.setdefault(name, record)
                if isinstance(backend, ReleaseReader):
                    releases.extend(backend.environment_releases(wanted).items())
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
        self.restored = self._restore_releases(releases)
        return recovered

    def _restore_releases(self, found: Sequence[tuple[str, Mapping[str, object]]]) -> list[Release]:
        """The latest releases the targets keep, into the state database where it has none of
        that environment and target as new (DESIGN.md §9: the target is the truth)."""
        store, restored = self.writable(), []
        for name, raw in found:
            release = from_target(name, raw)
            if release is None or not release.target:
                continue
            if release.run is not None and store.ended_badly(release.run):
                continue  # what a run left running when it failed is no release
            latest = store.latest_release(name, release.target)
            if latest is None or latest.id < release.id:
                restored.append(store.add_release(release))
        return restored

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

    def describe(self, rec: EnvironmentRecord) -> str:
        """A recovered environment as `env recover` and a run's start say it."""
        skipped = ", ".join(sorted(self.environments()[rec.name].skipped)) or "nothing"
        if rec.origin == "file":
            return f"{rec.name} skips {skipped}"
        what = f"preview of PR #{rec.pull_request}" if rec.pull_request else "clone"
        return f"{rec.name}, {what} of {rec.source}, skips {skipped}"

    def close(self) -> None:
        if self.store:
            self.store.close()


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
