"""Prepared statements on the request path: Django's errors, transactions and query log."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from core.db import prepared_available, prepared_many, prepared_rows

pytestmark = pytest.mark.django_db

TABLE = "CREATE TEMPORARY TABLE prepared_probe (id bigint PRIMARY KEY, note text)"
INSERT = "INSERT INTO prepared_probe (id, note) VALUES (%(id)s, %(note)s) RETURNING id, note"


@pytest.fixture
def probe_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(TABLE)


def prepared_count(fragment: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        return int(cursor.fetchone()[0])


def test_rows_come_back_and_one_statement_serves_every_int_size(probe_table):
    assert prepared_available() is True

    assert prepared_rows(INSERT, {"id": 1, "note": "small"}) == [(1, "small")]
    assert prepared_rows(INSERT, {"id": 70_000, "note": "int4"}) == [(70_000, "int4")]
    assert prepared_rows(INSERT, {"id": 2**40, "note": "int8"}) == [(2**40, "int8")]

    assert prepared_count("INTO prepared_probe") == 1
    assert prepared_rows("DELETE FROM prepared_probe WHERE id = %s", [1]) == []


def test_errors_are_djangos_and_roll_back_with_the_transaction(probe_table):
    prepared_rows(INSERT, {"id": 1, "note": "kept"})

    with pytest.raises(IntegrityError), transaction.atomic():
        prepared_rows(INSERT, {"id": 1, "note": "duplicate"})
    with pytest.raises(RuntimeError), transaction.atomic():
        prepared_rows(INSERT, {"id": 2, "note": "rolled back"})
        raise RuntimeError("abort")

    with connection.cursor() as cursor:
        cursor.execute("SELECT id, note FROM prepared_probe ORDER BY id")
        assert cursor.fetchall() == [(1, "kept")]


def test_statements_are_in_djangos_query_log(probe_table):
    with CaptureQueriesContext(connection) as queries:
        prepared_rows(INSERT, {"id": 5, "note": "seen"})

    assert len(queries.captured_queries) == 1
    assert queries.captured_queries[0]["sql"] == f"{INSERT} -- {{'id': 5, 'note': 'seen'}}"


def test_many_runs_go_together_and_each_keeps_its_rows(probe_table):
    with CaptureQueriesContext(connection) as queries:
        results = prepared_many(INSERT, [{"id": n, "note": f"n{n}"} for n in (7, 8, 9)])
        single = prepared_many(INSERT, [{"id": 10, "note": "alone"}])

    assert results == [[(7, "n7")], [(8, "n8")], [(9, "n9")]]
    assert single == [[(10, "alone")]]
    assert prepared_many(INSERT, []) == []
    assert len(queries.captured_queries) == 2  # one entry per call, as it is one round trip
    with pytest.raises(IntegrityError), transaction.atomic():
        prepared_many(INSERT, [{"id": 11, "note": "new"}, {"id": 7, "note": "duplicate"}])
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM prepared_probe")
        assert cursor.fetchone()[0] == 4


def test_many_runs_without_returning_read_no_rows(probe_table):
    assert prepared_many(INSERT, [{"id": n, "note": "x"} for n in (1, 2)], returning=False) == []
    assert prepared_many(INSERT, [{"id": 3, "note": "x"}], returning=False) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM prepared_probe")
        assert cursor.fetchone()[0] == 3
