"""Shrink installed packages for the Action's image: rewrite their modules without docstrings
and comments (the kubernetes client is mostly generated docstrings). Code is unchanged: each
module is parsed and unparsed by `ast`, and one that does not round-trip is left as it was."""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def strip(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def main(folders: list[str]) -> int:
    before = after = 0
    for folder in folders:
        for path in Path(folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            try:
                slim = ast.unparse(strip(ast.parse(text))) + "\n"
                compile(slim, str(path), "exec")
            except (SyntaxError, ValueError, RecursionError):
                continue
            before, after = before + len(text), after + len(slim)
            path.write_text(slim, encoding="utf-8")
    print(f"slim.py: {before / 1e6:.1f} MB of modules → {after / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
