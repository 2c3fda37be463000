"""A run as GitHub shows it, in pure functions: the commit status's one-line description while it
runs, the preview's PR comment (a table of services) and the Action's job summary (the table and
a Mermaid picture of the stages). No I/O: `github` and `action` send and write what these return.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from deploy_pipeline.durations import tenths_or_minutes
from deploy_pipeline.model import IMAGE_PHASES, Event, Plan, Release, RunPlan
from deploy_pipeline.steps import RunResult, StepView

UrlOf = tuple[str | None, bool]  # a service's URL, and whether it is public

DESCRIPTION_LIMIT = 140  # GitHub truncates a commit status's description beyond this
ICONS = {
    "succeeded": "✅",
    "reused": "✅",
    "failed": "❌",
    "cancelled": "⊘",
    "skipped": "⏭️",
    "pending": "⏳",
    "running": "🔄",
}
DONE = {"succeeded", "reused", "skipped", "failed", "cancelled"}
# where a service's image came from when the run built none: a promotion's and a rollback's
# are a release's images (DESIGN.md §10), the others the file's `image:`
MOVED = {"promote": "promoted", "rollback": "rolled back"}
VERBS = {"deploy": "deployed", "restart": "restarted", "stop": "stopped", "delete": "deleted"}


def comment_marker(environment: str) -> str:
    """The hidden line that finds a preview's comment again, to edit it in place."""
    return f"<!-- deploy-pipeline:preview:{environment} -->"


@dataclass(frozen=True)
class ServiceRow:
    environment: str
    target: str
    stage: str
    service: str
    status: str  # the main step's final state: succeeded, failed, cancelled, skipped…
    phase: str
    url: str | None
    image: str | None
    origin: str  # built, reused, prebuilt, or "" when there is no image
    duration: float | None
    message: str
    test: str = ""  # its test step's final state (DESIGN §9), "" when it has no test
    test_message: str = ""


def service_rows(result: RunResult, run_plan: RunPlan) -> list[ServiceRow]:
    """One row per environment × target × service, in stage order, skipped ones included."""
    images = {
        p.service.name: p.service.image
        for plan in run_plan.plans
        for tp in plan.targets
        for sp in tp.stages
        for p in sp.services
    }
    images.update({s.name: s.image for plan in run_plan.plans for s in plan.skipped})
    actions = {plan.environment.name: plan.action for plan in run_plan.plans}
    grouped: dict[tuple[str, str, str], list[StepView]] = {}
    for view in result.steps:
        grouped.setdefault((view.environment, view.target, view.service), []).append(view)
    rows = []
    for (env, target, service), views in grouped.items():
        build = next((v for v in views if v.phase == "build"), None)
        test = next((v for v in views if v.phase == "test"), None)
        main = next((v for v in views if v.phase not in IMAGE_PHASES), views[0])
        if build is not None:
            image = (test.artifact if test else None) or build.artifact or main.artifact
            origin = "reused" if build.state == "reused" else "built"
            if build.state not in ("succeeded", "reused"):
                origin = f"build {build.state}"
        else:
            image = main.artifact or images.get(service)
            origin = MOVED.get(actions.get(env, "deploy"), "prebuilt")
        elapsed = sum(v.elapsed or 0.0 for v in views if v.elapsed is not None)
        if main.state == "skipped" and build is None:
            image, origin = None, ""
        rows.append(
            ServiceRow(
                env,
                target,
                main.stage,
                service,
                main.state,
                main.phase,
                main.url,
                image,
                origin if image else "",
                elapsed if any(v.elapsed is not None for v in views) else None,
                build.message if build and main.state == build.state == "failed" else main.message,
                test.state if test else "",
                test.message if test else "",
            )
        )
    return rows


def service_urls(rows: Iterable[ServiceRow], public: Iterable[str] = ()) -> list[UrlOf]:
    """Each row's URL and whether its service is public, for `steps.environment_url`."""
    wanted = set(public)
    return [(row.url, row.service in wanted) for row in rows]


# --- the commit status while the run goes on ------------------------------------------------


