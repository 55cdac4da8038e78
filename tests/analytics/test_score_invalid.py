"""Requests refused as invalid are the caller's error: reported apart, never in the score."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client

from analytics.filters import ReportFilter
from analytics.insights import report_score
from analytics.rollups import rollup_advance
from analytics.score import ScoreInputs, score_compute
from analytics.services import request_record
from tests.analytics.conftest import outcome

DAY = date(2026, 4, 2)
ONE_DAY = ReportFilter(start=DAY, end=DAY)


def test_invalid_requests_leave_every_part_alone() -> None:
    clean = ScoreInputs(
        requests=10,
        succeeded=10,
        clean_successes=10,
        comparable_cost_usd=Decimal(0),
        comparable_baseline_usd=Decimal(10),
        within_latency_target=10,
        cache_hits=2,
        budgets=0,
        budgets_within_limit=0,
        feedback_positive=0,
        feedback_negative=0,
    )
    # The same traffic plus 30 malformed requests the gateway refused.
    with_invalid = ScoreInputs(**{**clean.__dict__, "requests": 40, "invalid_requests": 30})

    before = score_compute(clean, latency_target_ms=2500)
    after = score_compute(with_invalid, latency_target_ms=2500)

    assert before.value == after.value == Decimal("100.0")
    assert [(p.key, p.value) for p in after.parts] == [(p.key, p.value) for p in before.parts]
    assert (after.invalid_requests, after.invalid_share) == (30, Decimal("0.7500"))
    assert (before.invalid_requests, before.invalid_share) == (0, Decimal("0.0000"))


def test_only_invalid_requests_give_no_score() -> None:
    score = score_compute(
        ScoreInputs(
            requests=3,
            succeeded=0,
            clean_successes=0,
            comparable_cost_usd=Decimal(0),
            comparable_baseline_usd=Decimal(0),
            within_latency_target=0,
            cache_hits=0,
            budgets=0,
            budgets_within_limit=0,
            feedback_positive=0,
            feedback_negative=0,
            invalid_requests=3,
        ),
        latency_target_ms=2500,
    )

    assert score.value is None
    assert (score.invalid_requests, score.invalid_share) == (3, Decimal("1.0000"))


def _log(day: date, *, valid: int, invalid: int) -> None:
    start = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    for n in range(valid):
        request_record(
            outcome=outcome(
                created_at=start + timedelta(minutes=n),
                model_name="gpt-4o",
                cost_usd=Decimal("0.001"),
                baseline_cost_usd=Decimal("0.001"),
                latency_ms=300,
            )
        )
    for n in range(invalid):
        request_record(
            outcome=outcome(
                created_at=start + timedelta(minutes=30 + n),
                entry_point="openai",
                status="invalid",
                error_code="INVALID_REQUEST" if n % 2 else "TOKEN_LIMIT_EXCEEDED",
                cost_state="none",
            )
        )


@pytest.mark.django_db
@pytest.mark.parametrize("rolled", [False, True], ids=["raw", "rolled-up"])
def test_report_score_counts_invalid_requests_apart(rolled: bool) -> None:
    _log(DAY, valid=4, invalid=6)
    if rolled:
        rollup_advance(now=datetime(2026, 4, 5, tzinfo=UTC))

    score = report_score(ONE_DAY)
    parts = {p.key: p.value for p in score.parts}

    # 4 routed requests, all clean: the 6 refusals cost routing nothing.
    assert parts["reliability"] == Decimal("1.0000")
    assert parts["cache"] == Decimal("0.0000")
    assert (score.invalid_requests, score.invalid_share) == (6, Decimal("0.6000"))
    # cost 0 x 30 + reliability 1 x 25 + latency 1 x 15 + cache 0 x 10, over 80
    assert score.value == Decimal("50.0")


@pytest.mark.django_db
def test_summary_api_and_dashboard_show_invalid_requests() -> None:
    _log(DAY, valid=4, invalid=6)
    client = Client()
    client.force_login(User.objects.create_user("boss", is_staff=True))

    summary = client.get(f"/reports/api/summary?start={DAY}&end={DAY}").json()
    page = client.get(f"/?start={DAY}&end={DAY}").content.decode()

    assert summary["score"]["value"] == "50.0"
    assert (summary["score"]["invalid_requests"], summary["score"]["invalid_share"]) == (
        6,
        "0.6000",
    )
    assert "6 requests refused as invalid (60 % of all)" in page
