"""scripts/no-cycles: an import cycle anywhere in a package, even one closed by an import under
`if TYPE_CHECKING:`, fails the check and is named; deploy_pipeline has none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "no-cycles"


def no_cycles(*args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(path)} if path else None
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )


def test_a_cycle_closed_under_type_checking_is_named_and_fails(tmp_path: Path) -> None:
    """Two modules importing each other, one of them only for type checking, are a cycle: the
    script prints it with the importing lines and exits 1."""
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "service.py").write_text("from cyclic.housekeeping import Housekeeper\n")
    (package / "housekeeping.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from cyclic.service import Receiver\n\n\nclass Housekeeper: ...\n"
    )
    (package / "leaf.py").write_text("import cyclic.service\n")
    found = no_cycles("cyclic", path=tmp_path)
    assert found.returncode == 1, found.stderr
    assert found.stdout.splitlines() == [
        "import cycle among 2 modules: cyclic.housekeeping → cyclic.service → cyclic.housekeeping",
        "  cyclic.housekeeping imports cyclic.service (line 4)",
        "  cyclic.service imports cyclic.housekeeping (line 1)",
    ]


def test_deploy_pipeline_has_no_import_cycle() -> None:
    """The package's own import graph has no cycle."""
    found = no_cycles()
    assert found.returncode == 0, found.stdout + found.stderr
    assert found.stdout.startswith("no import cycle among the ")
