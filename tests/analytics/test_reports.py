from __future__ import annotations

from decimal import Decimal

import pytest

from analytics.filters import FilterError, ReportFilter, report_filter_parse
from analytics.insights import report_recommendations, report_score
from analytics.scoping import scope_for
from analytics.selectors import report_breakdown, report_by_day, report_by_hour, report_totals
from tests.analytics.conftest import DAY1, DAY2, Log

pytestmark = pytest.mark.django_db

BOTH_DAYS = ReportFilter(start=DAY1, end=DAY2)


def test_totals_are_exact(log: Log) -> None:
    t = report_totals(BOTH_DAYS)

    assert (t.requests, t.succeeded, t.failed) == (7, 6, 1)
    assert (t.input_tokens, t.output_tokens, t.cached_tokens) == (8500, 4200, 2000)
    assert t.cost_usd == Decimal("0.0093")
    assert t.priced_requests == 5
    assert t.avg_cost_usd == Decimal("0.00186000")
    assert (t.unknown_price_requests, t.estimated_requests) == (1, 1)
    assert t.avg_latency_ms == 881
    # Nearest rank over the six successful latencies 5, 80, 400, 600, 1200, 3000 ms.
    assert t.p50_latency_ms == 400
    assert t.p95_latency_ms == 3000
    assert t.avg_ttft_ms == 246
    assert t.fallback_rate == Decimal("0.1429")
    assert t.error_rate == Decimal("0.1429")
    assert t.cache_hit_rate == Decimal("0.1429")


def test_savings_against_baseline_with_cache_apart(log: Log) -> None:
    t = report_totals(BOTH_DAYS)

    # The unknown-price request is left out of both sides of the comparison.
    assert t.comparable_cost_usd == Decimal("0.0093")
    assert t.comparable_baseline_usd == Decimal("0.05575")
    assert t.savings_usd == Decimal("0.04645")
    assert t.savings_rate == Decimal("0.8332")
    assert t.cache_savings_usd == Decimal("0.015")
    assert t.routing_savings_usd == Decimal("0.03145")


def test_breakdown_by_model_with_shares(log: Log) -> None:
    rows = {r.key: r for r in report_breakdown(BOTH_DAYS, "model_name")}

    assert [r.key for r in report_breakdown(BOTH_DAYS, "model_name")] == [
        "gpt-4o",
        "gpt-4o-mini",
        "mystery",
        "smol",
    ]
    assert rows["gpt-4o"].totals.requests == 2
    assert rows["gpt-4o"].totals.cost_usd == Decimal("0.0075")
    assert rows["gpt-4o"].request_share == Decimal("0.2857")
    assert rows["gpt-4o"].cost_share == Decimal("0.8065")
    assert rows["gpt-4o-mini"].totals.cost_usd == Decimal("0.0018")
    assert rows["gpt-4o-mini"].cost_share == Decimal("0.1935")
    assert rows["mystery"].totals.cost_usd == Decimal(0)
    assert rows["mystery"].totals.unknown_price_requests == 1


def test_breakdowns_by_locality_status_and_day(log: Log) -> None:
    locality = {r.key: r.totals.requests for r in report_breakdown(BOTH_DAYS, "locality")}
    status = {r.key: r.totals.requests for r in report_breakdown(BOTH_DAYS, "status")}
    days = [(p.day, p.totals.requests, p.totals.cost_usd) for p in report_by_day(BOTH_DAYS)]

    assert locality == {"cloud": 6, "local": 1}
    assert status == {"success": 6, "error": 1}
    assert days == [(DAY1, 6, Decimal("0.0084")), (DAY2, 1, Decimal("0.0009"))]


def test_hourly_points_only_for_short_ranges(log: Log) -> None:
    hours = report_by_hour(ReportFilter(start=DAY2, end=DAY2))

    assert [(h.hour.hour, h.requests, h.cost_usd) for h in hours] == [(9, 1, Decimal("0.0009"))]
    assert report_by_hour(ReportFilter(start=DAY1, end=DAY1.replace(day=20))) == []


