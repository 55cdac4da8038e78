"""Daily rollups: each day is rebuilt whole (delete + insert in one transaction), so a rebuild
is idempotent, and a beat task advances a watermark so reports know where raw rows begin."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.db import transaction
from django.utils import timezone

from analytics.metrics import metrics_clean, prefixed, raw_metrics, rollup_metrics
from analytics.models import DailyModelRollup, DailyRollup, RequestLog, RollupState

ROLLUP_DIMENSIONS = (
    "model_id",
    "model_name",
    "provider_name",
    "locality",
    "user_id",
    "api_key_id",
    "task_type",
    "complexity",
    "status",
    "is_demo",
)
# Without the caller: what staff-wide reports group on.
MODEL_ROLLUP_DIMENSIONS = tuple(d for d in ROLLUP_DIMENSIONS if d not in ("user_id", "api_key_id"))


def day_start(day: date) -> datetime:
    """Midnight of `day` in the site's time zone; days follow TIME_ZONE, not UTC."""
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_default_timezone())


def local_day(moment: datetime) -> date:
    return timezone.localtime(moment, timezone.get_default_timezone()).date()


def rollup_state() -> RollupState:
    state, _ = RollupState.objects.get_or_create(pk=1)
    return state


def rolled_through() -> date | None:
    return RollupState.objects.filter(pk=1).values_list("rolled_through", flat=True).first()


def rollup_rebuild_day(*, day: date) -> int:
    """Recompute one day's rollup rows from the raw log; returns how many rollup rows it wrote."""
    rows = (
        RequestLog.objects.filter(
            created_at__gte=day_start(day), created_at__lt=day_start(day + timedelta(days=1))
        )
        .order_by()
        .values(*ROLLUP_DIMENSIONS)
        .annotate(**prefixed(raw_metrics()))
    )
    with transaction.atomic():
        # Serialises concurrent rebuilds of the same day behind the state row.
        RollupState.objects.select_for_update().get_or_create(pk=1)
        DailyRollup.objects.filter(day=day).delete()
        created = DailyRollup.objects.bulk_create(
            [DailyRollup(day=day, **metrics_clean(row)) for row in rows], batch_size=2000
        )
        folded = (
            DailyRollup.objects.filter(day=day)
            .order_by()
            .values(*MODEL_ROLLUP_DIMENSIONS)
            .annotate(**prefixed(rollup_metrics()))
        )
        DailyModelRollup.objects.filter(day=day).delete()
        DailyModelRollup.objects.bulk_create(
            [DailyModelRollup(day=day, **metrics_clean(row)) for row in folded], batch_size=2000
        )
    return len(created)


def rollup_rebuild_range(*, first: date, last: date) -> int:
    written = 0
    day = first
    while day <= last:
        written += rollup_rebuild_day(day=day)
        day += timedelta(days=1)
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
    day = first
    while day <= yesterday:
        rollup_rebuild_day(day=day)
        RollupState.objects.filter(pk=1).update(rolled_through=day)
        day += timedelta(days=1)
    return yesterday


def rollup_backfill(*, first: date, now: datetime) -> date:
    """Rebuild every closed day from `first` (rows written into the past, e.g. demo data or an
    import) and move the watermark to yesterday if it was behind."""
    yesterday = local_day(now) - timedelta(days=1)
    rollup_rebuild_range(first=first, last=yesterday)
    state = rollup_state()
    if state.rolled_through is None or state.rolled_through < yesterday:
        RollupState.objects.filter(pk=1).update(rolled_through=yesterday)
    return yesterday
