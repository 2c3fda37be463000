"""The package's identity: one version (the package metadata's) and one list of actions."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from deploy_pipeline import __version__, action
from deploy_pipeline.cli import main
from deploy_pipeline.model import ACTIONS, RELEASE_MOVES
from deploy_pipeline.store import queue


def test_the_version_is_the_package_metadata_s(capsys: pytest.CaptureFixture[str]) -> None:
    """`deploy-pipeline --version` and `__version__` say the version pyproject.toml gives."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"deploy-pipeline {version('deploy-pipeline')}\n"
    assert __version__ == version("deploy-pipeline")


def test_the_action_input_and_the_queue_extend_the_one_actions_list() -> None:
    """The Action's input adds promote, rollback and preview and a queued job adds ignore to
    the model's ACTIONS."""
    assert (*ACTIONS, *RELEASE_MOVES, "preview") == action.INPUT_ACTIONS
    assert (*ACTIONS, "ignore") == queue.JOB_ACTIONS
