"""Report reads. Closed days come from `DailyRollup`, days after the rollup watermark from the raw
log, and the two are added together, so a report is exact whatever the beat task has done."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone

from analytics.filters import ReportFilter
from analytics.metrics import (
    SUCCESS,
    PercentileDisc,
    derived_raw_metrics,
    derived_rollup_metrics,
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
    P50,
    P95,
    BreakdownRow,
    DayPoint,
    LatencyPercentiles,
    ModelDayCost,
    Totals,
    latency_percentile_ms,
    nearest_rank_ms,
    ratio,
)
from providers.models import LLMModel

__all__ = [
    "BreakdownRow",
    "DayPoint",
    "ModelDayCost",
    "Totals",
    "latency_percentile_ms",
    "nearest_rank_ms",
    "ratio",
]

GROUPABLE = (
    "model_name",
    "provider_name",
    "locality",
    "task_type",
    "complexity",
    "status",
    "user_id",
    "api_key_id",
    "project",
    "tag",
    "day",
)
# Caller dimensions: only the caller-level rollup (`DailyRollup`) keeps them.
CALLER_DIMS = {"user_id", "api_key_id", "project"}
# What only raw rows hold: a request has any number of tags (`RequestTag`), and a breakdown by
# tag reads the log joined to its tags, so a request with two tags counts in both rows.
RAW_DIMS = {"tag"}


def _raw_dims(rows: QuerySet[RequestLog], dims: tuple[str, ...]) -> QuerySet[RequestLog]:
    if "tag" in dims:
        rows = rows.annotate(tag=F("tags__tag"))
    return rows


HOURLY_MAX_DAYS = 2


def totals_from(metrics: dict[str, Any], exact: LatencyPercentiles | None = None) -> Totals:
    """`exact` is used only when it covers every successful request the sums count."""
    values = {name: metrics[name] for name in Totals.__dataclass_fields__ if name in metrics}
    if exact is not None and exact.count != metrics["succeeded"]:
        exact = None
    return Totals(
        **values,
        latency_buckets=tuple(metrics[name] for name in LATENCY_BUCKET_FIELDS),
        latency_exact=exact,
    )


def exact_percentiles_max_rows() -> int:
    return int(getattr(settings, "ORCHESTRATOR_EXACT_PERCENTILES_MAX_ROWS", 200_000))


def latency_exact(
    f: ReportFilter, dims: tuple[str, ...]
) -> dict[tuple[Any, ...], LatencyPercentiles]:
    """Nearest-rank p50 and p95 of the successful requests' latencies per combination of
    `dims`, from the raw rows of the range. A group whose rows retention removed comes back
    with a smaller count than its sums, and `totals_from` then falls back to the histogram."""
    rows = _raw_dims(
        RequestLog.objects.filter(
            f.raw_q(),
            SUCCESS,
            created_at__gte=day_start(f.start),
            created_at__lt=day_start(f.end + timedelta(days=1)),
        ).order_by(),
        dims,
    )
    if connection.vendor == "postgresql":
        aggregates = {
            "n": Count("id"),
            "p50": PercentileDisc("latency_ms", share=P50),
            "p95": PercentileDisc("latency_ms", share=P95),
        }
        found = (
            rows.values(*dims).annotate(**aggregates) if dims else [rows.aggregate(**aggregates)]
        )
        return {
            tuple(row[d] for d in dims): LatencyPercentiles(
                count=row["n"], p50_ms=row["p50"], p95_ms=row["p95"]
            )
            for row in found
        }
    grouped_ms: dict[tuple[Any, ...], list[int]] = {}
    for row in rows.values_list(*dims, "latency_ms"):
        grouped_ms.setdefault(tuple(row[:-1]), []).append(row[-1])
    result = {}
    for key, values in grouped_ms.items():
        values.sort()
        result[key] = LatencyPercentiles(
            count=len(values),
            p50_ms=nearest_rank_ms(values, P50),
            p95_ms=nearest_rank_ms(values, P95),
        )
    return result


def _exact_wanted(succeeded: int) -> bool:
    # Sorting every latency of a long, busy range costs more than the page may; the histogram
    # answers those.
    return 0 < succeeded <= exact_percentiles_max_rows()


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
        or bool(f.project)
        or bool(CALLER_DIMS & set(dims))
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
        f.raw_q(),
        created_at__gte=day_start(first),
        created_at__lt=day_start(f.end + timedelta(days=1)),
    ).order_by()


def grouped(f: ReportFilter, dims: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Metrics per combination of `dims` over the filter's range, rollups and live rows added."""
    unknown = set(dims) - set(GROUPABLE)
    if unknown:
        raise ValueError(f"cannot group by {sorted(unknown)}")
    # Rollups hold neither tags nor end users: such a report reads the raw rows of its whole
    # range (through their indexes), and covers only rows retention has kept.
    watermark = None if f.raw_only or RAW_DIMS & set(dims) else rolled_through()
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    live = _live_part(f, watermark)
    parts: list[Any] = []
    from_rollups = prefixed(rollup_metrics() | derived_rollup_metrics())
    from_raw = prefixed(raw_metrics() | derived_raw_metrics())
    for rollups in _rollup_parts(f, watermark, dims):
        parts.append(
            rollups.values(*dims).annotate(**from_rollups)
            if dims
            else [rollups.aggregate(**from_rollups)]
        )
    if live is not None:
        if "day" in dims:
            live = live.annotate(
                day=TruncDate("created_at", tzinfo=timezone.get_default_timezone())
            )
        live = _raw_dims(live, dims)
        parts.append(
            live.values(*dims).annotate(**from_raw) if dims else [live.aggregate(**from_raw)]
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
    metrics = grouped(f, ())[()] if cube is None else fold(cube, ())[()]
    exact = latency_exact(f, ()).get(()) if _exact_wanted(metrics["succeeded"]) else None
    return totals_from(metrics, exact)


def report_demo_requests(f: ReportFilter) -> int:
    """How many synthetic (`is_demo`) requests the filter's range holds, hidden or not: what
    the demo data banner counts."""
    return int(grouped(replace(f, demo="only"), ())[()]["requests"])


def report_breakdown(f: ReportFilter, dim: str) -> list[BreakdownRow]:
    """One row per value of `dim`, largest cost first, with its share of requests and cost."""
    rows = grouped(f, (dim,))
    all_requests = sum(m["requests"] for m in rows.values())
    all_cost = sum((m["cost_usd"] for m in rows.values()), Decimal(0))
    succeeded = sum(m["succeeded"] for m in rows.values())
    exact = latency_exact(f, (dim,)) if _exact_wanted(succeeded) else {}
    result = [
        BreakdownRow(
            key="" if key[0] is None else str(key[0]),
            totals=totals_from(m, exact.get(key)),
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


def _hours(f: ReportFilter) -> list[datetime]:
    """The start of every hour of the range, in the site's time zone (DST days have 23 or 25)."""
    first, end = day_start(f.start), day_start(f.end + timedelta(days=1))
    hours, step = [], timedelta(hours=1)
    moment = first
    while moment < end:
        hours.append(timezone.localtime(moment, timezone.get_default_timezone()))
        moment += step
    return hours


def _hourly(f: ReportFilter, dims: tuple[str, ...]) -> Grouped:
    rows = (
        RequestLog.objects.filter(
            f.raw_q(),
            created_at__gte=day_start(f.start),
            created_at__lt=day_start(f.end + timedelta(days=1)),
        )
        .order_by()
        .annotate(hour=TruncHour("created_at", tzinfo=timezone.get_default_timezone()))
        .values("hour", *dims)
        .annotate(**prefixed(raw_metrics() | derived_raw_metrics()))
    )
    result: Grouped = {}
    for row in rows:
        clean = metrics_clean(dict(row))
        result[(clean["hour"], *(clean[d] for d in dims))] = clean
    return result


def report_by_hour_points(f: ReportFilter) -> list[DayPoint]:
    """Every hour of a short range (at most `HOURLY_MAX_DAYS`), hours without traffic as
    zeros, from raw rows: what charts draw instead of one or two daily points."""
    if f.days > HOURLY_MAX_DAYS:
        return []
    rows = _hourly(f, ())
    return [
        DayPoint(day=hour, totals=totals_from(rows.get((hour,), metrics_zero())))
        for hour in _hours(f)
    ]


def report_cost_by_model_hour(f: ReportFilter) -> list[ModelDayCost]:
    """Cost per hour and model of a short range; every hour of the range is present."""
    if f.days > HOURLY_MAX_DAYS:
        return []
    rows = _hourly(f, ("model_name",))
    points = [
        ModelDayCost(day=k[0], model_name=k[1] or "(none)", cost_usd=m["cost_usd"])
        for k, m in rows.items()
    ]
    names = {p.model_name for p in points}
    present = {(p.day, p.model_name) for p in points}
    # Zeros for the empty hours keep the time axis whole (one bar alone reads as a spike).
    points += [
        ModelDayCost(day=hour, model_name=name, cost_usd=Decimal(0))
        for hour in _hours(f)
        for name in names
        if (hour, name) not in present
    ]
    return sorted(points, key=lambda p: (p.day, p.model_name))


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
            f.raw_q(),
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
