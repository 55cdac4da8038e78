"""The sums every report is built from, written once for raw rows and once for rollups.

Both sides produce the same keys, so a report can add rollup days and live days together.
Latency figures cover successful requests only; a refused request has no meaningful latency.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Aggregate, Count, IntegerField, Q, Sum

from analytics.models import LATENCY_BUCKET_EDGES_MS, LATENCY_BUCKET_FIELDS, RequestLog

SUCCESS = Q(status=RequestLog.Status.SUCCESS)
COMPARABLE = Q(cost_usd__isnull=False, baseline_cost_usd__isnull=False)

DECIMAL_METRICS = (
    "cost_usd",
    "comparable_cost_usd",
    "comparable_baseline_usd",
    "cache_comparable_cost_usd",
    "cache_comparable_baseline_usd",
)
FLOAT_METRICS = ("quality_loss_sum",)


def _latency_buckets() -> dict[str, Aggregate]:
    buckets: dict[str, Aggregate] = {}
    lower = -1
    for edge, name in zip(LATENCY_BUCKET_EDGES_MS, LATENCY_BUCKET_FIELDS, strict=False):
        buckets[name] = Count("id", filter=SUCCESS & Q(latency_ms__gt=lower, latency_ms__lte=edge))
        lower = edge
    buckets[LATENCY_BUCKET_FIELDS[-1]] = Count("id", filter=SUCCESS & Q(latency_ms__gt=lower))
    return buckets


class PercentileDisc(Aggregate):
    """Postgres' `percentile_disc`: the nearest-rank percentile (the first value whose
    cumulative share reaches `share`). `share` is a constant of ours, never user input."""

    function = "PERCENTILE_DISC"
    template = "%(function)s(%(share)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = IntegerField()

    def __init__(self, expression: str, *, share: Decimal) -> None:
        super().__init__(expression, share=format(Decimal(share), "f"))


def raw_metrics() -> dict[str, Aggregate]:
    """Aggregates over `RequestLog` rows."""
    return {
        "requests": Count("id"),
        "succeeded": Count("id", filter=SUCCESS),
        "clean_successes": Count("id", filter=SUCCESS & Q(fallbacks=0)),
        "priced_requests": Count("id", filter=Q(cost_usd__isnull=False)),
        "fallback_requests": Count("id", filter=Q(fallbacks__gt=0)),
        "cache_hits": Count("id", filter=Q(cache_hit=True)),
        "estimated_requests": Count("id", filter=Q(cost_state=RequestLog.CostState.ESTIMATED)),
        "unknown_price_requests": Count(
            "id", filter=Q(cost_state=RequestLog.CostState.UNKNOWN_PRICE)
        ),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cached_tokens": Sum("cached_tokens"),
        "cost_usd": Sum("cost_usd"),
        "comparable_cost_usd": Sum("cost_usd", filter=COMPARABLE),
        "comparable_baseline_usd": Sum("baseline_cost_usd", filter=COMPARABLE),
        "cache_comparable_cost_usd": Sum("cost_usd", filter=COMPARABLE & Q(cache_hit=True)),
        "cache_comparable_baseline_usd": Sum(
            "baseline_cost_usd", filter=COMPARABLE & Q(cache_hit=True)
        ),
        "latency_ms_sum": Sum("latency_ms", filter=SUCCESS),
        "ttft_ms_sum": Sum("time_to_first_token_ms", filter=SUCCESS),
        "ttft_count": Count("time_to_first_token_ms", filter=SUCCESS),
        **_latency_buckets(),
        # The quality estimate (analytics/quality.py): rows the router scored that got an answer.
        "quality_loss_sum": Sum("quality_loss"),
        "quality_scored": Count("quality_loss"),
    }


METRIC_NAMES = tuple(raw_metrics())

INVALID = Q(status=RequestLog.Status.INVALID)


def derived_raw_metrics() -> dict[str, Aggregate]:
    """Sums read from the status, which raw rows and every rollup keep as a dimension, so they
    need no rollup column of their own: requests refused as invalid (the caller's error)."""
    return {"invalid_requests": Count("id", filter=INVALID)}


def derived_rollup_metrics() -> dict[str, Aggregate]:
    return {"invalid_requests": Sum("requests", filter=INVALID)}


REPORT_NAMES = (*METRIC_NAMES, *derived_raw_metrics())


def rollup_metrics() -> dict[str, Aggregate]:
    """The same keys over `DailyRollup` rows."""
    return {name: Sum(name) for name in METRIC_NAMES}


PREFIX = "m__"


def prefixed(aggregates: dict[str, Aggregate]) -> dict[str, Aggregate]:
    """Aliases apart from column names: an aggregate may not share a name with a field."""
    return {PREFIX + name: aggregate for name, aggregate in aggregates.items()}


def metrics_clean(row: dict[str, Any]) -> dict[str, Any]:
    """Strip the alias prefix and replace the NULL an empty SUM returns with a typed zero."""
    clean = {k.removeprefix(PREFIX): v for k, v in row.items()}
    for name in REPORT_NAMES:
        value = clean.get(name)
        if value is None:
            clean[name] = (
                Decimal(0) if name in DECIMAL_METRICS else 0.0 if name in FLOAT_METRICS else 0
            )
    return clean


def metrics_add(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    total = dict(left)
    for name in REPORT_NAMES:
        total[name] = left[name] + right[name]
    return total


def metrics_zero() -> dict[str, Any]:
    return metrics_clean({})
