from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient, Client

from analytics import csvexport
from analytics.models import ExportJob, RequestLog
from tests.analytics.conftest import DAY1, DAY2, Log

RANGE = f"start={DAY1}&end={DAY2}"


@pytest.fixture
def staff_client(log: Log) -> Client:
    client = Client()
    client.force_login(log.staff)
    return client


@pytest.mark.django_db
def test_api_summary_matches_the_selectors(staff_client: Client) -> None:
    body = staff_client.get(f"/reports/api/summary?{RANGE}").json()

    assert body["totals"]["requests"] == 7
    assert body["totals"]["cost_usd"] == "0.00930000"
    assert body["totals"]["unknown_price_requests"] == 1
    assert body["savings"] == {
        "baseline_model": "GPT-4o",
        "actual_cost_usd": "0.00930000",
        "baseline_cost_usd": "0.05575000",
        "savings_usd": "0.04645000",
        "savings_rate": "0.8332",
        "routing_savings_usd": "0.03145000",
        "cache_savings_usd": "0.01500000",
    }
    assert body["score"]["value"] == "78.1"


@pytest.mark.django_db
def test_api_breakdown_filter_and_errors(staff_client: Client, log: Log) -> None:
    rows = staff_client.get(f"/reports/api/breakdown/model_name?{RANGE}&locality=cloud").json()[
        "rows"
    ]

    assert [(r["key"], r["requests"]) for r in rows] == [
        ("gpt-4o", 2),
        ("gpt-4o-mini", 3),
        ("mystery", 1),
    ]
    assert staff_client.get("/reports/api/breakdown/secret").status_code == 404
    assert staff_client.get("/reports/api/summary?start=nope").json() == {
        "error": "start must be a date like 2026-01-31"
    }
    assert Client().get("/reports/api/summary").status_code == 401


@pytest.mark.django_db
def test_pages_render_numbers_and_flag_unknown_prices(staff_client: Client) -> None:
    dashboard = staff_client.get(f"/?{RANGE}").content.decode()
    reports = staff_client.get(f"/reports/?{RANGE}&model_name=gpt-4o-mini").content.decode()

    assert '<span class="value" data-kpi="requests">7</span>' in dashboard
    assert "+ 1 at unknown price (not in total)" in dashboard
    assert 'data-chart="cost-by-model"' in dashboard
    # Routing registers its budget source at start-up; this log has no budgets.
    assert "No budgets apply to you." in dashboard
    assert '<span class="value" data-kpi="requests">3</span>' in reports
    assert "/static/vendor/plotly/plotly.min.js" in reports


@pytest.mark.django_db
def test_non_staff_page_shows_only_own_rows(log: Log) -> None:
    client = Client()
    client.force_login(log.ben)

    body = client.get(f"/reports/api/summary?{RANGE}&user_id={log.ana.pk}").json()
    own = client.get(f"/reports/api/summary?{RANGE}").json()

    assert (body["totals"]["requests"], own["totals"]["requests"]) == (0, 3)


@pytest.mark.django_db
def test_budget_view_renders_a_registered_source(staff_client: Client) -> None:
    from analytics.budgets import BudgetStatus, budget_source_register, budget_source_unregister

    def source(scope: object) -> list[BudgetStatus]:
        return [
            BudgetStatus("team", "global", "month", Decimal(100), Decimal(85), Decimal("0.8"), True)
        ]

    budget_source_register(source)
    try:
        page = staff_client.get("/reports/budgets/").content.decode()
        api = staff_client.get("/reports/api/budgets").json()
    finally:
        budget_source_unregister(source)

    assert 'data-budget="team"' in page
    assert "alert crossed" in page
    assert api["budgets"][0]["used_share"] == "0.8500"


def _close_thread_pools() -> None:
    """Connections are per thread, and so are their pools; the database thread's must go too."""
    for conn in connections.all():
        if hasattr(conn, "close_pool"):
            conn.close_pool()


async def _csv(client: AsyncClient, query: str) -> tuple[list[list[str]], int]:
    response = await client.get(f"/reports/export.csv?{query}")
    assert response.status_code == 200
    if not response.streaming:
        return list(csv.reader(io.StringIO(response.content.decode()))), 1
    chunks = [chunk async for chunk in response.streaming_content]  # type: ignore[attr-defined]
    await sync_to_async(_close_thread_pools)()
    return list(csv.reader(io.StringIO(b"".join(chunks).decode()))), len(chunks)


