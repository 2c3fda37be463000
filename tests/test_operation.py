"""operation.py: one action from request to record; what it opens is closed however it ends."""

from __future__ import annotations

import gc
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy_pipeline.errors import UsageError
from deploy_pipeline.operation import Operation, Request
from deploy_pipeline.runner import Cancel
from deploy_pipeline.workspace import Workspace

PIPELINE = """
version: 1
targets:
  sim: {kind: simulated}
services:
  db: {type: database, image: postgres:16}
  web: {type: container, image: nginx, port: 80, public: true}
environments:
  staging: {target: sim}
"""


def open_files(state: Path) -> list[str]:
    """The state database's files (`state.db`, `-wal`, `-shm`) this process holds open."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:  # the descriptor the listing itself used, closed by now
            continue
        if target.name.startswith(state.name):
            found.append(target.name)
    return sorted(found)


@pytest.fixture
def no_collector() -> Iterator[None]:
    """What is left open stays open: the garbage collector does not close it behind the test."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_an_operation_that_fails_while_it_opens_closes_the_state_database(
    write_config: Callable[[str], Path], own_state: Path, no_collector: None
) -> None:
    """An operation refused after it opened the state database (an unknown service) closes
    `state.db`, `-wal` and `-shm` before the error reaches its caller, not when collected."""
    path = write_config(PIPELINE)
    with Operation(Request(path, ["staging"], "deploy")) as operation:
        assert operation.perform([], Cancel()) is not None
    assert open_files(own_state) == []
    with pytest.raises(UsageError) as refused:
        Operation(Request(path, ["staging"], "deploy", services=["nope"]))
    assert "nope" in str(refused.value)
    assert open_files(own_state) == []  # while the traceback still holds the half-made one


def test_a_workspace_used_as_a_context_closes_its_database_when_the_block_fails(
    write_config: Callable[[str], Path], own_state: Path, no_collector: None
) -> None:
    """A workspace opened with `with` closes its state database when the block raises."""
    path = write_config(PIPELINE)
    with pytest.raises(UsageError), Workspace(path) as workspace:
        assert open_files(own_state) != []
        workspace.clone("staging", "Not A Name")
    assert open_files(own_state) == []


def test_an_operation_leaves_nothing_open_after_its_run(
    write_config: Callable[[str], Path], own_state: Path, no_collector: None
) -> None:
    """A run performed and recorded: its environment's status kept, and once the block ends the
    state database's files are closed."""
    path = write_config(PIPELINE)
    with Operation(Request(path, ["staging"], "deploy")) as operation:
        result = operation.perform([], Cancel())
        assert result is not None and result.status == "succeeded"
    with Workspace(path, write=False) as workspace:
        assert workspace.records["staging"].status == "deployed"
    assert open_files(own_state) == []


def test_the_terminal_view_follows_a_run_as_an_observer(
    write_config: Callable[[str], Path], own_state: Path
) -> None:
    """The CLI's live view drives nothing: as the operation's observer it says the run's number
    when the run starts, draws it while it runs, and has stopped drawing once it is recorded."""
    from rich.console import Console

    from deploy_pipeline.reporting.terminal import LiveView

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, highlight=False)
    view = LiveView(console, live=True, numbered=True)
    with Operation(Request(write_config(PIPELINE), ["staging"], "deploy")) as operation:
        view.follow(operation)
        result = operation.perform([], Cancel(), observers=[view])
    assert result is not None and result.status == "succeeded"
    assert view.run is operation.run
    assert view.shown is None  # the live display ended with the run
    assert "run 1" in out.getvalue()
