"""Reads of the request log behind the service endpoints and the live telemetry: the gateway's
totals over a window (`/metrics`), each model's recent requests, errors and last latency
(`/models`), and the last minute's traffic (the telemetry stream, live and rebuilt for a page
opened after a quiet spell). Demo rows (`is_demo`) are synthetic history, not traffic: the
endpoints' reads leave them out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from analytics.models import RequestLog
from providers.models import LLMModel

FAILED = ~Q(status=RequestLog.Status.SUCCESS)
ERROR_STATUSES = (RequestLog.Status.ERROR, RequestLog.Status.PARTIAL)
TRAFFIC_WINDOW_S = 60


@dataclass(frozen=True)
class GatewayMetrics:
    window_s: int
    total: int
    success: int
    failed: int
    by_status: dict[str, int]
    avg_response_time_ms: float | None
    p95_response_time_ms: int | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: Decimal
    baseline_cost_usd: Decimal
    cache_hits: int
    estimated_cost_requests: int = 0
    """Requests whose cost was counted from locally counted tokens (included in the total)."""
    unknown_price_requests: int = 0
    """Requests whose model had no price: not in the cost total, counted here instead of as $0."""


def gateway_metrics(*, window_s: int = 86400) -> GatewayMetrics:
    """Totals over the last `window_s` seconds (the created_at index keeps this a range scan);
    response times cover successful requests only. Demo rows (`is_demo`) are synthetic
    history, not traffic: they are left out here as in `model_statuses`."""
    rows = RequestLog.objects.filter(
        created_at__gte=timezone.now() - timedelta(seconds=window_s),
        is_demo=False,
        # A plan's calls are summed on their plan's row.
        parent__isnull=True,
    ).order_by()
    sums = rows.aggregate(
        total=Count("id"),
        success=Count("id", filter=Q(status=RequestLog.Status.SUCCESS)),
        avg_ms=Avg("latency_ms", filter=Q(status=RequestLog.Status.SUCCESS)),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        cached_tokens=Sum("cached_tokens"),
        cost_usd=Sum("cost_usd"),
        baseline_cost_usd=Sum("baseline_cost_usd"),
        cache_hits=Count("id", filter=Q(cache_hit=True)),
        estimated=Count("id", filter=Q(cost_state=RequestLog.CostState.ESTIMATED)),
        unknown_price=Count("id", filter=Q(cost_state=RequestLog.CostState.UNKNOWN_PRICE)),
    )
    by_status = dict(rows.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    successes = rows.filter(status=RequestLog.Status.SUCCESS)
    p95 = None
    if sums["success"]:
        # The nearest-rank 95th percentile: portable (SQLite included) and one sorted read.
        rank = max(0, -(-sums["success"] * 95 // 100) - 1)
        p95 = successes.order_by("latency_ms").values_list("latency_ms", flat=True)[rank]
    return GatewayMetrics(
        window_s=window_s,
        total=sums["total"],
        success=sums["success"],
        failed=sums["total"] - sums["success"],
        by_status=by_status,
        avg_response_time_ms=None if sums["avg_ms"] is None else round(sums["avg_ms"], 2),
        p95_response_time_ms=p95,
        input_tokens=sums["input_tokens"] or 0,
        output_tokens=sums["output_tokens"] or 0,
        cached_tokens=sums["cached_tokens"] or 0,
        cost_usd=sums["cost_usd"] or Decimal(0),
        baseline_cost_usd=sums["baseline_cost_usd"] or Decimal(0),
        cache_hits=sums["cache_hits"],
        estimated_cost_requests=sums["estimated"],
        unknown_price_requests=sums["unknown_price"],
    )


@dataclass(frozen=True)
class ModelTraffic:
    requests: int
    errors: int


def models_traffic(models: Sequence[LLMModel], *, window_s: int) -> dict[int, ModelTraffic]:
    """Requests and failures of each of `models` (by id) over the last `window_s` seconds; a
    model without any is left out."""
    since = timezone.now() - timedelta(seconds=window_s)
    return {
        row["model_id"]: ModelTraffic(requests=row["requests"], errors=row["errors"])
        for row in RequestLog.objects.filter(created_at__gte=since, model__in=models, is_demo=False)
        .order_by()
        .values("model_id")
        .annotate(requests=Count("id"), errors=Count("id", filter=FAILED))
    }


def last_latencies(models: Sequence[LLMModel]) -> dict[int, int | None]:
    """The latency of each model's latest successful request (None when it has none)."""
    return {
        model.pk: RequestLog.objects.filter(
            model=model, status=RequestLog.Status.SUCCESS, is_demo=False
        )
        .order_by("-created_at")
        .values_list("latency_ms", flat=True)
        .first()
        for model in models
    }


def percentile(sorted_values: list[int], share: float) -> int | None:
    """Nearest-rank percentile: the smallest value with at least `share` of values at or below."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(share * len(sorted_values)) - 1)]


def traffic_summary(*, now: datetime, active_streams: int) -> dict[str, Any]:
    since = now - timedelta(seconds=TRAFFIC_WINDOW_S)
    rows = list(
        RequestLog.objects.filter(created_at__gt=since, created_at__lte=now).values_list(
            "status", "latency_ms", "output_tokens"
        )
    )
    latencies = sorted(lat for status, lat, _ in rows if status == RequestLog.Status.SUCCESS)
    errors = sum(1 for status, _, _ in rows if status in ERROR_STATUSES)
    return {
        "window_s": TRAFFIC_WINDOW_S,
        "requests": len(rows),
        "requests_per_s": round(len(rows) / TRAFFIC_WINDOW_S, 3),
        "p50_latency_ms": percentile(latencies, 0.5),
        "p95_latency_ms": percentile(latencies, 0.95),
        "tokens_per_s": round(sum(tokens for _, _, tokens in rows) / TRAFFIC_WINDOW_S, 3),
        "error_rate": round(errors / len(rows), 4) if rows else None,
        "active_streams": max(0, active_streams),
    }


def traffic_rows(
    *, after: datetime, until: datetime, limit: int
) -> list[tuple[datetime, str, int, int]]:
    """`(created_at, status, latency_ms, output_tokens)` of the requests logged in
    (`after`, `until`], oldest first, at most `limit` of them."""
    return list(
        RequestLog.objects.filter(created_at__gt=after, created_at__lte=until)
        .order_by("created_at")
        .values_list("created_at", "status", "latency_ms", "output_tokens")[:limit]
    )
