"""What the benchmarks share: a timed subprocess and a scratch folder (run them as
`python bench/NAME.py`, which puts this folder on sys.path)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


def timed(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run a command to its end; its wall time in seconds, and what it printed."""
    t0 = time.perf_counter()
    out = subprocess.run(
        list(argv), capture_output=True, text=True, env=dict(env), cwd=cwd, timeout=timeout,
        check=False,
    )  # fmt: skip
    return time.perf_counter() - t0, out


@contextmanager
def workdir(prefix: str, keep: bool) -> Iterator[Path]:
    """A scratch folder, removed afterwards unless `keep` (then its path is printed)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
