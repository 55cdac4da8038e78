"""Which errors mean that Postgres or Redis cannot be reached right now.

Not every database or Redis error is an outage: an integrity error or a Lua script's error
reply is a fault of the request or of the code, and stays one. These are the errors of a
dependency that is down, restarting or too slow to answer within its bounded wait
(docs/configuration.md), which the doors answer with `DEPENDENCY_UNAVAILABLE` (503) and the
guards treat as docs/guards.md says.
"""

from __future__ import annotations

import psycopg
import redis
from django.db import InterfaceError, OperationalError

DEPENDENCY_UNAVAILABLE = "DEPENDENCY_UNAVAILABLE"

# Django's wrappers, and psycopg's own for what is raised outside Django's wrapping (the
# connection pool's wait, statements on the raw connection).
DATABASE_AWAY: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
REDIS_AWAY: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
DEPENDENCY_AWAY = DATABASE_AWAY + REDIS_AWAY


def dependency_away(exc: BaseException) -> str | None:
    """ "database" or "redis" when `exc` says that one cannot be reached; else None."""
    if isinstance(exc, DATABASE_AWAY):
        return "database"
    if isinstance(exc, REDIS_AWAY):
        return "redis"
    return None


def dependency_message(dependency: str) -> str:
    return f"The gateway's {dependency} is unavailable; retry shortly."
