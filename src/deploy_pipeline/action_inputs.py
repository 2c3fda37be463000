"""The Action's inputs: the step's `with:` values as INPUT_* variables, read and checked before
anything is touched (a bad one fails the step with a sentence saying what would be right), and
the credentials in them that the log must mask."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from deploy_pipeline.errors import UsageError
from deploy_pipeline.model import ACTIONS, RELEASE_MOVES

# the input also takes promote, rollback (§10) and preview: deploy, or delete if closed
INPUT_ACTIONS = (*ACTIONS, *RELEASE_MOVES, "preview")
TRUE, FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off", ""}
MAX_RELEASE = 2**63 - 1  # the largest number a database column holds
# kubeconfig keys whose values are credentials (masked before anything is printed)
SECRET_KEYS = {
    "token",
    "password",
    "client-key-data",
    "client-certificate-data",
    "id-token",
    "refresh-token",
    "access-token",
}


class Inputs:
    """The step's `with:` values as a docker action receives them: INPUT_<NAME>, upper-cased,
    hyphens kept (INPUT_DRY-RUN)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def get(self, name: str, default: str = "") -> str:
        return self.environ.get(f"INPUT_{name.upper().replace(' ', '_')}", default).strip()

    def flag(self, name: str) -> bool:
        value = self.get(name).lower()
        if value not in TRUE | FALSE:
            raise UsageError(f"input {name}: expected true or false, got '{value}'")
        return value in TRUE

    def names(self, name: str) -> list[str]:
        """A list input: comma-, space- or newline-separated."""
        return [n for n in self.get(name).replace(",", " ").split() if n]


@dataclass(frozen=True)
class Move:
    """What a promotion or a rollback moves (DESIGN.md §10): promote's `from` input (the
    environment whose latest release's images move) and rollback's `to` (a release number;
    empty: the release before the latest)."""

    source: str | None = None
    to: int | None = None
    moves: bool = False  # promote or rollback: the images of a release, not the workflow's commit

    @classmethod
    def of(cls, inputs: Inputs, action: str) -> Move:
        source, to = inputs.get("from"), inputs.get("to")
        if source and action != "promote":
            raise UsageError(
                f"input from is only for action: promote, and this step's action is {action}; "
                "remove `from:`, or set `action: promote` to deploy that environment's images"
            )
        if to and action != "rollback":
            raise UsageError(
                f"input to is only for action: rollback, and this step's action is {action}; "
                "remove `to:`, or set `action: rollback` to go back to that release"
            )
        if action == "promote" and not source:
            raise UsageError(
                "input from is required with action: promote: the environment whose latest "
                "release's images to deploy (e.g. `from: staging`)"
            )
        moves = action in RELEASE_MOVES
        if not to:
            return cls(source or None, None, moves)
        digits = to.lstrip("0") if to.isascii() and to.isdigit() else ""
        if not digits:
            raise UsageError(
                f"input to: expected a release number, a whole number from 1 up (3 for the v3 "
                f"that `deploy-pipeline history` lists), got '{to}'; leave it empty to roll "
                "back to the release before the latest"
            )
        # past what a database column holds (or int() reads): no release has such a number
        return cls(None, MAX_RELEASE if len(digits) > 19 else min(int(digits), MAX_RELEASE), moves)


def kubeconfig_secrets(kubeconfig: str) -> list[str]:
    """The credentials in a kubeconfig input's content (all of it when it is not YAML)."""
    try:
        doc = yaml.safe_load(kubeconfig)
    except yaml.YAMLError:
        return [kubeconfig]  # not YAML: mask all of it
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in SECRET_KEYS and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return found
