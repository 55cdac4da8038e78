"""Daily rollups: each day is rebuilt whole (delete + INSERT … SELECT … GROUP BY in one
transaction, the sums computed in the database), so a rebuild is idempotent, and a beat task
advances a watermark so reports know where raw rows begin."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.functions import TruncDate, TruncMonth
from django.utils import timezone

from analytics.metrics import METRIC_NAMES, PREFIX, prefixed, raw_metrics, rollup_metrics
from analytics.models import (
    DailyModelRollup,
    DailyRollup,
    MonthlyModelRollup,
    RequestLog,
    RollupMetrics,
    RollupState,
)

ROLLUP_DIMENSIONS = (
    "model_id",
    "model_name",
    "provider_name",
    "locality",
    "user_id",
    "api_key_id",
    "project",
    "task_type",
    "complexity",
    "status",
    "is_demo",
)
# Without the caller: what staff-wide reports group on.
MODEL_ROLLUP_DIMENSIONS = tuple(
    d for d in ROLLUP_DIMENSIONS if d not in ("user_id", "api_key_id", "project")
)


def day_start(day: date) -> datetime:
    """Midnight of `day` in the site's time zone; days follow TIME_ZONE, not UTC."""
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_default_timezone())


def month_after(day: date) -> date:
    """The first day of the month after `day`'s."""
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def local_day(moment: datetime) -> date:
    return timezone.localtime(moment, timezone.get_default_timezone()).date()


def rollup_state() -> RollupState:
    state, _ = RollupState.objects.get_or_create(pk=1)
    return state


def rolled_through() -> date | None:
    return RollupState.objects.filter(pk=1).values_list("rolled_through", flat=True).first()


def _insert_select(
    model: type[RollupMetrics], rows: QuerySet[Any, Any], keys: tuple[str, ...]
) -> int:
    """INSERT … SELECT of a grouped `values(*keys).annotate(**prefixed(...))` queryset: the sums
    never leave the database. An empty SUM becomes a typed zero, as `metrics_clean` does."""
    quote = connection.ops.quote_name
    select_sql, params = rows.query.sql_with_params()
    columns = [*keys, *METRIC_NAMES]
    values = [
        *(f"q.{quote(k)}" for k in keys),
        *(f"COALESCE(q.{quote(PREFIX + name)}, 0)" for name in METRIC_NAMES),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(map(quote, columns))}) "
            f"SELECT {', '.join(values)} FROM ({select_sql}) q",
            params,
        )
        return cursor.rowcount


def _rebuild_days(first: date, last: date) -> int:
    raw = (
        RequestLog.objects.filter(
            created_at__gte=day_start(first),
            created_at__lt=day_start(last + timedelta(days=1)),
            # A plan's calls are in their plan's row (its tokens and costs are their sums).
            parent__isnull=True,
        )
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_default_timezone()))
        .order_by()
        .values("day", *ROLLUP_DIMENSIONS)
        .annotate(**prefixed(raw_metrics()))
    )
    folded = (
        DailyRollup.objects.filter(day__gte=first, day__lte=last)
        .order_by()
        .values("day", *MODEL_ROLLUP_DIMENSIONS)
        .annotate(**prefixed(rollup_metrics()))
    )
    month_first, month_end = first.replace(day=1), month_after(last)
    by_month = (
        DailyModelRollup.objects.filter(day__gte=month_first, day__lt=month_end)
        .annotate(month=TruncMonth("day"))
        .order_by()
        .values("month", *MODEL_ROLLUP_DIMENSIONS)
        .annotate(**prefixed(rollup_metrics()))
    )
    with transaction.atomic():
        # Serialises concurrent rebuilds of the same days behind the state row.
        RollupState.objects.select_for_update().get_or_create(pk=1)
        DailyRollup.objects.filter(day__gte=first, day__lte=last).delete()
        written = _insert_select(DailyRollup, raw, ("day", *ROLLUP_DIMENSIONS))
        DailyModelRollup.objects.filter(day__gte=first, day__lte=last).delete()
        _insert_select(DailyModelRollup, folded, ("day", *MODEL_ROLLUP_DIMENSIONS))
        # Every month touched is refolded whole from its daily rows.
        MonthlyModelRollup.objects.filter(month__gte=month_first, month__lt=month_end).delete()
        _insert_select(MonthlyModelRollup, by_month, ("month", *MODEL_ROLLUP_DIMENSIONS))
    return written


def _month_spans(first: date, last: date) -> Iterator[tuple[date, date]]:
    """`first` to `last` cut at month ends: each span's first and last day."""
    day = first
    while day <= last:
        through = min(month_after(day) - timedelta(days=1), last)
        yield day, through
        day = through + timedelta(days=1)


def rollup_rebuild_day(*, day: date) -> int:
    """Recompute one day's rollup rows from the raw log; returns how many rollup rows it wrote."""
    return _rebuild_days(day, day)


def rollup_rebuild_range(
    *, first: date, last: date, progress: Callable[[int], None] | None = None
) -> int:
    """Rebuild a calendar month (or the part of it in range) per transaction, one set-based
    statement per table; `progress` gets the number of days done."""
    written = 0
    for day, through in _month_spans(first, last):
        written += _rebuild_days(day, through)
        if progress is not None:
            progress((through - first).days + 1)
    return written


def rollup_advance(*, now: datetime) -> date | None:
    """Roll every closed day not yet rolled, re-rolling the last one for late-arriving rows.

    Returns the new watermark: reports read rollups up to it and raw rows after it.
    """
    yesterday = local_day(now) - timedelta(days=1)
    state = rollup_state()
    if state.rolled_through is not None:
        first = state.rolled_through
    else:
        oldest = (
            RequestLog.objects.order_by("created_at").values_list("created_at", flat=True).first()
        )
        first = local_day(oldest) if oldest else yesterday
    first = min(first, yesterday)
    # A calendar month (or the part of it left) at a time, each in one transaction of set-based
    # statements: a first run over a year of rows, or a run after days away, is a dozen
    # rebuilds, not one per day. The watermark follows each month, so a run cut short resumes.
    for day, through in _month_spans(first, yesterday):
        _rebuild_days(day, through)
        RollupState.objects.filter(pk=1).update(rolled_through=through)
    return yesterday


def rollup_backfill(
    *, first: date, now: datetime, progress: Callable[[int], None] | None = None
) -> date:
    """Rebuild every closed day from `first` (rows written into the past, e.g. demo data or an
    import) and move the watermark to yesterday if it was behind."""
    yesterday = local_day(now) - timedelta(days=1)
    rollup_rebuild_range(first=first, last=yesterday, progress=progress)
    if connection.vendor == "postgresql":
        # A backfill rewrites most rollup rows at once; the planner should see them now, not when
        # autovacuum next passes (stale counts turn a 365-day report into a bitmap scan).
        with connection.cursor() as cursor:
            tables = [m._meta.db_table for m in (DailyRollup, DailyModelRollup, MonthlyModelRollup)]
            cursor.execute(f"ANALYZE {', '.join(map(connection.ops.quote_name, tables))}")
    state = rollup_state()
    if state.rolled_through is None or state.rolled_through < yesterday:
        RollupState.objects.filter(pk=1).update(rolled_through=yesterday)
    return yesterday