@dataclass
class _EnvProgress:
    stages: list[str]
    totals: dict[str, int]
    done: dict[str, set[str]] = field(default_factory=dict)
    failed: str | None = None
    current: str | None = None


class Progress:
    """Follows a run's events and says, per environment, where it is in a status's 140 characters:
    `stage 2/4 backend: 3/5 services`."""

    def __init__(self, run_plan: RunPlan) -> None:
        self.envs: dict[str, _EnvProgress] = {}
        for plan in run_plan.plans:
            stages: list[str] = []
            totals: dict[str, int] = {}
            for tp in plan.targets:
                for sp in tp.stages:
                    if sp.name not in totals:
                        stages.append(sp.name)
                        totals[sp.name] = 0
                    totals[sp.name] += len(sp.services)
                for svc in plan.skipped:  # counted where they stand: "3/3 services" at the end
                    if svc.stage in totals:
                        totals[svc.stage] += 1
            self.envs[plan.environment.name] = _EnvProgress(stages, totals)

    def __call__(self, event: Event) -> bool:
        """Take an event in; True when an environment's description changed."""
        env = self.envs.get(event.environment or "")
        if env is None or event.stage is None or event.service is None:
            return False
        before = (env.current, env.failed, sum(len(v) for v in env.done.values()))
        if event.phase not in IMAGE_PHASES or event.status == "failed":
            env.current = event.stage
        if event.status == "failed" and env.failed is None:
            env.failed = f"{event.service} {event.phase} failed"
        if event.phase not in IMAGE_PHASES and event.status in DONE:
            env.done.setdefault(event.stage, set()).add(f"{event.target}/{event.service}")
        return before != (env.current, env.failed, sum(len(v) for v in env.done.values()))

    def description(self, environment: str, action: str = "deploy") -> str:
        env = self.envs[environment]
        if env.current is None:
            text = f"{action}: waiting to start ({len(env.stages)} stages)"
        else:
            k = env.stages.index(env.current) + 1 if env.current in env.stages else 0
            done, total = len(env.done.get(env.current, ())), env.totals.get(env.current, 0)
            text = f"{action}: stage {k}/{len(env.stages)} {env.current}: {done}/{total} services"
            if env.failed:
                text += f"; {env.failed}"
        return clip(text)


