"""Who holds a run, its locks or a delivery's lease: a process named `host:pid` (and its start
time, where the system tells it), and whether that process is gone, so that what it held is free
at once rather than when its lease runs out."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def holder_id() -> str:
    """Who holds a delivery's lease: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_holder() -> str:
    """Who holds a run and its locks: `host:pid`, and the process's start time where the system
    tells it (`host:pid:start`), so a pid used again by a later process is not taken for the one
    that died."""
    start = process_start(os.getpid())
    return holder_id() + (f":{start}" if start else "")


def process_start(pid: int) -> str | None:
    """When a process started, in clock ticks since boot (Linux's /proc); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def dead_here(holder: str) -> bool:
    """A lock held by a process of this machine that no longer exists is free at once; so is
    one whose pid a later process has taken (its start time differs)."""
    host, pid, start = [*holder.split(":"), "", ""][:3]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return bool(start) and process_start(int(pid)) not in (None, start)
