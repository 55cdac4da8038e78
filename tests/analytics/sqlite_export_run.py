"""A background export on the zero-setup site while the gateway keeps writing requests.

Run by tests/analytics/test_exports_sqlite.py in a child process on SQLite (see
tests/sqlite_site.py): `python -m tests.analytics.sqlite_export_run ROWS`. Prints one JSON
object: what the status endpoint said last, and the rows the download held.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from analytics.models import RequestLog  # noqa: E402
from analytics.outcome import RequestOutcome  # noqa: E402
from analytics.services import requests_record  # noqa: E402


def rows_seed(count: int, today: datetime) -> None:
    """`count` rows a second apart from yesterday's midnight on, made by SQLite itself in one
    statement (the ORM's bulk insert goes 39 rows a statement on SQLite: seconds for this many)."""
    template = RequestLog(
        created_at=today,
        entry_point="chat",
        model_name="gpt-4o-mini",
        provider_name="openai",
        locality="cloud",
        status="success",
        output_tokens=20,
        cost_usd=Decimal("0.00001234"),
        cost_state="reported",
        latency_ms=300,
    )
    fields = [f for f in RequestLog._meta.concrete_fields if not f.primary_key]
    varying = ["request_id", "created_at", "input_tokens"]
    rest = [f for f in fields if f.attname not in varying]
    by_name = {f.attname: f for f in fields}
    columns = ", ".join(
        connection.ops.quote_name(str(f.column)) for f in [*(by_name[n] for n in varying), *rest]
    )
    # As Django stores them on SQLite: a UUID as 32 hex digits, a UTC time as naive text.
    midnight = str((today - timedelta(days=1)).replace(tzinfo=None))
    sql = (
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < %s) "
        f"INSERT INTO {RequestLog._meta.db_table} ({columns}) "
        "SELECT lower(hex(randomblob(16))), datetime(%s, '+' || i || ' seconds'), 100 + i %% 50, "
        + ", ".join(["%s"] * len(rest))
        + " FROM n"
    )
    params: list[Any] = [count, midnight] + [
        f.get_db_prep_save(getattr(template, f.attname), connection) for f in rest
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def gateway_writes(stop: threading.Event, written: list[int]) -> None:
    """Finished requests' rows, in small groups, as `routing.pipeline.closing` writes them."""
    try:
        while not stop.is_set():
            now = timezone.now()
            with transaction.atomic():
                requests_record(
                    outcomes=[
                        RequestOutcome(
                            created_at=now,
                            entry_point="openai",
                            status="success",
                            cost_state="reported",
                            model_name="gpt-4o-mini",
                            cost_usd=Decimal("0.00002"),
                        )
                        for _ in range(3)
                    ]
                )
            written[0] += 3
            time.sleep(0.005)
    finally:
        connection.close()


def main(count: int) -> dict[str, object]:
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows_seed(count, today)
    user = User.objects.create_user("newcomer", is_staff=True)
    client = Client()
    client.force_login(user)

    stop = threading.Event()
    written = [0]
    writer = threading.Thread(target=gateway_writes, args=(stop, written), daemon=True)
    writer.start()
    while written[0] == 0:
        time.sleep(0.01)
    span = {"start": str((today - timedelta(days=1)).date()), "end": str(today.date())}
    try:
        started = client.post("/reports/exports/", span)
        start_status = started.status_code
        status_url = started.json()["status_url"]
    except Exception as exc:  # the page got no answer it could read
        stop.set()
        return {"start_status": 500, "start_error": repr(exc)}
    deadline = time.monotonic() + 60
    while True:
        status = client.get(status_url).json()
        if status["state"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    stop.set()
    writer.join(timeout=10)
    result: dict[str, object] = {
        "start_status": start_status,
        "status": {k: status[k] for k in ("state", "total_rows", "written_rows", "error")},
        "gateway_rows_written": written[0],
    }
    if status["download_url"]:
        download = client.get(status["download_url"])
        body = b"".join(download.streaming_content).decode()  # type: ignore[attr-defined]
        rows = list(csv.reader(io.StringIO(body)))
        result["download_status"] = download.status_code
        result["csv_header"] = rows[0][:2]
        result["csv_rows"] = len(rows) - 1
        result["csv_distinct_ids"] = len({r[0] for r in rows[1:]})
        result["csv_seeded_rows"] = sum(r[2] == "chat" for r in rows[1:])
        result["csv_gateway_rows"] = sum(r[2] == "openai" for r in rows[1:])
    return result


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