@pytest.mark.parametrize(
    ("params", "requests", "cost"),
    [
        ({"model_name": "gpt-4o-mini"}, 3, "0.0018"),
        ({"locality": "local"}, 1, "0"),
        ({"provider_name": "openai"}, 6, "0.0093"),
        ({"task_type": "code"}, 3, "0.0075"),
        ({"status": "error"}, 1, "0"),
        ({"api_key_id": "77"}, 1, "0"),
        ({"end": DAY1.isoformat()}, 6, "0.0084"),
    ],
)
def test_filters(log: Log, params: dict[str, str], requests: int, cost: str) -> None:
    f = report_filter_parse(
        {"start": DAY1.isoformat(), "end": DAY2.isoformat(), **params}, today=DAY2
    )

    t = report_totals(f)

    assert (t.requests, t.cost_usd) == (requests, Decimal(cost))


def test_user_filter_for_staff(log: Log) -> None:
    f = report_filter_parse(
        {"start": DAY1.isoformat(), "end": DAY2.isoformat(), "user_id": str(log.ana.pk)}, today=DAY2
    )

    assert report_totals(f).requests == 4


def test_non_staff_see_only_their_rows_and_cannot_widen(log: Log) -> None:
    scope = scope_for(user_id=log.ben.pk, is_staff=False)
    mine = report_filter_parse(
        {"start": DAY1.isoformat(), "end": DAY2.isoformat()}, today=DAY2, scope=scope
    )
    other = report_filter_parse(
        {"start": DAY1.isoformat(), "end": DAY2.isoformat(), "user_id": str(log.ana.pk)},
        today=DAY2,
        scope=scope,
    )

    assert report_totals(mine).requests == 3
    assert report_totals(other).requests == 0


def test_key_scoping_hook_adds_rows_of_the_users_keys(log: Log) -> None:
    from analytics.models import RequestLog
    from analytics.scoping import key_owner_resolver_register, key_owner_resolver_unregister

    RequestLog.objects.filter(api_key_id=77).update(user=None)
    resolver = lambda user_id: (77,) if user_id == log.ben.pk else ()  # noqa: E731
    before = report_totals(
        ReportFilter(start=DAY1, end=DAY2, scope=scope_for(user_id=log.ben.pk, is_staff=False))
    )
    key_owner_resolver_register(resolver)
    try:
        after = report_totals(
            ReportFilter(start=DAY1, end=DAY2, scope=scope_for(user_id=log.ben.pk, is_staff=False))
        )
    finally:
        key_owner_resolver_unregister(resolver)

    assert (before.requests, after.requests) == (2, 3)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"preset": "2d"}, "preset must be one of"),
        ({"start": "2026-13-01"}, "start must be a date"),
        ({"start": "2026-03-12", "end": "2026-03-10"}, "start must not be after end"),
        ({"user_id": "x"}, "user_id must be a whole number"),
    ],
)
def test_bad_filters_are_refused_with_a_message(params: dict[str, str], message: str) -> None:
    with pytest.raises(FilterError, match=message):
        report_filter_parse(params, today=DAY2)


def test_presets_count_back_from_today() -> None:
    f = report_filter_parse({"preset": "7d"}, today=DAY2)

    assert (f.start, f.end, f.days) == (DAY2.replace(day=5), DAY2, 7)


def test_score_parts_and_value(log: Log) -> None:
    score = report_score(BOTH_DAYS)
    parts = {p.key: p.value for p in score.parts}

    assert parts == {
        "cost": Decimal("0.8332"),
        "reliability": Decimal("0.7143"),
        "latency": Decimal("0.8333"),
        "cache": Decimal("0.7143"),
        "budget": None,
        "quality": None,
        # No row of this log was scored by the learned router: the part is left out.
        "quality_kept": None,
    }
    assert score.value == Decimal("78.1")


def test_recommendations(log: Log) -> None:
    advice = report_recommendations(BOTH_DAYS)

    # Too few requests per task type for fallback advice (at least 20 are needed).
    assert [a.kind for a in advice] == ["simple_on_premium", "unknown_price"]
    simple = advice[0]
    assert simple.message == (
        "50 % of premium requests were classified simple; routing them to Smol local would "
        "have saved $0.01 (-81 %)"
    )
    assert simple.effect_usd == Decimal("0.0075")
    assert advice[-1].message == (
        "1 requests to mystery have no price, so their cost is missing from every total; "
        "set its prices"
    )
