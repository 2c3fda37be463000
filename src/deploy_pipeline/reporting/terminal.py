"""What a person watching a run sees: a live view of stages and services (status, what each is
waiting for, elapsed time) on a terminal, and the summary table at the end. It only reads the
runner's snapshot, so it can never slow down or change a run.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from deploy_pipeline.durations import tenths
from deploy_pipeline.model import IMAGE_PHASES, Event
from deploy_pipeline.steps import RunResult, Snapshots, StepView
from deploy_pipeline.steps import waiting as waiting_for

STYLE = {
    "succeeded": "green",
    "reused": "cyan",
    "failed": "bold red",
    "cancelled": "yellow",
    "skipped": "dim",
    "running": "bold blue",
    "pending": "dim",
}
ICON = {
    "succeeded": "✔",
    "reused": "♻",
    "failed": "✖",
    "cancelled": "⊘",
    "skipped": "–",
    "running": "●",
    "pending": "○",
}
MAX_ROWS = 30  # a big environment shows what moves; the rest is counted per stage
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _text(text: str, style: str = "") -> Text:
    """A name or a message as it is: never Rich markup, and its control characters (a terminal's
    escape sequences) shown as \\xNN rather than obeyed."""
    return Text(CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text), style=style)


class Followed(Protocol):
    """What the live view reads of the operation it follows: the run's number and the run."""

    @property
    def run_id(self) -> int | None: ...

    @property
    def run(self) -> Snapshots | None: ...


class LiveView:
    """Redraws the run's state a few times a second while it runs. It observes the run (the
    operation's RunObserver): from the run's start, its number said (when `numbered`), to its
    end, redrawn when `live`."""

    def __init__(self, console: Console, *, live: bool = True, numbered: bool = True) -> None:
        self.console, self.live, self.numbered = console, live, numbered
        self.run: Snapshots | None = None
        self.note = ""
        self.lock = threading.Lock()
        self.followed: Followed | None = None
        self.shown: Live | None = None

    def waiting(self, message: str) -> None:
        with self.lock:
            self.note = waiting_for(message)

    def follow(self, operation: Followed) -> None:
        self.followed = operation

    def attach(self, run: Snapshots) -> None:
        with self.lock:
            self.run, self.note = run, ""

    def start(self) -> None:
        followed = self.followed
        if followed is None:
            return
        if followed.run_id is not None and self.numbered:
            self.console.print(f"[dim]run {followed.run_id}[/]")
        if followed.run is not None:
            self.attach(followed.run)
        if self.live:
            self.shown = Live(
                console=self.console,
                refresh_per_second=8,
                transient=True,
                get_renderable=self.render,
            )
            self.shown.start()

    def __call__(self, event: Event) -> None:
        pass  # it draws the run's steps, not its events

    def finish(self, result: RunResult) -> None:
        self.close()

    def close(self) -> None:
        """Stop redrawing (the run ended, or stopped on an error)."""
        if self.shown is not None:
            self.shown.stop()
            self.shown = None

    def render(self) -> RenderableType:
        with self.lock:
            run, note = self.run, self.note
        if run is None:
            return Text(note or "preparing…", style="yellow")
        return render_steps(run.snapshot(), live=True)


def _group(
    views: Sequence[StepView],
) -> dict[tuple[str, str], dict[str, dict[str, list[StepView]]]]:
    """environment/target → stage → service → its steps (build and test first)."""
    tree: dict[tuple[str, str], dict[str, dict[str, list[StepView]]]] = {}
    for v in views:
        tree.setdefault((v.environment, v.target), {}).setdefault(v.stage, {}).setdefault(
            v.service, []
        ).append(v)
    return tree


def _cell(view: StepView | None) -> Text:
    """`✔ 2.0s`, `✖ failed 1.2s`, `● 3.1s`: the icon says the state, words only when it is bad."""
    if view is None:
        return Text("")
    word = "" if view.state in {"succeeded", "running"} else f" {view.state}"
    text = Text(f"{ICON.get(view.state, '?')}{word}", style=STYLE.get(view.state, ""))
    if view.elapsed is not None and view.state != "pending":
        text.append(f" {tenths(view.elapsed)}", style="dim")
    return text


def render_steps(views: Sequence[StepView], *, live: bool) -> RenderableType:
    parts: list[RenderableType] = []
    for (env, target), stages in _group(views).items():
        table = Table(
            title=_text(f"{env} → {target}"),
            title_justify="left",
            expand=False,
            show_edge=False,
            pad_edge=False,
        )
        tested = any(v.phase == "test" for ss in stages.values() for s in ss.values() for v in s)
        columns = ("stage", "service", "build", *(("test",) if tested else ()), "step", "note")
        for column in columns:
            table.add_column(column, overflow="fold", max_width=70 if column == "note" else None)
        rows = 0
        for stage, services in stages.items():
            counts: Counter[str] = Counter()
            first = True
            for service, steps in services.items():
                build = next((s for s in steps if s.phase == "build"), None)
                test = next((s for s in steps if s.phase == "test"), None)
                main = next((s for s in steps if s.phase not in IMAGE_PHASES), steps[0])
                made = [s for s in (build, test) if s is not None]  # the image's steps
                counts[main.state] += 1
                busy = main.state != "pending" or any(s.state == "running" for s in made)
                if live and rows >= MAX_ROWS and not (busy and main.state in {"running", "failed"}):
                    continue
                note = main.waiting or (
                    build.waiting if build and build.state == "pending" else None
                )
                running = next((s for s in made if s.state == "running"), None)
                failed = next((s for s in made if s.state == "failed"), None)
                if running is not None:
                    note = running.message or ("building" if running is build else "testing")
                elif main.state in {"failed", "cancelled"} or failed is not None:
                    note = failed.message if failed is not None else main.message
                elif main.url:
                    note = main.url
                elif note is None:
                    note = main.message
                table.add_row(
                    _text(stage if first else ""),
                    _text(service),
                    _cell(build),
                    *((_cell(test),) if tested else ()),
                    Text(f"{main.phase} ", style="dim") + _cell(main),
                    _text(note or ""),
                )
                first = False
                rows += 1
            if live and first and counts:  # every row of the stage was left out: count them
                table.add_row(
                    _text(stage),
                    Text(", ".join(f"{n} {k}" for k, n in counts.items()), "dim"),
                    *[""] * (len(columns) - 2),
                )
        parts.append(table)
    return Group(*parts)


def print_summary(console: Console, result: RunResult, action: str) -> None:
    console.print(render_steps(result.steps, live=False))
    took = tenths(result.duration)
    if result.status == "succeeded":
        console.print(Text(f"✔ {action} succeeded in {took}", style="bold green"))
    elif result.status == "cancelled":
        console.print(Text(f"⊘ {action} cancelled after {took}", style="bold yellow"))
    else:
        console.print(Text(f"✖ {action} failed after {took}", style="bold red"))
        for failure in result.failures:
            console.print(_text(f"  {failure}", style="red"))
