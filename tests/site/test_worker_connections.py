"""A worker call never leaves its connection in a transaction, whatever Django's connection
housekeeping manages, and the prepared-statement cursor never keeps a connection alive.

The incident: a request-log INSERT stayed `idle in transaction` on an `orchestrator-io`
thread's connection after its call had returned; its row never became visible and the next
test's flush waited on its lock for good. Django's housekeeping after a call goes through
`ensure_connection`, which pytest-django's database blocker makes raise for every thread once a
test's database access ends: a background write still running then kept its connection, in its
transaction, until the thread's next call. A connection dropped anywhere without being closed
was kept open by the prepared-statement cursor cache.
"""

from __future__ import annotations

import gc
import time
import warnings
import weakref
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper
from psycopg.pq import TransactionStatus

from core.db import prepared_cursor, prepared_rows
from core.threads import in_thread

pytestmark = pytest.mark.django_db(transaction=True)


def _idle_in_transaction() -> list[tuple[int, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, query FROM pg_stat_activity "
            "WHERE datname = current_database() AND state LIKE 'idle in transaction%%' "
            "AND pid <> pg_backend_pid()"
        )
        return list(cursor.fetchall())


def _backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(cursor.fetchone()[0])


async def test_a_call_whose_housekeeping_fails_still_leaves_no_transaction_open(
    django_db_blocker: Any,
) -> None:
    """Given a call that ran a prepared statement in a transaction Django did not see, and
    database access blocked before the call returned (what a background write that outlives
    its test meets), when the call ends, then its transaction is rolled back and its
    connection is back in the pool, although Django's housekeeping raised."""
    seen: dict[str, Any] = {}

    def write_then_lose_database_access() -> None:
        worker = connections["default"]
        worker.ensure_connection()
        worker.inc_thread_sharing()  # so the test can clean up whatever is left
        seen["worker"] = worker
        seen["raw"] = worker.connection
        seen["raw"].execute("BEGIN")
        assert prepared_rows("SELECT %s::bigint + 1", [41]) == [(42,)]
        seen["left"] = seen["raw"].info.transaction_status
        django_db_blocker.block()

    try:
        with pytest.raises(RuntimeError, match="Database access not allowed"):
            await in_thread(write_then_lose_database_access)()
    finally:
        django_db_blocker.restore()
    try:
        assert seen["left"] == TransactionStatus.INTRANS

        assert await sync_to_async(_idle_in_transaction)() == []
        assert seen["raw"].info.transaction_status == TransactionStatus.IDLE
        assert seen["worker"].connection is None  # given back, not kept by the thread
    finally:
        # Without the fix the thread still holds it, in its transaction.
        await sync_to_async(seen["worker"].close, thread_sensitive=False)()
        seen["worker"].dec_thread_sharing()


async def test_a_call_that_breaks_its_connection_leaves_it_behind() -> None:
    """Given a call whose connection died inside a transaction, when the next call runs (on
    any worker), then it gets a working connection: a broken one is never reused."""

    def die_in_a_transaction() -> int:
        connection.ensure_connection()
        raw = connection.connection
        raw.execute("BEGIN")
        pid = int(raw.info.backend_pid)
        with connections.create_connection("default").cursor() as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        return pid

    def answer() -> int:
        [(value,)] = prepared_rows("SELECT %s::bigint * 2", [21])
        return int(value)

    for _ in range(3):
        await in_thread(die_in_a_transaction)()
        assert [await in_thread(answer)() for _ in range(8)] == [42] * 8
    assert await sync_to_async(_idle_in_transaction)() == []


async def test_a_clean_call_sends_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check after every call reads the connection's state; it sends nothing when the
    call left no transaction open."""
    rollbacks: list[object] = []
    monkeypatch.setattr("psycopg.Connection.rollback", lambda raw: rollbacks.append(raw))

    def clean() -> list[tuple[Any, ...]]:
        return prepared_rows("SELECT %s::bigint", [7])

    assert await in_thread(clean)() == [(7,)]
    assert rollbacks == []


def test_a_dropped_connection_is_not_kept_open_by_its_prepared_cursor() -> None:
    """Given a connection that ran a prepared statement and was then dropped inside a
    transaction without being closed, when it is garbage-collected, then it is gone and so is
    its server session (the cursor kept for it must not keep it alive)."""
    settings = {**connection.settings_dict, "OPTIONS": {}}  # unpooled: nothing else holds it
    dropped = DatabaseWrapper(settings, alias="dropped")
    dropped.ensure_connection()
    with prepared_cursor(dropped) as cursor:
        cursor.execute("SELECT 1", prepare=True)
    raw = dropped.connection
    raw.execute("BEGIN")
    pid = raw.info.backend_pid
    alive = weakref.ref(raw)

    dropped.connection = None
    del raw, cursor, dropped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()

    assert alive() is None
    deadline = time.monotonic() + 5
    while _backend_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _backend_alive(pid)
