"""Reads behind the service endpoints: gateway metrics from the request log and the status of
each model (provider health as last probed, recent load and errors, breaker state). No live
upstream call is made here; probes run in the background (`providers.tasks`). Demo rows never
count: they are not traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from analytics.models import RequestLog
from providers.models import LLMModel, Provider
from routing.guards.breaker import BreakerConfig, BreakerState, CircuitBreakers

FAILED = ~Q(status=RequestLog.Status.SUCCESS)
LOAD_WINDOW_S = 300


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
        created_at__gte=timezone.now() - timedelta(seconds=window_s), is_demo=False
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
class ModelStatus:
    ref: str
    name: str
    provider: str
    locality: str
    tier: str
    enabled: bool
    status: str  # available | degraded | unavailable | disabled
    provider_health: str
    provider_checked_at: str | None
    load: dict[str, Any]
    errors: dict[str, Any]
    breaker: dict[str, Any]
    last_latency_ms: int | None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _status_of(model: LLMModel, breaker: BreakerState, recent_errors: int, recent: int) -> str:
    if not (model.enabled and model.provider.enabled):
        return "disabled"
    if breaker is BreakerState.OPEN or model.provider.health_status == Provider.Health.DOWN:
        return "unavailable"
    if breaker is BreakerState.HALF_OPEN or (recent and recent_errors * 2 >= recent):
        return "degraded"
    return "available"


def model_statuses(*, name: str | None = None) -> list[ModelStatus]:
    """Every model's status, or the models called `name` (a model name or `provider:model`)."""
    models = LLMModel.objects.select_related("provider").order_by("provider__name", "name")
    if name is not None:
        provider, sep, model_name = name.partition(":")
        models = (
            models.filter(provider__name=provider, name=model_name)
            if sep and model_name
            else models.filter(name=name)
        )
    models_list = list(models)
    if not models_list:
        return []
    since = timezone.now() - timedelta(seconds=LOAD_WINDOW_S)
    stats = {
        row["model_id"]: row
        for row in RequestLog.objects.filter(
            created_at__gte=since, model__in=models_list, is_demo=False
        )
        .order_by()
        .values("model_id")
        .annotate(requests=Count("id"), errors=Count("id", filter=FAILED))
    }
    last_latency = {}
    for model in models_list:
        last = (
            RequestLog.objects.filter(model=model, status=RequestLog.Status.SUCCESS, is_demo=False)
            .order_by("-created_at")
            .values_list("latency_ms", flat=True)
            .first()
        )
        last_latency[model.pk] = last
    config = BreakerConfig.for_model()
    refs = {model.pk: f"{model.provider.name}:{model.name}" for model in models_list}
    views = CircuitBreakers().views({ref: config for ref in refs.values()})
    breakers = {view.model: view for view in views}
    result = []
    for model in models_list:
        row = stats.get(model.pk, {"requests": 0, "errors": 0})
        view = breakers[refs[model.pk]]
        result.append(
            ModelStatus(
                ref=refs[model.pk],
                name=model.name,
                provider=model.provider.name,
                locality=model.provider.locality,
                tier=model.tier,
                enabled=model.enabled and model.provider.enabled,
                status=_status_of(model, view.state, row["errors"], row["requests"]),
                provider_health=model.provider.health_status,
                provider_checked_at=(
                    model.provider.health_checked_at.isoformat()
                    if model.provider.health_checked_at
                    else None
                ),
                load={
                    "window_s": LOAD_WINDOW_S,
                    "requests": row["requests"],
                    "requests_per_min": round(row["requests"] * 60 / LOAD_WINDOW_S, 2),
                },
                errors={
                    "window_s": LOAD_WINDOW_S,
                    "count": row["errors"],
                    "rate": round(row["errors"] / row["requests"], 4) if row["requests"] else 0,
                },
                breaker=view.as_trace(),
                last_latency_ms=last_latency[model.pk],
            )
        )
    return result


def providers_health() -> dict[str, Any]:
    """The providers component of /health, from the stored probe results."""
    providers = list(Provider.objects.filter(enabled=True).order_by("name"))
    states = {p.name: p.health_status for p in providers}
    down = [name for name, state in states.items() if state == Provider.Health.DOWN]
    # Degraded at worst: a down provider is routed around, and the gateway itself still serves.
    status = "degraded" if down else "healthy"
    return {
        "status": status,
        "providers": {
            p.name: {
                "health": p.health_status,
                "latency_ms": p.health_latency_ms,
                "checked_at": p.health_checked_at.isoformat() if p.health_checked_at else None,
                "error": p.health_error or None,
            }
            for p in providers
        },
    }
