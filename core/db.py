"""Statements on the request path, sent to Postgres with server-side parameters and kept
prepared on their connection.

Django's psycopg cursors bind parameters client-side: psycopg quotes every value into the
SQL text in Python, and Postgres parses and plans each statement anew. For the few
statements every request runs (the request log row, budget holds and settlements) that was
a measurable share of the gateway's CPU (docs/benchmarks.md, "Gateway"). A prepared
statement is parsed once per pooled connection; each later call sends only its values.

Errors are Django's (`django.db.IntegrityError`, ...) as with any other query, the
statements take part in the connection's transaction when one is open, and they are logged
in `connection.queries` when Django logs queries (DEBUG, `CaptureQueriesContext`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import pq
from psycopg.types.numeric import Int8Dumper


@functools.cache
def prepared_available() -> bool:
    """Whether the database is Postgres (what the process was configured with: remembered,
    as every request path asks)."""
    return bool(connections[DEFAULT_DB_ALIAS].vendor == "postgresql")


# One cursor per pooled connection, kept on it: a cursor remembers how it dumped each
# parameter type, which a fresh cursor per statement would work out again every time. Not in a
# WeakKeyDictionary: the cursor refers to its connection, so the entry would keep every
# connection ever used alive, and one that was dropped without being closed would stay open at
# the server, in whatever transaction it was in, for the life of the process.
_CURSOR_ATTRIBUTE = "_orchestrator_prepared_cursor"


@contextmanager
def prepared_cursor(connection: BaseDatabaseWrapper) -> Iterator[psycopg.Cursor[Any]]:
    """A server-side binding cursor on `connection`, a Django connection (Postgres only)."""
    connection.ensure_connection()
    raw = connection.connection
    cursor: psycopg.Cursor[Any] | None = getattr(raw, _CURSOR_ATTRIBUTE, None)
    if cursor is None or cursor.closed:
        cursor = psycopg.Cursor(raw)
        setattr(raw, _CURSOR_ATTRIBUTE, cursor)
        # psycopg types an int as int2, int4, int8 or numeric by its size, and a prepared
        # statement is kept per parameter types: one type keeps it one statement.
        cursor.adapters.register_dumper(int, Int8Dumper)
    with connection.wrap_database_errors:
        yield cursor


Params = Sequence[Any] | Mapping[str, Any]


def prepared_rows(sql: str, params: Params) -> list[tuple[Any, ...]]:
    """Run `sql` (`%s` / `%(name)s` placeholders) as a prepared statement; its rows."""
    began = time.monotonic()
    # The thread's connection is looked up once (each `django.db.connection` attribute is a
    # lookup through asgiref's Local).
    connection = connections[DEFAULT_DB_ALIAS]
    with prepared_cursor(connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        rows = cursor.fetchall() if _has_rows(cursor) else []
    _logged(connection, sql, params, began)
    return rows


def prepared_many(
    sql: str, params_seq: Sequence[Params], *, returning: bool = True
) -> list[list[tuple[Any, ...]]]:
    """Run `sql` once per parameter set, all sent together (psycopg's pipeline mode: one round
    trip); the rows of each run, in order, or nothing when `returning` is false (the rows are
    then not even read)."""
    if not params_seq:
        return []
    if len(params_seq) == 1:
        # Pipeline mode costs more than it saves for a single statement.
        rows = prepared_rows(sql, params_seq[0])
        return [rows] if returning else []
    began = time.monotonic()
    results: list[list[tuple[Any, ...]]] = []
    connection = connections[DEFAULT_DB_ALIAS]
    with prepared_cursor(connection) as cursor:
        cursor.executemany(sql, params_seq, returning=returning)
        while returning:
            results.append(cursor.fetchall() if _has_rows(cursor) else [])
            if not cursor.nextset():
                break
    _logged(connection, sql, params_seq, began)
    return results


def _has_rows(cursor: psycopg.Cursor[Any]) -> bool:
    """Whether the statement returned rows (what `cursor.description is not None` says,
    without building the columns' descriptions)."""
    result = cursor.pgresult
    return result is not None and result.status == pq.ExecStatus.TUPLES_OK


def _logged(connection: BaseDatabaseWrapper, sql: str, params: Any, began: float) -> None:
    if connection.queries_logged:
        connection.queries_log.append(
            {"sql": f"{sql} -- {params!r}", "time": f"{time.monotonic() - began:.3f}"}
        )
