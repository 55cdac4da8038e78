"""Running blocking ORM and cache calls from async code."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import psycopg
from asgiref.sync import SyncToAsync
from django.db import close_old_connections, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import pq

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger(__name__)


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


# From this size on, a request body's CPU work (parsing, counting tokens) runs in a worker
# thread: on the event loop, a 2 MB prompt's would hold up every other request meanwhile.
LARGE_BODY_BYTES = 256 * 1024


async def cpu_bound(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`func(*args, **kwargs)` in one of `executor`'s threads, for CPU work on a large body
    that touches no database (so none of `in_thread`'s connection housekeeping)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(func, *args, **kwargs))


def in_thread(func: Callable[P, R]) -> Callable[P, Any]:
    """`func` run in a worker thread, with that thread's database connection out of any
    transaction and given back to the pool afterwards.

    Plain `sync_to_async(thread_sensitive=False)` leaves every worker thread holding its own
    checked-out connection, which exhausts the pool under concurrency. Not thread-sensitive,
    so concurrent requests do not queue behind one thread.
    """
    return _WorkerCall(func, thread_sensitive=False, executor=executor)


class _WorkerCall(SyncToAsync[P, R]):
    """channels' `DatabaseSyncToAsync` (Django's connection housekeeping before and after each
    call), which also ends whatever transaction the call left open on its connection first.

    Django's housekeeping alone does not guarantee that: it checks the connection through
    `ensure_connection`, which can fail (pytest-django's database blocker patches it for every
    thread; a background write that outlives its test then keeps its connection, locks and
    all), and statements sent on the raw psycopg connection (`core.db`) are ones
    Django never saw. A worker thread lives as long as the process, so a transaction it left
    open would stay open, its rows invisible and its locks held, until the thread's next call.
    """

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            for connection in connections.all(initialized_only=True):
                _transaction_end(connection)
                try:
                    connection.close_if_unusable_or_obsolete()
                except BaseException:
                    # Never keep a connection the housekeeping could not look at.
                    with contextlib.suppress(Exception):
                        connection.close()
                    raise


def _transaction_end(connection: BaseDatabaseWrapper) -> None:
    """Roll back what the call left open on `connection`'s raw connection; a connection that
    cannot be brought back to idle is broken and goes back to the pool, which discards it, so
    the next call connects afresh. When nothing was left open this costs one attribute read
    (no round trip)."""
    raw = connection.connection
    if not isinstance(raw, psycopg.Connection) or (
        raw.pgconn.transaction_status == pq.TransactionStatus.IDLE
    ):
        return
    status = pq.TransactionStatus(raw.pgconn.transaction_status).name
    logger.warning("a worker call left its connection %s: rolled back", status)
    with contextlib.suppress(psycopg.Error):
        raw.rollback()
    if raw.pgconn.transaction_status == pq.TransactionStatus.IDLE:
        return
    logger.warning("a worker call left its connection broken (%s): discarded", status)
    try:
        connection.close()
    except Exception:
        if not raw.closed:
            raw.close()