@pytest.mark.django_db(transaction=True)
async def test_raw_csv_streams_in_chunks_with_quoting_and_iso_times(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csvexport, "CHUNK_ROWS", 3)
    await RequestLog.objects.filter(model_name="mystery").aupdate(
        model_name='odd "name", with\nnewline'
    )
    client = AsyncClient()
    await client.aforce_login(log.staff)

    rows, chunks = await _csv(client, f"{RANGE}&kind=raw")
    by_model = {r[8]: r for r in rows[1:]}

    assert rows[0] == list(csvexport.RAW_COLUMNS)
    assert len(rows) == 8
    # header + 3 + 3 + 1 rows: never the whole result at once
    assert chunks == 4
    assert by_model['odd "name", with\nnewline'][16:19] == ["", "unknown_price", "0.00750000"]
    assert by_model["smol"][1] == "2026-03-10T11:00:00+00:00"
    assert by_model["smol"][16] == "0.00000000"


@pytest.mark.django_db(transaction=True)
async def test_csv_follows_filters_and_scope(log: Log) -> None:
    client = AsyncClient()
    await client.aforce_login(log.ben)

    rows, _ = await _csv(client, f"{RANGE}&kind=raw&model_name=gpt-4o-mini")
    breakdown, _ = await _csv(client, f"{RANGE}&kind=task_type")

    assert [r[8] for r in rows[1:]] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert breakdown[0][:3] == ["task_type", "requests", "succeeded"]
    assert sorted((r[0], r[1], r[7]) for r in breakdown[1:]) == [
        ("general", "2", "0.00090000"),
        ("simple", "1", "0.00000000"),
    ]


@pytest.mark.django_db
def test_background_export_progress_and_download(
    staff_client: Client,
    django_capture_on_commit_callbacks: object,
    settings: object,
    tmp_path: object,
) -> None:
    settings.ORCHESTRATOR_EXPORT_DIR = tmp_path  # type: ignore[attr-defined]
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        started = staff_client.post(
            "/reports/exports/", {"start": str(DAY1), "end": str(DAY2), "status": "success"}
        )

    status = staff_client.get(started.json()["status_url"]).json()
    download = staff_client.get(status["download_url"])
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))  # type: ignore[attr-defined]

    assert started.status_code == 202
    assert {k: status[k] for k in ("state", "total_rows", "written_rows", "progress_pct")} == {
        "state": "done",
        "total_rows": 6,
        "written_rows": 6,
        "progress_pct": 100,
    }
    assert len(rows) == 7
    assert {r[11] for r in rows[1:]} == {"success"}


@pytest.mark.django_db
def test_export_jobs_belong_to_their_owner(staff_client: Client, log: Log) -> None:
    job = ExportJob.objects.create(
        owner=log.ana, query={"preset": "7d"}, total_rows=40, written_rows=10
    )

    assert staff_client.get(f"/reports/exports/{job.pk}/").status_code == 404
    assert job.progress_pct == 25


@pytest.mark.django_db
def test_failed_background_export_answers_and_reports_its_error(
    staff_client: Client,
    django_capture_on_commit_callbacks: object,
    settings: object,
    tmp_path: Path,
) -> None:
    # Given an export folder that cannot be made (its parent is a file)
    (tmp_path / "blocker").write_text("not a folder")
    settings.ORCHESTRATOR_EXPORT_DIR = tmp_path / "blocker" / "exports"  # type: ignore[attr-defined]

    # When an export is started
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        started = staff_client.post("/reports/exports/", {"start": str(DAY1), "end": str(DAY2)})
    status = staff_client.get(started.json()["status_url"]).json()

    # Then the start is answered and the status says why the job failed
    assert started.status_code == 202
    assert {k: status[k] for k in ("state", "progress_pct", "download_url", "error")} == {
        "state": "failed",
        "progress_pct": 0,
        "download_url": None,
        "error": f"[Errno 20] Not a directory: '{tmp_path / 'blocker' / 'exports'}'",
    }
    job = ExportJob.objects.get(pk=started.json()["id"])
    assert job.finished_at is not None
    assert staff_client.get(f"/reports/exports/{job.pk}/download").status_code == 404
