"""Running blocking ORM and cache calls from async code."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from channels.db import DatabaseSyncToAsync

P = ParamSpec("P")
R = TypeVar("R")


_worker = threading.local()


def in_long_lived_worker() -> bool:
    """Whether the calling thread is one of `executor`'s, which live as long as the process
    (so what such a thread keeps for itself, a connection say, is reused rather than leaked)."""
    return bool(getattr(_worker, "long_lived", False))


def _worker_started() -> None:
    _worker.long_lived = True
    _yield_to_the_event_loop()


def _yield_to_the_event_loop() -> None:
    """Run this worker thread under SCHED_BATCH (Linux): woken, it waits for the CPU's next
    turn instead of preempting the thread that woke it.

    That thread is nearly always the event loop's, which holds the GIL while it hands work
    over: a worker that preempted it at once could only wait for the GIL and hand the CPU
    back, two context switches for nothing on every call (on one core, about a tenth of a
    gateway request's CPU went to them). Batch threads keep their fair share of the CPU: the
    scheduler still runs them at its next tick, and at once whenever the loop waits for I/O.
    Setting it needs no privilege; where the policy does not exist nothing changes."""
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, batch, os.sched_param(0))


# The pool of every `in_thread` call, shared by all event loops of the process (as the loop's
# default executor would be, with the same size).
executor = ThreadPoolExecutor(
    max_workers=min(32, (os.cpu_count() or 1) + 4),
    thread_name_prefix="orchestrator-io",
    initializer=_worker_started,
)


def in_thread(func: Callable[P, R]) -> Callable[P, Any]:
    """`func` run in a worker thread, with that thread's database connection given back to the
    pool afterwards.

    Plain `sync_to_async(thread_sensitive=False)` leaves every worker thread holding its own
    checked-out connection, which exhausts the pool under concurrency; channels' wrapper closes
    stale connections around each call. Not thread-sensitive, so concurrent requests do not
    queue behind one thread.
    """
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=executor)
