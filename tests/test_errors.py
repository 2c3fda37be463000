"""errors.py: the one exception tree, drawn in its docstring, that every project exception is in."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import deploy_pipeline
from deploy_pipeline import errors
from deploy_pipeline.errors import ApiInputError, DeployPipelineError, UsageError

# internal signals that stay next to the code raising and catching them (the docstring says where)
SIGNALS = {"BuildStopped", "ApplyConflict"}


def _project_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(deploy_pipeline.__path__, "deploy_pipeline."):
        if info.name.endswith("__main__"):  # runs the command line when imported
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__.startswith("deploy_pipeline")
            ):
                found[name] = value
    return found


def test_every_project_exception_is_in_the_tree_and_its_drawing() -> None:
    """Every exception class defined in the package descends from DeployPipelineError, is
    defined in errors.py (or is a named internal signal), and appears in errors.py's drawing."""
    classes = _project_exceptions()
    assert len(classes) >= 20
    outside = {n for n, c in classes.items() if c.__module__ != "deploy_pipeline.errors"}
    assert outside == SIGNALS
    not_in_tree = sorted(n for n, c in classes.items() if not issubclass(c, DeployPipelineError))
    assert not_in_tree == []
    drawing = errors.__doc__ or ""
    assert sorted(n for n in classes if not re.search(rf"[─ ]{n}\b", drawing)) == []


def test_a_bad_api_body_is_a_usage_error_not_a_value_error() -> None:
    """The API's bad-body error is a UsageError (400) in the tree, no longer a bare ValueError."""
    assert issubclass(ApiInputError, UsageError)
    assert not issubclass(ApiInputError, ValueError)
