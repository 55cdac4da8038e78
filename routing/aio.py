"""Running blocking ORM and cache calls from async code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from channels.db import DatabaseSyncToAsync

P = ParamSpec("P")
R = TypeVar("R")


def in_thread(func: Callable[P, R]) -> Callable[P, Any]:
    """`func` run in a worker thread, with that thread's database connection given back to the
    pool afterwards.

    Plain `sync_to_async(thread_sensitive=False)` leaves every worker thread holding its own
    checked-out connection, which exhausts the pool under concurrency; channels' wrapper closes
    stale connections around each call. Not thread-sensitive, so concurrent requests do not
    queue behind one thread.
    """
    return DatabaseSyncToAsync(func, thread_sensitive=False)
