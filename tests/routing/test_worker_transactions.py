"""A job run through `in_thread` never leaves its worker's connection inside a transaction.

Worker threads live as long as the process, and the prepared-statement path talks to the raw
psycopg connection behind Django's back: a job that ended with that connection in a transaction
(a BEGIN Django did not see, an error inside it) must not keep it, its rows invisible and its
locks held, for the life of the thread. What guarantees it today: `in_thread` closes the job's
connection after every job (CONN_MAX_AGE 0), which hands it back to the pool, and the pool rolls
back a connection returned inside a transaction. A change to either (persistent connections, a
pool that does not reset) fails here.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from psycopg.pq import TransactionStatus

from core.threads import in_thread

pytestmark = pytest.mark.django_db(transaction=True)


def _idle_in_transaction() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND state LIKE 'idle in transaction%%' "
            "AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def _leave_a_transaction_open() -> TransactionStatus:
    connection.ensure_connection()
    raw = connection.connection
    raw.execute("BEGIN")
    raw.execute("SELECT 1")
    return raw.info.transaction_status


def _leave_a_failed_transaction() -> TransactionStatus:
    connection.ensure_connection()
    raw = connection.connection
    raw.execute("BEGIN")
    with pytest.raises(Exception, match="division by zero"):
        raw.execute("SELECT 1 / 0")
    return raw.info.transaction_status


@pytest.mark.parametrize(
    ("job", "left"),
    [
        (_leave_a_transaction_open, TransactionStatus.INTRANS),
        (_leave_a_failed_transaction, TransactionStatus.INERROR),
    ],
)
async def test_a_job_that_leaves_a_transaction_open_is_rolled_back(job, left):
    assert await in_thread(job)() == left

    assert await sync_to_async(_idle_in_transaction)() == 0


async def test_a_job_inside_its_own_atomic_block_keeps_working():
    def atomic_job() -> int:
        from django.db import transaction

        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 41 + 1")
            return int(cursor.fetchone()[0])

    assert await in_thread(atomic_job)() == 42
    assert await sync_to_async(_idle_in_transaction)() == 0
