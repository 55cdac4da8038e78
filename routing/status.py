"""The status of each model behind the service endpoints (provider health as last probed, recent
load and errors read from the request log by `analytics.traffic`, breaker state) and the
providers' part of /health. No live upstream call is made here; probes run in the background
(`providers.tasks`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analytics.traffic import ModelTraffic, last_latencies, models_traffic
from providers.models import LLMModel, Provider
from routing.guards.breaker import BreakerConfig, BreakerState, CircuitBreakers

LOAD_WINDOW_S = 300


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
    stats = models_traffic(models_list, window_s=LOAD_WINDOW_S)
    last_latency = last_latencies(models_list)
    config = BreakerConfig.for_model()
    refs = {model.pk: f"{model.provider.name}:{model.name}" for model in models_list}
    views = CircuitBreakers().views({ref: config for ref in refs.values()})
    breakers = {view.model: view for view in views}
    result = []
    for model in models_list:
        row = stats.get(model.pk, ModelTraffic(requests=0, errors=0))
        view = breakers[refs[model.pk]]
        result.append(
            ModelStatus(
                ref=refs[model.pk],
                name=model.name,
                provider=model.provider.name,
                locality=model.provider.locality,
                tier=model.tier,
                enabled=model.enabled and model.provider.enabled,
                status=_status_of(model, view.state, row.errors, row.requests),
                provider_health=model.provider.health_status,
                provider_checked_at=(
                    model.provider.health_checked_at.isoformat()
                    if model.provider.health_checked_at
                    else None
                ),
                load={
                    "window_s": LOAD_WINDOW_S,
                    "requests": row.requests,
                    "requests_per_min": round(row.requests * 60 / LOAD_WINDOW_S, 2),
                },
                errors={
                    "window_s": LOAD_WINDOW_S,
                    "count": row.errors,
                    "rate": round(row.errors / row.requests, 4) if row.requests else 0,
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
