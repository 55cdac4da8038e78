"""`GET /metrics/prometheus`: the Prometheus text exposition format.

The request counters and histograms are those `routing.metrics` keeps as requests finish (every
worker's, summed, in multiprocess mode). Two families are read at scrape time from where the
workers share them, so no process counts them twice: budget use (one query over the enabled
budgets and their open periods) and breaker state (one Redis round trip for every model). The
scrape's cost grows with the numbers of budgets and models, never with the request log.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from providers.models import LLMModel
from routing import metrics
from routing.budgets.reader import BudgetNow, budgets_now
from routing.guards.breaker import BreakerConfig, BreakerState, BreakerView, CircuitBreakers


def _budgets(budgets: list[BudgetNow]) -> Iterator[Metric]:
    labels = ["budget", "scope", "period"]
    families = {
        "limit_usd": GaugeMetricFamily(
            "orchestrator_budget_limit_usd",
            "Each enabled budget's limit this period.",
            labels=labels,
        ),
        "spent_usd": GaugeMetricFamily(
            "orchestrator_budget_spent_usd",
            "Settled spend against the budget this period.",
            labels=labels,
        ),
        "reserved_usd": GaugeMetricFamily(
            "orchestrator_budget_reserved_usd",
            "Held by requests still running against the budget.",
            labels=labels,
        ),
    }
    for budget in budgets:
        values = [budget.name, budget.scope, budget.period]
        families["limit_usd"].add_metric(values, float(budget.limit_usd))
        families["spent_usd"].add_metric(values, float(budget.spent_usd))
        families["reserved_usd"].add_metric(values, float(budget.reserved_usd))
    yield from families.values()


def _breakers(views: list[tuple[str, str, BreakerView]]) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "orchestrator_breaker_state",
        "Each model's circuit breaker: 1 for the state it is in, 0 for the others.",
        labels=["model", "provider", "state"],
    )
    failures = GaugeMetricFamily(
        "orchestrator_breaker_failures",
        "Failures counted in the breaker's current window.",
        labels=["model", "provider"],
    )
    for model, provider, view in views:
        for each in BreakerState:
            state.add_metric([model, provider, str(each)], 1.0 if view.state is each else 0.0)
        failures.add_metric([model, provider], view.failures)
    yield state
    yield failures


class _SharedNow:
    """Budget use and breaker state as they stand at the scrape (read once, by `collect`)."""

    def __init__(self, budgets: list[BudgetNow], views: list[tuple[str, str, BreakerView]]):
        self.budgets = budgets
        self.views = views

    def collect(self) -> Iterator[Metric]:
        yield from _budgets(self.budgets)
        yield from _breakers(self.views)


def _breaker_views() -> list[tuple[str, str, BreakerView]]:
    models = list(
        LLMModel.objects.filter(enabled=True, provider__enabled=True)
        .order_by("provider__name", "name")
        .values_list("provider__name", "name")
    )
    config = BreakerConfig.for_model()
    views = CircuitBreakers().views({f"{p}:{m}": config for p, m in models})
    return [(m, p, view) for (p, m), view in zip(models, views, strict=True)]


def prometheus_text() -> bytes:
    """The scrape's body. Reads Postgres and Redis: call it off the event loop."""
    registry = CollectorRegistry(auto_describe=False)
    if metrics.MULTIPROCESS:
        MultiProcessCollector(registry)
    else:
        registry.register(_Registered(metrics.REGISTRY))
    registry.register(_SharedNow(budgets_now(), _breaker_views()))
    return generate_latest(registry)


class _Registered:
    """This process's own metrics (single-process mode)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()
