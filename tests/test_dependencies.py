"""Every third-party module that the package, the tests, the benchmarks and the scripts import is
declared in pyproject.toml: a fresh virtualenv (what .ci/run and the README make) has it, and no
check passes only because something was installed by hand."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWN = {"deploy_pipeline", "tests", "bench", "common", "conftest", "__future__"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    names = {}
    for group, requirements in groups.items():
        found = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
        names[group] = {_normalized(m.group()) for r in requirements if (m := found.match(r))}
    return names


def _python_files() -> list[Path]:
    files = [p for d in ("src", "tests", "bench") for p in (ROOT / d).rglob("*.py")]
    scripts = [p for p in (ROOT / "scripts").iterdir() if p.is_file()]
    return files + [p for p in scripts if p.read_text().startswith("#!/usr/bin/env python")]


def _imported(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules - OWN - set(sys.stdlib_module_names)


def test_every_imported_module_is_declared() -> None:
    """A module imported anywhere in the repository comes from a distribution that pyproject.toml
    names: src's from the dependencies, the tests', benchmarks' and scripts' from those or the
    dev extras."""
    declared = _declared()
    runtime = declared["dependencies"]
    everything = set().union(*declared.values())
    distributions = packages_distributions()
    missing = []
    for path in _python_files():
        allowed = runtime if path.is_relative_to(ROOT / "src") else everything
        for module in sorted(_imported(path)):
            names = {_normalized(d) for d in distributions.get(module, [])}
            if not names & allowed:
                where = path.relative_to(ROOT)
                missing.append(f"{where}: {module} (from {sorted(names) or 'nothing installed'})")
    assert not missing, "imported but not declared in pyproject.toml:\n" + "\n".join(missing)
