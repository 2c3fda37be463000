"""Releases (DESIGN.md §9) and `history` (§10): what a run that succeeded leaves running.

After a deploy (promote, rollback) succeeds on an environment and target, `record_releases` keeps a
release: its number in the environment, the run, the action, the time, the git commit, and for
every service the image by digest and the settings it runs with; services the run did not touch
carry over from the previous release, so a release is the whole picture. `release_notes` says,
before the run, what the backends write on the target (a container label, a namespace
annotation); `from_target` reads that back (`env recover`). `history` is the command's JSON and
text.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Mapping, Sequence

from deploy_pipeline.model import Plan, Release, RunPlan, Service, step_phase
from deploy_pipeline.plan import resolve_env
from deploy_pipeline.steps import RunResult, StepView
from deploy_pipeline.store.state import Store

RELEASE_ACTIONS = ("deploy", "promote", "rollback")
DONE = frozenset({"succeeded", "reused", "skipped"})


def settings_of(
    service: Service, plan: Plan | None = None, urls: Mapping[str, str] | None = None
) -> dict[str, object]:
    """The settings a release records for a service: its `env` as it runs in the plan's
    environment, substitutions made (`${url:…}` from the run's `urls`; secrets are never in it:
    they are `secrets:` names, resolved at deploy time) and `replicas`. The one place that says
    which settings a service runs with, for releases."""
    if plan is not None:  # a URL the run did not report was empty for the service, as here
        found = urls or {}
        service = resolve_env(plan, service, (lambda s: found.get(s, "")) if urls else found.get)
    return {"env": dict(service.env), "replicas": service.replicas}


def release_notes(
    store: Store, run_plan: RunPlan, *, run: int, action: str, commit: str | None
) -> dict[str, dict[str, object]]:
    """Per environment, the release a run of `action` will make there (its number, run, action,
    commit, each service's settings), for the backends to write beside what they deploy; none
    for other actions."""
    if action not in RELEASE_ACTIONS:
        return {}
    return {
        p.environment.name: {
            "id": store.next_release(p.environment.name),
            "run": run,
            "action": action,
            "commit": p.commit or commit,
            "source": p.source,
            "rolled_back_to": _back(p, None),
            "settings": {
                planned.service.name: settings_of(planned.service, p)
                for tp in p.targets
                for stage in tp.stages
                for planned in stage.services
            },
        }
        for p in run_plan.plans
    }


def record_releases(
    store: Store,
    run_plan: RunPlan,
    result: RunResult,
    *,
    run: int,
    commit: str | None,
    services: Collection[str],
    numbers: Mapping[str, Mapping[str, object]],
    now: float,
) -> list[Release]:
    """The releases a finished run makes: one per environment and target whose every step
    ended well (failed runs are not releases). `services`: the pipeline's service names (a
    service gone from the file is not carried over)."""
    made: list[Release] = []
    for plan in run_plan.plans:
        if plan.action not in RELEASE_ACTIONS:
            continue
        env = plan.environment.name
        for tp in plan.targets:
            target = tp.target.name
            views = [v for v in result.steps if v.environment == env and v.target == target]
            if not views or any(v.state not in DONE for v in views):
                continue
            previous = store.latest_release(env, target)
            running = {
                name: entry
                for name, entry in (previous.services if previous else {}).items()
                if name in services
            }
            running.update(_deployed(plan, target, views))
            number = numbers.get(env, {}).get("id")
            release = Release(
                environment=env,
                id=number if isinstance(number, int) else 0,
                run=run,
                action=plan.action,
                target=target,
                finished=now,
                commit=plan.commit or commit,
                source=plan.source,
                rolled_back_to=_back(plan, target),
                services=dict(sorted(running.items())),
            )
            made.append(store.add_release(release))
    return made


def _back(plan: Plan, target: str | None) -> int | None:
    """The release a rollback restores on `target` (on its first target, when None)."""
    back = dict(plan.rolled_back_to)
    if target is None:
        return next(iter(back.values()), None)
    return back.get(target)


def _deployed(plan: Plan, target: str, views: Sequence[StepView]) -> dict[str, dict[str, object]]:
    """What this run deployed on the target, by service: the image its backend says runs (by
    digest), else the image it was given."""
    found: dict[str, dict[str, object]] = {}
    tp = next(t for t in plan.targets if t.target.name == target)
    phase = step_phase(plan.action)
    urls = {v.service: v.url for v in views if v.url and v.phase == phase}
    for stage in tp.stages:
        for planned in stage.services:
            svc = planned.service
            view = next((v for v in views if v.service == svc.name and v.phase == phase), None)
            if view is None or view.state not in ("succeeded", "reused"):
                continue  # skipped (a cron job on docker): nothing of it runs
            image = view.image or view.artifact or svc.image
            settings = settings_of(svc, plan, urls)
            found[svc.name] = {"image": image, "target": target, **settings}
    return found


def on_target(release: Release) -> dict[str, object]:
    """A release as a target keeps it, for `from_target` to read back."""
    return {
        "id": release.id,
        "run": release.run,
        "action": release.action,
        "commit": release.commit,
        "source": release.source,
        "rolled_back_to": release.rolled_back_to,
        "finished": release.finished,
        "target": release.target,
        "services": {name: dict(s) for name, s in release.services.items()},
    }


def from_target(environment: str, raw: Mapping[str, object]) -> Release | None:
    """A release as a target keeps it (a label, an annotation), or None if it is not one."""
    number, services = raw.get("id"), raw.get("services")
    if not isinstance(number, int) or not isinstance(services, dict):
        return None
    run, back = raw.get("run"), raw.get("rolled_back_to")
    finished = raw.get("finished")
    return Release(
        environment=environment,
        id=number,
        run=run if isinstance(run, int) else None,
        action=str(raw.get("action") or "deploy"),
        target=str(raw.get("target") or ""),
        finished=float(finished) if isinstance(finished, int | float) else 0.0,
        commit=_text(raw.get("commit")),
        source=_text(raw.get("source")),
        rolled_back_to=back if isinstance(back, int) else None,
        services={str(k): dict(v) for k, v in services.items() if isinstance(v, dict)},
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --- history ---------------------------------------------------------------------------------


def iso(seconds: float | None) -> str | None:
    """2026-12-07T15:40:12Z"""
    if seconds is None:
        return None
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def history(store: Store, environment: str, limit: int | None = None) -> dict[str, object]:
    """`history --format json`: the environment's releases and the deploys that failed,
    newest first (DESIGN.md §10)."""
    entries: list[tuple[float, int, dict[str, object]]] = []
    for rel in store.releases(environment, limit=limit):
        entry: dict[str, object] = {
            "id": rel.id,
            "run": rel.run,
            "action": rel.action,
            "status": "succeeded",
            "finished": iso(rel.finished),
            "commit": rel.commit,
            "source": rel.source,
            "rolled_back_to": rel.rolled_back_to,
            "services": {name: dict(s) for name, s in rel.services.items()},
        }
        entries.append((rel.finished, rel.run or 0, entry))
    for run in store.unreleased_runs(environment, limit=limit):
        finished = run["finished"]
        entry = {
            "id": None,
            "run": run["run"],
            "action": run["action"],
            "status": "failed",
            "finished": iso(finished if isinstance(finished, float) else None),
            "commit": run["commit"],
            "source": None,
            "rolled_back_to": None,
        }
        number = run["run"]
        entries.append(
            (
                finished if isinstance(finished, float) else 0.0,
                number if isinstance(number, int) else 0,
                entry,
            )
        )
    entries.sort(key=lambda e: (e[0], e[1]), reverse=True)
    listed = [e for _, _, e in entries]
    return {"environment": environment, "releases": listed[:limit] if limit else listed}


def history_text(doc: Mapping[str, object]) -> str:
    """One line per release, in aligned columns: number, when, run, what it did, commit, and the
    images (or `failed: no release`)."""
    releases = doc.get("releases")
    assert isinstance(releases, list)
    if not releases:
        return f"{doc['environment']}: no releases yet (a deploy that succeeds makes one)"
    rows = []
    for entry in releases:
        what = str(entry["action"])
        if entry.get("source"):
            what += f" from {entry['source']}"
        if entry.get("rolled_back_to") is not None:
            what += f" to v{entry['rolled_back_to']}"
        if entry["status"] != "succeeded":
            detail = "failed: no release"
        else:
            services = entry["services"]
            assert isinstance(services, dict)
            detail = ", ".join(f"{name}={_short(str(s['image']))}" for name, s in services.items())
        rows.append(
            (
                f"v{entry['id']}" if entry["id"] is not None else "-",
                str(entry["finished"] or "-"),
                f"run {entry['run']}",
                what,
                str(entry["commit"] or "")[:7] or "-",
                detail or "(nothing running)",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)) + "  " + row[5]
        for row in rows
    )


def _short(image: str) -> str:
    """An image by digest, shortened for a line: `…/api@sha256:0123456789ab`."""
    name, at, digest = image.partition("@")
    if at:
        return f"{name}@{digest[:19]}"
    return image[:19] if image.startswith("sha256:") else image


def release_line(release: Release) -> str:
    """What a run that made a release says at its end: `release v4 of production on eu:
    promoted from staging (commit 1a2b3c4)`."""
    what = {"deploy": "deployed", "promote": "promoted", "rollback": "rolled back"}.get(
        release.action, release.action
    )
    if release.source:
        what += f" from {release.source}"
    if release.rolled_back_to is not None:
        what += f" to v{release.rolled_back_to}"
    commit = f" (commit {release.commit[:7]})" if release.commit else ""
    return f"release v{release.id} of {release.environment} on {release.target}: {what}{commit}"
