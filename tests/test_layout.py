"""The tests' own layout: what test files share lives in `tests/support/`, so no test file
imports another test file (which would run, or skip, that file's tests in an unrelated place)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import TESTS


def is_test_module(name: str) -> bool:
    """`tests.test_x`, `tests.receiver.test_y` or a relative `.test_x`: a test file."""
    inside = name.startswith(("tests.", "."))
    return inside and name.rsplit(".", maxsplit=1)[-1].startswith("test_")


def imported_test_files(path: Path) -> list[str]:
    """The test files (as modules) that the file at `path` imports, however it spells it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if is_test_module(alias.name)}
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            joined = [module + ("" if module.endswith(".") else ".") + a.name for a in node.names]
            found |= {name for name in (module, *joined) if is_test_module(name)}
    return sorted(found)


def test_no_test_file_imports_another_test_file() -> None:
    """Every tests/**/test_*.py imports its helpers from tests.support, none from a test file."""
    files = sorted(TESTS.rglob("test_*.py"))
    assert len(files) > 20  # the walk found the suite
    offenders = {
        str(path.relative_to(TESTS)): imported
        for path in files
        if (imported := imported_test_files(path))
    }
    assert offenders == {}, (
        f"test files importing test files (move the shared part to tests/support): {offenders}"
    )


def test_the_layout_check_sees_each_way_of_importing_a_test_file(tmp_path: Path) -> None:
    """`from tests.test_x import y`, `from tests import test_x`, `import tests.receiver.test_y`
    and `from . import test_z` are each found; imports of tests.support and of the project are
    not."""
    source = tmp_path / "test_example.py"
    source.write_text(
        "from tests.test_receiver import payload\n"
        "from tests import test_webhooks\n"
        "import tests.receiver.test_cards\n"
        "from . import test_runner\n"
        "from tests.support.receiver import settled\n"
        "from deploy_pipeline.receiver import Receiver\n"
    )
    assert imported_test_files(source) == [
        ".test_runner",
        "tests.receiver.test_cards",
        "tests.test_receiver",
        "tests.test_webhooks",
    ]
