"""Report reads. Closed days come from `DailyRollup`, days after the rollup watermark from the raw
log, and the two are added together, so a report is exact whatever the beat task has done."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone

from analytics.filters import ReportFilter
from analytics.metrics import (
    metrics_add,
    metrics_clean,
    metrics_zero,
    prefixed,
    raw_metrics,
    rollup_metrics,
)
from analytics.models import (
    LATENCY_BUCKET_FIELDS,
    DailyModelRollup,
    DailyRollup,
    MonthlyModelRollup,
    RequestLog,
)
from analytics.rollups import day_start, month_after, rolled_through
from analytics.values import (
    BreakdownRow,
    DayPoint,
    ModelDayCost,
    Totals,
    latency_percentile_ms,
    ratio,
)
from providers.models import LLMModel

__all__ = ["BreakdownRow", "DayPoint", "ModelDayCost", "Totals", "latency_percentile_ms", "ratio"]

GROUPABLE = (
    "model_name",
    "provider_name",
    "locality",
    "task_type",
    "complexity",
    "status",
    "user_id",
    "api_key_id",
    "day",
)
HOURLY_MAX_DAYS = 2


def totals_from(metrics: dict[str, Any]) -> Totals:
    values = {name: metrics[name] for name in Totals.__dataclass_fields__ if name in metrics}
    return Totals(**values, latency_buckets=tuple(metrics[name] for name in LATENCY_BUCKET_FIELDS))


def _rollup_parts(
    f: ReportFilter, watermark: date | None, dims: tuple[str, ...]
) -> list[QuerySet[Any]]:
    """The rolled part of the range: caller-level days when the report is about callers, else
    whole months from the monthly fold plus the days at either edge from the daily fold."""
    if watermark is None or f.start > watermark:
        return []
    last = min(f.end, watermark)
    q = f.dimension_q()
    by_caller = (
        not f.scope.unrestricted
        or f.user_id is not None
        or f.api_key_id is not None
        or bool({"user_id", "api_key_id"} & set(dims))
    )
    if by_caller:
        return [DailyRollup.objects.filter(q, day__gte=f.start, day__lte=last).order_by()]
    months_from = f.start if f.start.day == 1 else month_after(f.start)
    months_until = (
        month_after(last) if month_after(last) - timedelta(days=1) == last else last.replace(day=1)
    )
    if "day" in dims or months_from >= months_until:
        return [DailyModelRollup.objects.filter(q, day__gte=f.start, day__lte=last).order_by()]
    return [
        MonthlyModelRollup.objects.filter(
            q, month__gte=months_from, month__lt=months_until
        ).order_by(),
        DailyModelRollup.objects.filter(
            q,
            Q(day__gte=f.start, day__lt=months_from) | Q(day__gte=months_until, day__lte=last),
        ).order_by(),
    ]


def _live_part(f: ReportFilter, watermark: date | None) -> QuerySet[RequestLog] | None:
    first = f.start if watermark is None else max(f.start, watermark + timedelta(days=1))
    if first > f.end:
        return None
    return RequestLog.objects.filter(
        f.dimension_q(),
        created_at__gte=day_start(first),
        created_at__lt=day_start(f.end + timedelta(days=1)),
    ).order_by()


def grouped(f: ReportFilter, dims: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Metrics per combination of `dims` over the filter's range, rollups and live rows added."""
    unknown = set(dims) - set(GROUPABLE)
    if unknown:
        raise ValueError(f"cannot group by {sorted(unknown)}")
    watermark = rolled_through()
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    live = _live_part(f, watermark)
    parts: list[Any] = []
    for rollups in _rollup_parts(f, watermark, dims):
        parts.append(
            rollups.values(*dims).annotate(**prefixed(rollup_metrics()))
            if dims
            else [rollups.aggregate(**prefixed(rollup_metrics()))]
        )
    if live is not None:
        if "day" in dims:
            live = live.annotate(
                day=TruncDate("created_at", tzinfo=timezone.get_default_timezone())
            )
        parts.append(
            live.values(*dims).annotate(**prefixed(raw_metrics()))
            if dims
            else [live.aggregate(**prefixed(raw_metrics()))]
        )
    for rows in parts:
        for row in rows:
            key = tuple(row[d] for d in dims)
            clean = metrics_clean(row)
            merged[key] = metrics_add(merged[key], clean) if key in merged else clean
    if not dims and not merged:
        merged[()] = metrics_zero()
    return merged


Grouped = dict[tuple[Any, ...], dict[str, Any]]
CUBE = ("model_name", "complexity", "task_type")


