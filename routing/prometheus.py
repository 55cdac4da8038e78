"""The request-log figures of `GET /metrics` in the Prometheus text exposition format."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from routing.status import GatewayMetrics


class _Snapshot:
    """A one-shot collector: the figures were read from Postgres for this scrape."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        window = str(m.window_s)
        requests = GaugeMetricFamily(
            "orchestrator_requests",
            "Requests in the window, by outcome status.",
            labels=["status", "window_s"],
        )
        for status, count in sorted(m.by_status.items()):
            requests.add_metric([status, window], count)
        yield requests
        tokens = GaugeMetricFamily(
            "orchestrator_tokens", "Tokens in the window.", labels=["kind", "window_s"]
        )
        tokens.add_metric(["input", window], m.input_tokens)
        tokens.add_metric(["output", window], m.output_tokens)
        tokens.add_metric(["cached", window], m.cached_tokens)
        yield tokens
        cost = GaugeMetricFamily(
            "orchestrator_cost_usd", "Cost in the window (USD).", labels=["kind", "window_s"]
        )
        cost.add_metric(["actual", window], float(m.cost_usd))
        cost.add_metric(["baseline", window], float(m.baseline_cost_usd))
        yield cost
        latency = GaugeMetricFamily(
            "orchestrator_response_time_seconds",
            "Response time of successful requests in the window.",
            labels=["stat", "window_s"],
        )
        if m.avg_response_time_ms is not None:
            latency.add_metric(["avg", window], m.avg_response_time_ms / 1000)
        if m.p95_response_time_ms is not None:
            latency.add_metric(["p95", window], m.p95_response_time_ms / 1000)
        yield latency
        hits = GaugeMetricFamily(
            "orchestrator_cache_hits",
            "Answers served from the response cache in the window.",
            labels=["window_s"],
        )
        hits.add_metric([window], m.cache_hits)
        yield hits


def prometheus_text(metrics: GatewayMetrics) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metrics))
    return generate_latest(registry)
