from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from analytics.filters import ReportFilter
from analytics.models import (
    DailyModelRollup,
    DailyRollup,
    MonthlyModelRollup,
    RequestLog,
    RollupState,
)
from analytics.retention import retention_apply
from analytics.rollups import rollup_advance, rollup_rebuild_day, rollup_rebuild_range
from analytics.selectors import report_breakdown, report_by_day, report_totals
from analytics.services import request_record
from analytics.values import Totals
from tests.analytics.conftest import DAY1, DAY2, Log, at, outcome

pytestmark = pytest.mark.django_db

BOTH = ReportFilter(start=DAY1, end=DAY2)


def _snapshot() -> tuple[Totals, list[tuple[str, int, Decimal]], list[tuple[object, int]]]:
    return (
        report_totals(BOTH),
        [
            (r.key, r.totals.requests, r.totals.cost_usd)
            for r in report_breakdown(BOTH, "model_name")
        ],
        [(p.day, p.totals.requests) for p in report_by_day(BOTH)],
    )


def test_rollups_equal_live_aggregation_and_rebuild_is_idempotent(log: Log) -> None:
    live = _snapshot()

    rollup_rebuild_range(first=DAY1, last=DAY2)
    RollupState.objects.update_or_create(pk=1, defaults={"rolled_through": DAY2})
    first_rows = sorted(DailyRollup.objects.values_list("day", "model_name", "status", "requests"))
    from_rollups = _snapshot()
    rollup_rebuild_range(first=DAY1, last=DAY2)
    second_rows = sorted(DailyRollup.objects.values_list("day", "model_name", "status", "requests"))

    assert from_rollups == live
    assert first_rows == second_rows
    assert sum(r[3] for r in second_rows) == 7
    assert DailyRollup.objects.filter(day=DAY1).count() == 6


def test_caller_filters_read_the_fine_rollup_and_agree_with_raw_rows(log: Log) -> None:
    by_user = ReportFilter(start=DAY1, end=DAY2, user_id=log.ben.pk)
    by_key = ReportFilter(start=DAY1, end=DAY2, api_key_id=77)
    live = (report_totals(by_user), report_totals(by_key), report_breakdown(BOTH, "user_id"))

    rollup_rebuild_range(first=DAY1, last=DAY2)
    RollupState.objects.update_or_create(pk=1, defaults={"rolled_through": DAY2})
    DailyModelRollup.objects.all().delete()

    assert (
        report_totals(by_user),
        report_totals(by_key),
        report_breakdown(BOTH, "user_id"),
    ) == live
    assert (live[0].requests, live[1].requests) == (3, 1)


def test_model_rollup_is_the_caller_free_fold(log: Log) -> None:
    rollup_rebuild_range(first=DAY1, last=DAY2)

    assert DailyModelRollup.objects.filter(day=DAY1).count() == 5
    assert sum(DailyModelRollup.objects.values_list("requests", flat=True)) == 7
    assert sum(DailyModelRollup.objects.values_list("cost_usd", flat=True)) == Decimal("0.0093")


def test_reports_add_rollup_days_and_live_days(log: Log) -> None:
    live = _snapshot()
    rollup_rebuild_day(day=DAY1)
    RollupState.objects.update_or_create(pk=1, defaults={"rolled_through": DAY1})
    # A raw row of a rolled day is no longer read: proof the rollup is what serves DAY1.
    RequestLog.objects.filter(created_at__date=DAY1, status="error").delete()

    assert _snapshot() == live


def test_advance_rolls_closed_days_and_moves_the_watermark(log: Log) -> None:
    now = datetime(2026, 3, 12, 0, 30, tzinfo=UTC)

    through = rollup_advance(now=now)

    assert through == DAY2
    assert RollupState.objects.get(pk=1).rolled_through == DAY2
    assert sum(DailyRollup.objects.values_list("requests", flat=True)) == 7


def test_advance_rerolls_the_last_day_for_late_rows(log: Log) -> None:
    rollup_advance(now=datetime(2026, 3, 12, 0, 5, tzinfo=UTC))
    request_record(
        outcome=outcome(
            created_at=at(DAY2, 23),
            model_name="gpt-4o-mini",
            cost_usd=Decimal("0.001"),
            baseline_cost_usd=Decimal("0.01"),
        )
    )
    rollup_advance(now=datetime(2026, 3, 12, 0, 20, tzinfo=UTC))

    assert report_totals(BOTH).requests == 8
    assert sum(DailyRollup.objects.values_list("requests", flat=True)) == 8


def test_retention_deletes_old_raw_rows_in_batches_and_keeps_rollups(log: Log) -> None:
    before = _snapshot()
    rollup_advance(now=datetime(2026, 3, 12, 0, 30, tzinfo=UTC))

    deleted = retention_apply(now=datetime(2026, 4, 30, tzinfo=UTC), keep_days=30, batch_size=2)

    assert deleted == 7
    assert RequestLog.objects.count() == 0
    after = _snapshot()
    # Every sum is kept; the latency percentiles, exact while the raw rows were held, are now
    # read from the rollup histogram.
    assert before[0].latency_exact is not None
    assert after[0] == replace(before[0], latency_exact=None)
    assert after[1:] == before[1:]