def fold(rows: Grouped, keep: tuple[int, ...]) -> Grouped:
    """Re-group already grouped metrics on a subset of their key positions (no query)."""
    folded: Grouped = {}
    for key, metrics in rows.items():
        short = tuple(key[i] for i in keep)
        folded[short] = metrics_add(folded[short], metrics) if short in folded else metrics
    if not keep and not folded:
        folded[()] = metrics_zero()
    return folded


def report_cube(f: ReportFilter) -> Grouped:
    """Metrics per (model, complexity, task type): one read that totals and advice fold."""
    return grouped(f, CUBE)


def report_totals(f: ReportFilter, cube: Grouped | None = None) -> Totals:
    if cube is None:
        return totals_from(grouped(f, ())[()])
    return totals_from(fold(cube, ())[()])


def report_demo_requests(f: ReportFilter) -> int:
    """How many synthetic (`is_demo`) requests the filter's range holds, hidden or not: what
    the demo data banner counts."""
    return int(grouped(replace(f, demo="only"), ())[()]["requests"])


def report_breakdown(f: ReportFilter, dim: str) -> list[BreakdownRow]:
    """One row per value of `dim`, largest cost first, with its share of requests and cost."""
    rows = grouped(f, (dim,))
    all_requests = sum(m["requests"] for m in rows.values())
    all_cost = sum((m["cost_usd"] for m in rows.values()), Decimal(0))
    result = [
        BreakdownRow(
            key="" if key[0] is None else str(key[0]),
            totals=totals_from(m),
            request_share=ratio(m["requests"], all_requests),
            cost_share=ratio(m["cost_usd"], all_cost),
        )
        for key, m in rows.items()
    ]
    return sorted(result, key=lambda r: (-r.totals.cost_usd, -r.totals.requests, r.key))


def report_by_day(f: ReportFilter) -> list[DayPoint]:
    """Every day of the range, days without traffic included as zeros."""
    rows = grouped(f, ("day",))
    points = []
    day = f.start
    while day <= f.end:
        points.append(DayPoint(day=day, totals=totals_from(rows.get((day,), metrics_zero()))))
        day += timedelta(days=1)
    return points


def report_cost_by_model_day(f: ReportFilter) -> list[ModelDayCost]:
    rows = grouped(f, ("day", "model_name"))
    return sorted(
        (
            ModelDayCost(day=k[0], model_name=k[1] or "(none)", cost_usd=m["cost_usd"])
            for k, m in rows.items()
        ),
        key=lambda p: (p.day, p.model_name),
    )


@dataclass(frozen=True)
class HourPoint:
    hour: datetime
    requests: int
    cost_usd: Decimal


def report_by_hour(f: ReportFilter) -> list[HourPoint]:
    """Hourly points for short ranges, read from raw rows (recent days are always kept raw)."""
    if f.days > HOURLY_MAX_DAYS:
        return []
    rows = (
        RequestLog.objects.filter(
            f.dimension_q(),
            created_at__gte=day_start(f.start),
            created_at__lt=day_start(f.end + timedelta(days=1)),
        )
        .order_by()
        .annotate(hour=TruncHour("created_at", tzinfo=timezone.get_default_timezone()))
        .values("hour")
        .annotate(**prefixed(raw_metrics()))
        .order_by("hour")
    )
    points = []
    for row in rows:
        clean = metrics_clean(dict(row))
        points.append(
            HourPoint(hour=clean["hour"], requests=clean["requests"], cost_usd=clean["cost_usd"])
        )
    return points


@dataclass(frozen=True)
class BaselineModel:
    label: str
    provider_name: str


def baseline_model() -> BaselineModel | None:
    model = LLMModel.objects.filter(is_baseline=True).select_related("provider").first()
    if model is None:
        return None
    return BaselineModel(label=model.label, provider_name=model.provider.name)


@dataclass(frozen=True)
class FilterChoices:
    models: tuple[str, ...]
    providers: tuple[str, ...]
    task_types: tuple[str, ...]
    statuses: tuple[str, ...]


def filter_choices() -> FilterChoices:
    models = LLMModel.objects.select_related("provider").order_by("name")
    return FilterChoices(
        models=tuple(sorted({m.name for m in models})),
        providers=tuple(sorted({m.provider.name for m in models})),
        task_types=tuple(
            sorted(
                t
                for t in DailyRollup.objects.order_by()
                .values_list("task_type", flat=True)
                .distinct()
                if t
            )
        ),
        statuses=tuple(RequestLog.Status.values),
    )
