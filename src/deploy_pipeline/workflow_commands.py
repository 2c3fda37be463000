"""What the Action writes to its step's log: GitHub's workflow commands (masks, groups,
annotations), and plain text from the file, an engine or a pull request that can never be read
as one; the run's lines folded into one group per stage."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from deploy_pipeline.events import format_event
from deploy_pipeline.model import IMAGE_PHASES, Event, RunPlan
from deploy_pipeline.reporting.markdown import DONE

# Line breaks of every kind a log viewer splits on, and the other control characters (a
# terminal's escape sequences) are shown, never obeyed.
_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def plain(text: str) -> str:
    """Text from the pipeline file, an engine or a pull request as one harmless log line: its
    line breaks shown as ⏎, control characters as \\xNN, and never the start of a workflow
    command (`::name::`, which the runner reads after leading blanks) nor the older `##[name]`
    form (read anywhere in a line)."""
    text = _BREAKS.sub("⏎", text)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text).replace("##[", "# #[")
    return "> " + text if text.lstrip().startswith("::") else text


@dataclass
class Commands:
    """GitHub's workflow commands, written to the step's log. `emit` writes a command of ours;
    everything else goes through `line`, which makes sure it cannot be read as one."""

    out: TextIO

    def emit(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def line(self, text: str) -> None:
        self.emit(plain(text))

    def mask(self, values: Iterable[str]) -> None:
        for value in values:
            for line in value.splitlines():
                if len(line.strip()) >= 4:
                    self.emit(f"::add-mask::{line.strip()}")

    def group(self, title: str) -> None:
        self.emit(f"::group::{_data(title)}")

    def error(self, message: str, **where: object) -> None:
        props = ",".join(f"{k}={_prop(v)}" for k, v in where.items() if v is not None)
        self.emit(f"::error{' ' + props if props else ''}::{_data(message)}")

    def warning(self, message: str) -> None:
        self.emit(f"::warning::{_data(message)}")


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(value: object) -> str:
    return _data(str(value)).replace(":", "%3A").replace(",", "%2C")


GroupKey = tuple[str | None, str | None, str | None]  # environment, target, stage


class StageGroups:
    """Plain lines of the run's events, folded into one `::group::` per stage and target, each
    opened once, in the plan's order. Builds run ahead of their stage: a line of a stage other
    than the open one waits, and is printed when that stage's group opens; a group closes when
    every service of its stage has ended (or its environment's run has)."""

    def __init__(self, commands: Commands, run_plan: RunPlan) -> None:
        self.commands = commands
        self.left: dict[GroupKey, int] = {}  # main steps not ended yet, per group
        self.order: list[GroupKey] = []
        self.skipped = {(p.environment.name, s.name) for p in run_plan.plans for s in p.skipped}
        for plan in run_plan.plans:
            for tp in plan.targets:
                for sp in tp.stages:
                    key = (plan.environment.name, tp.target.name, sp.name)
                    if sp.services:  # a stage with nothing to run has no lines to group
                        self.left[key] = len(sp.services)
                        self.order.append(key)
        self.waiting: dict[GroupKey, list[str]] = {}
        self.done: set[GroupKey] = set()
        self.current: GroupKey | None = None

    def __call__(self, event: Event) -> None:
        line = format_event(event)
        if event.stage is None:  # an environment's (or the run's) last line: after its stages
            self.close()
            self.flush(event.environment)
            self.commands.line(line)
            self.advance()
            return
        key = (event.environment, event.target, event.stage)
        if (event.environment, event.service) in self.skipped or key in self.done:
            self.commands.line(line)  # skipped services are told at the start, outside groups
            return
        if key == self.current:
            self.commands.line(line)
        else:
            self.waiting.setdefault(key, []).append(line)
        if event.phase not in IMAGE_PHASES and event.status in DONE and key in self.left:
            self.left[key] -= 1
        if key == self.current and self.left[key] <= 0:
            self.close()
        self.advance()

    def next(self) -> GroupKey | None:
        """The group to open: the first of the plan's order with lines waiting whose stage is
        the first one of its environment and target not ended yet."""
        first: dict[tuple[str | None, str | None], GroupKey] = {}
        for key in self.order:
            if key not in self.done:
                first.setdefault(key[:2], key)
        return next((k for k in self.order if k in self.waiting and first.get(k[:2]) == k), None)

    def advance(self) -> None:
        while self.current is None and (key := self.next()) is not None:
            self.open(key)
            if self.left.get(key, 1) <= 0:  # it ended while it waited: shown whole, at once
                self.close()

    def open(self, key: GroupKey) -> None:
        environment, target, stage = key
        self.commands.group(f"{environment} → {target}: {stage}")
        self.current = key
        for line in self.waiting.pop(key, []):
            self.commands.line(line)

    def close(self) -> None:
        if self.current is not None:
            self.commands.emit("::endgroup::")
            self.done.add(self.current)
            self.current = None

    def flush(self, environment: str | None) -> None:
        """Whatever still waits (a run stopped early), each stage in its own group."""
        for key in [k for k in self.order if k in self.waiting]:
            if environment is None or key[0] == environment:
                self.open(key)
                self.close()
        for key in [k for k in self.waiting if environment in (None, k[0])]:
            for line in self.waiting.pop(key):  # not in the plan: nothing to group it by
                self.commands.line(line)
