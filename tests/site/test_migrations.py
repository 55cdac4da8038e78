from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection


@pytest.mark.django_db
def test_migrations_applied_on_postgres_and_complete() -> None:
    out = StringIO()

    call_command("makemigrations", "--check", "--dry-run", stdout=out)

    assert connection.vendor == "postgresql"
    assert "No changes detected" in out.getvalue()
    tables = set(connection.introspection.table_names())
    assert {"providers_provider", "providers_llmmodel", "analytics_requestlog"} <= tables
