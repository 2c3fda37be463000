"""Holders of locks and leases, for tests of what happens when a holder is gone."""

from __future__ import annotations

import socket
import subprocess
import sys


def dead_holder() -> str:
    """A lock or lease holder id (`host:pid`) of a process of this machine that has exited."""
    pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"{socket.gethostname()}:{pid}"
