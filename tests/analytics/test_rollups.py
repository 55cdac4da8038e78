from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from analytics.filters import ReportFilter
from analytics.models import DailyModelRollup, DailyRollup, RequestLog, RollupState
from analytics.retention import retention_apply
from analytics.rollups import rollup_advance, rollup_rebuild_day, rollup_rebuild_range
from analytics.selectors import report_breakdown, report_by_day, report_totals
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
    from analytics.services import request_record

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
    assert _snapshot() == before


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
