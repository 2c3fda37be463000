"""Environment locks as a run holds them: taken one environment at a time (waiting, or asking
the holder to stop with `supersede`), renewed while the run lasts, watched for a newer run's
request to stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from deploy_pipeline.runner import Cancel
from deploy_pipeline.store.state import Store

SUPERSEDE_POLL = 0.1  # how soon a run sees that another asked it to stop (seconds)
REMIND = 30.0  # a run waiting for a lock says so again after this long without news


def wait_for(
    store: Store,
    name: str,
    run_id: int,
    cancel: Cancel,
    on_wait: Callable[[str], None],
    *,
    supersede: bool,
    poll: float,
    ttl: float,
) -> bool:
    """Take one environment's lock, waiting while another run holds it; False when cancelled
    first. With `supersede`, every run found holding it is asked to stop, once (a plain
    waiter may take the lock before this run does). The wait is told once per holder, then
    again every REMIND seconds."""
    asked: set[int] = set()
    said: tuple[int, bool] | None = None
    since = said_at = time.monotonic()
    while (holder := store.try_lock(name, run_id, ttl)) is not None:
        if supersede and holder not in asked:
            store.supersede(name, run_id, holder)
            asked.add(holder)
        now = time.monotonic()
        if said != (holder, holder in asked):
            stop = ", asked it to stop" if holder in asked else ""
            on_wait(f"environment {name} locked by run {holder}{stop}")
            said, said_at = (holder, holder in asked), now
        elif now - said_at >= REMIND:
            on_wait(f"environment {name} still locked by run {holder} ({now - since:.0f}s)")
            said_at = now
        if cancel.event.wait(poll):
            return False
    return True


def heartbeat(
    store: Store,
    names: list[str],
    run_id: int,
    cancel: Cancel,
    stop: threading.Event,
    ttl: float,
) -> None:
    """Renew the locks every ttl/3, and in between look every SUPERSEDE_POLL seconds whether
    another run asked this one to stop: it stops at its next safe point, not minutes on."""
    renew_at = time.monotonic() + ttl / 3
    while not stop.wait(min(SUPERSEDE_POLL, ttl / 3)):
        renew = time.monotonic() >= renew_at
        if renew:
            renew_at = time.monotonic() + ttl / 3
        for name in names:
            by = store.renew_lock(name, run_id, ttl) if renew else store.superseded_by(name, run_id)
            if by is not None:
                cancel.set(f"superseded by run {by}")
