"""The problems found in one pipeline file, each located at its line and key path, and the
wording every config message shares: quoted names, key paths (`services.api.port`), values
described (`a mapping`, `nothing (null)`)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from deploy_pipeline.errors import ConfigError, ConfigErrors, choices
from deploy_pipeline.model import KeyPath, Pipeline

Loc = KeyPath
SECTIONS = ("services", "targets", "environments")
SIMPLE = re.compile(r"[A-Za-z0-9_.\- ]+")


class Problems:
    """What is wrong with one file, collected so that all of it is reported at once: the line of
    every key and item (filled while the YAML is read), the errors found, and the names the file
    gives (valid or not) that references are checked against."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: dict[Loc, int] = {}
        self.errors: list[ConfigError] = []
        # section → the names the file gives there, None when that section is broken
        self.names: dict[str, list[str] | None] = {}
        self.stages_known = True  # whether `stages:` is absent or a list of texts

    def error(self, loc: Loc, problem: str) -> None:
        probe = loc
        while probe and probe not in self.lines:
            probe = probe[:-1]
        self.errors.append(ConfigError(self.name, self.lines.get(probe), key_path(loc), problem))

    def raise_if_any(self) -> None:
        if self.errors:
            self.errors.sort(key=lambda e: e.line or 0)
            raise ConfigErrors(self.errors)

    def refer(self, loc: Loc, kind: str, name: str) -> None:
        """Check a reference to a service, target, environment or stage by the file's names."""
        section = {
            "service": "services",
            "target": "targets",
            "environment": "environments",
            "stage": "stages",
        }[kind]
        known = self.names.get(section)
        if known is None or name in known:
            return  # that section is broken or absent from the file: it is reported on its own
        self.error(loc, f"no {kind} named {quote(name)}; " + choices(name, known, section))


def located(pipeline: Pipeline, loc: Loc, problem: str) -> ConfigError:
    """A problem found after the file was read, at the line of `loc` (or of the nearest key
    holding it, for a key the file leaves to its default)."""
    probe = loc
    while probe and probe not in pipeline.lines:
        probe = probe[:-1]
    return ConfigError(pipeline.path, pipeline.lines.get(probe), key_path(loc), problem)


def quote(value: object) -> str:
    """A name as it appears in a message: quoted, and escaped if it could break the line."""
    text = str(value)
    return f"'{text}'" if SIMPLE.fullmatch(text) else repr(text)


def key_path(loc: Iterable[str | int]) -> str:
    """A location as a message names it: `services.api.env['A B']`, `stages[2]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out


def describe(value: object) -> str:
    """A value as a message shows what the file gave: short, and the kind for a collection."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"