def clip(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- Markdown ------------------------------------------------------------------------------


# Text from the pipeline file, an engine or a pull request is never Markdown here: every ASCII
# character Markdown or HTML could read as markup is escaped, and line breaks are folded into one
# line, so a hostile name cannot add a heading, an image, a link, a tag or a table column.
_MARKUP = re.compile(r"([\\`*_\[\]<>!|#&~])")  # inline markup, anywhere in the text
_LEADING = re.compile(r"^([-+=]|\d+(?=[.)]))")  # a list or a heading, at the start only
_SAFE_URL = re.compile(r"https?://[^\s<>()\[\]{}|`\"'\\^]+")


def _cell(text: str) -> str:
    """Untrusted text as one line of literal Markdown (a table cell, a list item, a heading)."""
    text = _MARKUP.sub(r"\\\1", " ".join(text.split()))
    return _LEADING.sub(lambda m: m[0] + "\\" if m[0].isdigit() else "\\" + m[0], text)


def _code(text: str) -> str:
    """Untrusted text as an inline code span: one line, fenced by more backticks than it holds
    (backslashes do not escape inside code), its `|` escaped for the table around it."""
    text = " ".join(text.split()).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _link(url: str) -> str:
    """A link to a service's URL when it is a plain http(s) one; otherwise only its text."""
    if _SAFE_URL.fullmatch(url):
        return f"[{_cell(url)}]({url})"
    return _cell(url)


def _seconds(value: float | None) -> str:
    return "" if value is None else tenths_or_minutes(value)


def table(rows: Sequence[ServiceRow]) -> str:
    """The services table of the comment and the summary."""
    several = len({(r.environment, r.target) for r in rows}) > 1
    tested = any(r.test for r in rows)
    head = ["service", "stage", "status", "URL", "image", *(["test"] if tested else []), "took"]
    if several:
        head.insert(0, "where")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        status = f"{ICONS.get(r.status, '')} {r.status}".strip()
        if r.status == "failed" and r.message:
            status += f": {_cell(clip(r.message, 200))}"
        image = f"{_code(r.image)} ({_cell(r.origin)})" if r.image else ""
        url = _link(r.url) if r.url else ""
        cells = [f"**{_cell(r.service)}**", _cell(r.stage), status, url, image]
        if tested:
            cells.append(_test_cell(r))
        cells.append(_seconds(r.duration))
        if several:
            cells.insert(0, f"{_cell(r.environment)} → {_cell(r.target)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _test_cell(row: ServiceRow) -> str:
    """A service's test: `✅ succeeded`, `✅ reused`, `❌ failed: its message`, or nothing."""
    if not row.test:
        return ""
    text = f"{ICONS.get(row.test, '')} {row.test}".strip()
    if row.test == "failed" and row.test_message:
        text += f": {_cell(clip(row.test_message, 200))}"
    return text


def _icon(status: str) -> str:
    """A run's or an environment's outcome (services have ICONS)."""
    return {"succeeded": "✅", "failed": "❌"}.get(status, "⊘")


def _headline(result: RunResult, action: str, what: str) -> str:
    icon = _icon(result.status)
    verb = {**VERBS, **MOVED}
    done = verb.get(action, action) if result.status == "succeeded" else f"{action} {result.status}"
    return f"### {icon} {what} {done} in {_seconds(result.duration)}"


def preview_comment(
    environment: str,
    result: RunResult,
    run_plan: RunPlan,
    *,
    action: str,
    sha: str,
    run_url: str | None = None,
) -> str:
    """The one PR comment of a preview, edited in place on every push."""
    rows = [r for r in service_rows(result, run_plan) if r.environment == environment]
    plan = next(p for p in run_plan.plans if p.environment.name == environment)
    lines = [
        comment_marker(environment),
        _headline(result, action, f"Preview {_code(environment)}"),
        "",
        f"Commit {_code(sha[:7])}" + (f" · [run]({run_url})" if run_url else ""),
        "",
    ]
    if action == "delete" and result.status == "succeeded":
        lines.append("The preview and everything in it, skipped services included, is gone.")
    else:
        lines.append(table(rows))
    lines.extend(_failures(result))
    lines.extend(_skipped_note(plan))
    return "\n".join(lines).rstrip() + "\n"


def removal_comment(environment: str, why: str) -> str:
    """The preview's comment once housekeeping has removed it (expired, evicted, PR closed)."""
    return (
        f"{comment_marker(environment)}\n### 🗑️ Preview {_code(environment)} removed\n\n{why}\n\n"
        "Push a new commit to the pull request to deploy it again.\n"
    )


def _failures(result: RunResult) -> list[str]:
    if not result.failures:
        return []
    return ["", "**Failed:**", *(f"- {_cell(clip(f, 500))}" for f in result.failures)]


def _skipped_note(plan: Plan) -> list[str]:
    """The services the environment skips, and how to add one; then those a promotion or a
    rollback left as they run (their release lacks them), each with its reason."""
    kept = dict(plan.notes)
    names = sorted(s.name for s in plan.skipped if s.name not in kept)
    left = [f"{_code(name)} {_cell(why)}." for name, why in sorted(kept.items())]
    if not names:
        return ["", *left] if left else []
    listed = ", ".join(_code(n) for n in names)
    env = plan.environment.name
    unskip = _code(f"deploy-pipeline env unskip {env} {names[0]}")
    return ["", f"Skipped in {_code(env)}: {listed}. To add one: {unskip}.", *left]


def _node(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _label(text: str) -> str:
    """Untrusted text inside a Mermaid label's quotes: one line, with what would end the quotes,
    open a tag or a Markdown string, or start an entity written as Mermaid's entity codes."""
    return re.sub(r'[#"<>`&]', lambda m: f"#{ord(m[0])};", " ".join(text.split()))


def mermaid(plan: Plan, rows: Sequence[ServiceRow]) -> str:
    """The stages left to right with their services inside; skipped ones greyed out."""
    state = {(r.target, r.service): r.status for r in rows}
    out, greyed = ["```mermaid", "flowchart LR"], []
    for tp in plan.targets:
        t = _node(tp.target.name)
        if len(plan.targets) > 1:
            out.append(f'  subgraph {t}["{_label(tp.target.name)}"]')
            out.append("  direction LR")
        stages = [(sp.name, [p.service.name for p in sp.services]) for sp in tp.stages]
        # skipped services are drawn in their stage, even one with nothing else to run
        for svc in plan.skipped:
            for name, members in stages:
                if name == svc.stage:
                    members.append(svc.name)
                    break
            else:
                stages.append((svc.stage, [svc.name]))
        skipped = {s.name for s in plan.skipped}
        previous = None
        for name, members in stages:
            sid = f"{t}_{_node(name)}"
            out.append(f'  subgraph {sid}["{_label(name)}"]')
            for member in members:
                status = "skipped" if member in skipped else state.get((tp.target.name, member), "")
                label = f"{_label(member)} {ICONS.get(status, '')}".strip()
                out.append(f'    {sid}_{_node(member)}["{label}"]')
                if member in skipped:
                    greyed.append(f"{sid}_{_node(member)}")
            out.append("  end")
            if previous:
                out.append(f"  {previous} --> {sid}")
            previous = sid
        if len(plan.targets) > 1:
            out.append("  end")
    out.append("  classDef skipped fill:#f2f2f2,stroke:#bbb,color:#999,stroke-dasharray:3 3")
    if greyed:
        out.append(f"  class {','.join(greyed)} skipped")
    out.append("```")
    return "\n".join(out)


def release_note(plan: Plan, status: str, releases: Sequence[Release] = ()) -> str:
    """One sentence on what a run moved and the release it made (DESIGN.md §9–§10): "Promotion
    of the images of `staging`'s latest release, with `production`'s own settings: recorded as
    release **v4** of `production` (commit `1a2b3c4`)."; "" for an action that makes no release
    (nor a dry run)."""
    environment = plan.environment.name
    made = next((r for r in releases if r.environment == environment), None)
    env = _code(environment)
    if plan.source is not None:
        did = (
            f"Promotion of the images of {_code(plan.source)}'s latest release, with {env}'s "
            "own settings"
        )
    elif plan.rolled_back_to:
        back = sorted({number for _, number in plan.rolled_back_to})
        did = f"Rollback to {', '.join(f'v{n}' for n in back)}, its images and its settings"
    elif made is not None:
        return f"Recorded as release **v{made.id}** of {env}."
    else:
        return ""
    if made is None:
        return f"{did}." if status == "succeeded" else f"{did}: {status}, no release recorded."
    commit = f" (commit {_code(made.commit[:7])})" if made.commit else ""
    return f"{did}: recorded as release **v{made.id}** of {env}{commit}."


def job_summary(
    result: RunResult,
    run_plan: RunPlan,
    *,
    action: str,
    sha: str | None = None,
    releases: Sequence[Release] = (),
) -> str:
    """The Action's `$GITHUB_STEP_SUMMARY`: per environment the result, what a promotion or a
    rollback moved and the release the run made, the stages and the table."""
    rows = service_rows(result, run_plan)
    parts = []
    for plan in run_plan.plans:
        env = plan.environment.name
        mine = [r for r in rows if r.environment == env]
        status = result.environments.get(env, result.status)
        head = f"## {_icon(status)} deploy-pipeline {action} {_code(env)}: {status}"
        if sha:
            head += f" at {_code(sha[:7])}"
        parts.extend([head, ""])
        if note := release_note(plan, status, releases):
            parts.extend([note, ""])
        parts.extend([mermaid(plan, mine), "", table(mine), *_skipped_note(plan), ""])
    parts.extend(_failures(result))
    parts.append(f"\n_{action} {result.status} in {_seconds(result.duration)}_")
    return "\n".join(parts).strip() + "\n"
