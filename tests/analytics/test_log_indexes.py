"""The request log's indexes: each lookup the reports make has one, and no index repeats what a
wider one already serves (every request's insert updates each of them)."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def _indexed_columns() -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, "analytics_requestlog")
    # Indexes, and the unique and primary key constraints (each is an index too).
    return {
        name: info["columns"]
        for name, info in found.items()
        if info["index"] or info["unique"] or info["primary_key"]
    }


def test_the_log_has_one_index_per_lookup_and_none_that_a_wider_one_covers():
    columns = sorted(_indexed_columns().values())
    assert columns == [
        ["api_key_id", "created_at"],
        ["created_at"],
        ["end_user", "created_at"],
        ["id"],
        ["model_id", "created_at"],
        ["parent_id"],
        ["project", "created_at"],
        ["request_id"],
        ["user_id", "created_at"],
    ]
    # A single-column index is redundant where a wider index leads with the same column.
    singles = {cols[0] for cols in columns if len(cols) == 1}
    leading = {cols[0] for cols in columns if len(cols) > 1}
    assert singles & leading == set()


def test_a_lookup_by_model_uses_the_model_and_time_index():
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN SELECT id FROM analytics_requestlog WHERE model_id = 1")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "reqlog_model_time" in plan