def test_retention_never_deletes_days_not_yet_rolled_up(log: Log) -> None:
    rollup_rebuild_day(day=DAY1)
    RollupState.objects.update_or_create(pk=1, defaults={"rolled_through": DAY1})

    deleted = retention_apply(now=datetime(2026, 4, 30, tzinfo=UTC), keep_days=1, batch_size=100)

    assert deleted == 6
    assert list(RequestLog.objects.values_list("created_at", flat=True)) == [at(DAY2, 9)]


def test_retention_off_keeps_everything(log: Log) -> None:
    rollup_advance(now=datetime(2026, 3, 12, 0, 30, tzinfo=UTC))

    assert retention_apply(now=datetime(2027, 1, 1, tzinfo=UTC), keep_days=0) == 0
    assert RequestLog.objects.count() == 7


def _spread(log: Log, day: date, hour: int, cost: str) -> None:
    request_record(
        outcome=outcome(
            created_at=at(day, hour),
            user_id=log.ana.pk,
            task_type="code",
            complexity="complex",
            model_id=log.premium.pk,
            model_name="gpt-4o",
            provider_name="openai",
            locality="cloud",
            input_tokens=100,
            output_tokens=10,
            cost_usd=Decimal(cost),
            baseline_cost_usd=Decimal(cost),
            latency_ms=700,
        )
    )


def test_long_ranges_read_whole_months_from_the_monthly_fold_and_edges_from_days(
    log: Log,
) -> None:
    for day, cost in (
        (date(2026, 1, 30), "0.01"),
        (date(2026, 1, 31), "0.02"),
        (date(2026, 2, 1), "0.04"),
        (date(2026, 2, 28), "0.08"),
        (date(2026, 3, 1), "0.16"),
    ):
        _spread(log, day, 23, cost)
    long = ReportFilter(start=date(2026, 1, 31), end=DAY2)
    live = (
        report_totals(long),
        report_breakdown(long, "model_name"),
        report_breakdown(long, "task_type"),
    )

    rollup_rebuild_range(first=date(2026, 1, 1), last=DAY2)
    RollupState.objects.update_or_create(pk=1, defaults={"rolled_through": DAY2})
    february = MonthlyModelRollup.objects.filter(month=date(2026, 2, 1))
    assert sorted(february.values_list("requests", "cost_usd")) == [(2, Decimal("0.12"))]
    # February is read from the monthly fold only: its daily rows no longer matter.
    DailyModelRollup.objects.filter(day__month=2).delete()
    from_rollups = (
        report_totals(long),
        report_breakdown(long, "model_name"),
        report_breakdown(long, "task_type"),
    )

    assert from_rollups == live
    assert live[0].requests == 11  # the seven of the log and four of these
    assert live[0].cost_usd == Decimal("0.3093")
    assert MonthlyModelRollup.objects.filter(month=date(2026, 1, 1)).get().requests == 2


def test_rebuilding_one_day_refolds_its_month(log: Log) -> None:
    _spread(log, date(2026, 2, 10), 9, "0.04")
    rollup_rebuild_range(first=date(2026, 2, 1), last=date(2026, 2, 28))
    _spread(log, date(2026, 2, 20), 9, "0.08")

    rollup_rebuild_day(day=date(2026, 2, 20))

    month = MonthlyModelRollup.objects.get(month=date(2026, 2, 1))
    assert (month.requests, month.cost_usd, month.latency_le_1000) == (2, Decimal("0.12"), 2)
    assert MonthlyModelRollup.objects.count() == 1


def test_advance_over_months_rolls_each_month_whole_and_ends_at_yesterday(log: Log) -> None:
    for day, cost in (
        (date(2026, 1, 30), "0.01"),
        (date(2026, 2, 1), "0.04"),
        (date(2026, 2, 28), "0.08"),
    ):
        _spread(log, day, 23, cost)
    live = report_totals(ReportFilter(start=date(2026, 1, 1), end=date(2026, 4, 30)))

    # A first run: from the oldest row (January 30) to yesterday (April 30).
    through = rollup_advance(now=datetime(2026, 5, 1, 0, 30, tzinfo=UTC))

    assert through == date(2026, 4, 30)
    assert RollupState.objects.get(pk=1).rolled_through == date(2026, 4, 30)
    # January and February hold only these rows (the log's own are from March).
    monthly = MonthlyModelRollup.objects.filter(month__lt=date(2026, 3, 1)).order_by("month")
    assert [(m.month, m.model_name, m.requests, m.cost_usd) for m in monthly] == [
        (date(2026, 1, 1), "gpt-4o", 1, Decimal("0.01")),
        (date(2026, 2, 1), "gpt-4o", 2, Decimal("0.12")),
    ]
    assert sum(DailyRollup.objects.values_list("requests", flat=True)) == 3 + 7
    assert report_totals(ReportFilter(start=date(2026, 1, 1), end=date(2026, 4, 30))) == live
