"""Latency percentiles are nearest-rank over the successful requests, read from the raw rows;
the rollup histogram answers only once retention has removed them."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from analytics.charts import latency_chart
from analytics.filters import ReportFilter
from analytics.retention import retention_apply
from analytics.rollups import rollup_advance
from analytics.selectors import report_breakdown, report_totals
from analytics.services import request_record
from tests.analytics.conftest import outcome

pytestmark = pytest.mark.django_db

DAY = date(2026, 4, 2)
ONE_DAY = ReportFilter(start=DAY, end=DAY)


def _request(latency_ms: int, *, model: str = "gpt-4o", minute: int = 0, **fields: object) -> None:
    request_record(
        outcome=outcome(
            created_at=datetime(DAY.year, DAY.month, DAY.day, 9, tzinfo=UTC)
            + timedelta(minutes=minute),
            model_name=model,
            latency_ms=latency_ms,
            **fields,
        )
    )


def test_one_request_is_every_percentile_of_itself() -> None:
    _request(10_400)

    totals = report_totals(ONE_DAY)
    row = report_breakdown(ONE_DAY, "model_name")[0]

    assert (totals.p50_latency_ms, totals.p95_latency_ms) == (10_400, 10_400)
    assert (row.totals.p50_latency_ms, row.totals.p95_latency_ms) == (10_400, 10_400)
    chart = latency_chart([row])
    assert [trace["y"] for trace in chart["data"]] == [[10_400], [10_400]]


def test_hundred_known_latencies_give_nearest_rank_percentiles() -> None:
    latencies = [10 * n for n in range(1, 101)]  # 10, 20, ..., 1000 ms
    random.Random(7).shuffle(latencies)
    for minute, latency in enumerate(latencies):
        _request(latency, minute=minute)
    # Failures have no meaningful latency and are left out.
    _request(60_000, status="error", cost_state="none", error_code="upstream_5xx")

    totals = report_totals(ONE_DAY)

    # Nearest rank: the 50th and the 95th of the 100 sorted values.
    assert (totals.p50_latency_ms, totals.p95_latency_ms) == (500, 950)


def test_percentiles_per_model_stay_apart() -> None:
    for latency in (100, 200, 300, 400):
        _request(latency, model="gpt-4o")
    for latency in (7_000, 9_000):
        _request(latency, model="smol")

    rows = {r.key: r.totals for r in report_breakdown(ONE_DAY, "model_name")}

    assert (rows["gpt-4o"].p50_latency_ms, rows["gpt-4o"].p95_latency_ms) == (200, 400)
    assert (rows["smol"].p50_latency_ms, rows["smol"].p95_latency_ms) == (7_000, 9_000)


def test_rolled_days_stay_exact_and_the_histogram_answers_after_retention() -> None:
    _request(10_400)
    rollup_advance(now=datetime(2026, 4, 5, tzinfo=UTC))

    assert report_totals(ONE_DAY).p95_latency_ms == 10_400

    retention_apply(now=datetime(2026, 4, 20, tzinfo=UTC), keep_days=7)

    # Only the histogram is left: 10 400 ms lies in the 10 000-30 000 ms bucket.
    totals = report_totals(ONE_DAY)
    assert totals.latency_exact is None
    assert (totals.p50_latency_ms, totals.p95_latency_ms) == (20_000, 29_000)


def test_no_successful_request_has_no_percentile() -> None:
    _request(500, status="error", cost_state="none", error_code="upstream_5xx")

    totals = report_totals(ONE_DAY)

    assert (totals.p50_latency_ms, totals.p95_latency_ms) == (None, None)


def test_beyond_the_row_limit_the_histogram_answers(settings: Any) -> None:
    settings.ORCHESTRATOR_EXACT_PERCENTILES_MAX_ROWS = 1
    _request(10_400)
    _request(10_600, minute=1)

    totals = report_totals(ONE_DAY)

    assert totals.latency_exact is None
    # Both in the 10 000-30 000 ms bucket: p50 halfway through it.
    assert totals.p50_latency_ms == 20_000
