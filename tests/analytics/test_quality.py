"""The estimated quality kept: written per request, summed by rollups, shown by the reports."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext

from analytics.filters import ReportFilter
from analytics.insights import report_score
from analytics.models import DailyModelRollup, DailyRollup, MonthlyModelRollup, RequestLog
from analytics.outcome import RequestOutcome
from analytics.rollups import rollup_advance
from analytics.selectors import report_breakdown, report_totals
from analytics.services import request_record, requests_record
from tests.analytics.conftest import DAY1, DAY2, Log, at, outcome

pytestmark = pytest.mark.django_db

BOTH_DAYS = ReportFilter(start=DAY1, end=DAY2)


def router_trace(probability: float) -> dict[str, Any]:
    """The decision trace the engine writes when the learned router scored the prompt."""
    return {
        "router": {
            "version": "r1-test",
            "probability": probability,
            "threshold": 0.31,
            "quality_target_pct": 95.0,
            "ladder": ["small_local", "large_local", "standard", "premium"],
            "rung_thresholds": [0.103333, 0.206667, 0.31],
            "rung": 2,
            "tier": "standard",
            "mode": "learned",
        }
    }


def scored(log: Log, *, hour: int, probability: float, tier: str, **fields: Any) -> RequestOutcome:
    model = {"premium": log.premium, "standard": log.mini, "small_local": log.local}[tier]
    values: dict[str, Any] = {
        "created_at": at(fields.pop("day", DAY1), hour),
        "user_id": log.ana.pk,
        "model_id": model.pk,
        "model_name": model.name,
        "model_tier": tier,
        "provider_name": model.provider.name,
        "locality": model.provider.locality,
        "input_tokens": 100,
        "output_tokens": 100,
        "cost_usd": Decimal(0),
        "baseline_cost_usd": Decimal("0.00125"),
        "latency_ms": 100,
        "decision_trace": router_trace(probability),
    }
    return outcome(**(values | fields))


def scored_rows_build(log: Log) -> None:
    """Three scored answers: p=0.2 on standard, p=0.4 on small_local, p=0.9 on premium, so the
    loss is 0.2 + 0.4 = 0.6 over 3 scored requests: 80.00 % kept."""
    for row in (
        scored(log, hour=15, probability=0.2, tier="standard"),
        scored(log, hour=16, probability=0.4, tier="small_local"),
        scored(log, hour=17, probability=0.9, tier="premium"),
    ):
        request_record(outcome=row)


def test_request_record_fills_probability_and_loss_by_tier(log: Log) -> None:
    below = request_record(outcome=scored(log, hour=15, probability=0.234567, tier="standard"))
    premium = request_record(outcome=scored(log, hour=16, probability=0.8, tier="premium"))
    rows = {
        r.pk: (r.premium_probability, r.quality_loss)
        for r in RequestLog.objects.filter(pk__in=[below.pk, premium.pk])
    }

    assert rows == {below.pk: (0.234567, 0.234567), premium.pk: (0.8, 0.0)}
    assert (below.premium_probability, below.quality_loss) == (0.234567, 0.234567)


def test_rows_the_router_did_not_score_stay_null(log: Log) -> None:
    # The seven rows of the log carry no router trace (a named model, a given complexity...).
    assert set(RequestLog.objects.values_list("premium_probability", "quality_loss")) == {
        (None, None)
    }


def test_a_failed_request_keeps_its_probability_but_loses_no_quality(log: Log) -> None:
    row = request_record(
        outcome=scored(
            log,
            hour=15,
            probability=0.3,
            tier="standard",
            status="error",
            error_code="upstream_5xx",
            cost_state="none",
            cost_usd=None,
        )
    )

    assert RequestLog.objects.values_list("premium_probability", "quality_loss").get(pk=row.pk) == (
        0.3,
        None,
    )


def test_request_record_stays_one_statement(log: Log) -> None:
    with CaptureQueriesContext(connection) as queries:
        request_record(outcome=scored(log, hour=15, probability=0.5, tier="standard"))

    assert len(queries) == 1


def test_grouped_writer_fills_the_columns_too(log: Log) -> None:
    with transaction.atomic():
        requests_record(
            outcomes=[
                scored(log, hour=15, probability=0.25, tier="small_local"),
                scored(log, hour=16, probability=0.75, tier="premium"),
                outcome(created_at=at(DAY1, 18), model_name="x", decision_trace={}),
            ]
        )

    assert list(
        RequestLog.objects.filter(created_at__gte=at(DAY1, 15), created_at__lt=at(DAY2, 0))
        .order_by("created_at")
        .values_list("premium_probability", "quality_loss")
    ) == [(0.25, 0.25), (0.75, 0.0), (None, None)]


def test_rollups_sum_loss_and_count_scored_rows(log: Log) -> None:
    for row in (
        scored(log, hour=15, probability=0.25, tier="standard"),
        scored(log, hour=16, probability=0.5, tier="small_local"),
        scored(log, hour=17, probability=0.75, tier="premium"),
        scored(log, day=DAY2, hour=10, probability=0.0625, tier="standard"),
    ):
        request_record(outcome=row)

    rollup_advance(now=datetime(2026, 3, 12, 1, tzinfo=UTC))

    for model in (DailyRollup, DailyModelRollup):
        by_day = {
            r["day"]: (r["loss"], r["scored"])
            for r in model.objects.order_by()
            .values("day")
            .annotate(loss=Sum("quality_loss_sum"), scored=Sum("quality_scored"))
        }
        assert by_day == {DAY1: (0.75, 3), DAY2: (0.0625, 1)}
    month = MonthlyModelRollup.objects.aggregate(
        loss=Sum("quality_loss_sum"), scored=Sum("quality_scored")
    )
    assert month == {"loss": 0.8125, "scored": 4}
    # Read back from the rollups: 100 * (1 - 0.8125 / 4) = 79.6875
    totals = report_totals(BOTH_DAYS)
    assert (totals.quality_loss_sum, totals.quality_scored) == (0.8125, 4)
    assert totals.quality_kept_pct == 79.69


def test_report_totals_quality_kept_exact(log: Log) -> None:
    scored_rows_build(log)

    totals = report_totals(BOTH_DAYS)
    by_model = {r.key: r.totals.quality_kept_pct for r in report_breakdown(BOTH_DAYS, "model_name")}

    assert totals.quality_scored == 3
    assert totals.quality_kept_pct == 80.0
    # gpt-4o-mini: 1 - 0.2; smol: 1 - 0.4; gpt-4o: premium keeps all; mystery: not scored
    assert by_model == {"gpt-4o": 100.0, "gpt-4o-mini": 80.0, "smol": 60.0, "mystery": None}


def test_report_reads_rolled_and_live_days_together(log: Log) -> None:
    scored_rows_build(log)
    request_record(outcome=scored(log, day=DAY2, hour=10, probability=0.5, tier="standard"))
    rollup_advance(now=datetime(2026, 3, 11, 12, tzinfo=UTC))  # DAY1 rolled, DAY2 live

    totals = report_totals(BOTH_DAYS)

    assert totals.quality_scored == 4
    # 100 * (1 - (0.2 + 0.4 + 0.5) / 4)
    assert totals.quality_kept_pct == 72.5


def test_no_scored_request_has_no_quality_figure(log: Log) -> None:
    totals = report_totals(BOTH_DAYS)

    assert (totals.quality_loss_sum, totals.quality_scored) == (0.0, 0)
    assert totals.quality_kept_pct is None


def test_score_includes_quality_kept_when_scored(log: Log) -> None:
    scored_rows_build(log)

    parts = {p.key: p for p in report_score(BOTH_DAYS).parts}

    # 80.00 % kept is the floor of the part: value 0.
    assert parts["quality_kept"].value == Decimal("0.0000")
    assert parts["quality_kept"].detail == (
        "estimated 80.00 % of the premium quality kept over 3 scored requests, "
        "measured from a 80 % floor"
    )


@pytest.fixture
def staff_client(log: Log) -> Client:
    client = Client()
    client.force_login(log.staff)
    return client


RANGE = f"start={DAY1}&end={DAY2}"


def test_reports_page_shows_quality_kept(staff_client: Client, log: Log) -> None:
    scored_rows_build(log)

    page = staff_client.get(f"/reports/?{RANGE}").content.decode()
    dashboard = staff_client.get(f"/?{RANGE}").content.decode()

    assert '<span class="value" data-kpi="quality-kept">80.00 %</span>' in page
    assert '<span class="value" data-kpi="quality-kept">80.00 %</span>' in dashboard
    assert "3 requests scored by the router" in page


def test_reports_page_shows_a_dash_when_nothing_was_scored(staff_client: Client) -> None:
    page = staff_client.get(f"/reports/?{RANGE}").content.decode()

    assert '<span class="value" data-kpi="quality-kept">—</span>' in page
    assert "No request scored by the router in this range" in page
    assert "100.00 %" not in page


def test_reports_page_embeds_the_router_curve(staff_client: Client) -> None:
    response = staff_client.get(f"/reports/?{RANGE}")

    spec = response.context["charts"]["router-curve"]
    curve = response.context["router_curve"]
    assert spec["layout"]["title"]["text"] == "Cost-quality curve"
    assert spec["data"][0]["x"] == [p["premium_share_pct"] for p in curve["points"]]
    assert spec["data"][0]["y"] == [p["quality_kept_pct"] for p in curve["points"]]
    point = curve["operating_point"]
    assert (spec["data"][1]["x"], spec["data"][1]["y"]) == (
        [point["premium_share_pct"]],
        [point["quality_kept_pct"]],
    )


def test_reports_page_without_a_curve_reader(staff_client: Client, settings: Any) -> None:
    settings.ORCHESTRATOR_ROUTER_CURVE = ""

    response = staff_client.get(f"/reports/?{RANGE}")

    assert response.status_code == 200
    assert "router-curve" not in response.context["charts"]


def test_api_summary_carries_quality(staff_client: Client, log: Log) -> None:
    scored_rows_build(log)

    body = staff_client.get(f"/reports/api/summary?{RANGE}").json()

    assert body["quality"] == {"quality_kept_pct": 80.0, "scored_requests": 3}
