"""The gateway's Prometheus counters and histograms, kept as requests finish.

`request_observe` is called once per request, where its outcome is final (`routing.services`
as its stream ends, `routing.pipeline.journal` for a request refused by its entry point): a
handful of in-memory increments, no I/O. The scrape (`routing.prometheus`) reads them back, so
its cost does not grow with the request log.

Several worker processes (`serve --workers N`) add up through prometheus_client's multiprocess
mode: `PROMETHEUS_MULTIPROC_DIR`, set before this module is imported (the web process's
supervisor sets it, see `orchestrator_site.prometheus_dir`), makes every process write its
values to files of its own in that folder, and the scrape sums the files of every process.
Without it (one worker, tests, `manage.py runserver`) the values live in this process.

Demo rows never pass through here: they are written straight into the log by `seed_demo`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    values,
)

from analytics.outcome import RequestOutcome
from analytics.pricing import CostState

# Chosen by prometheus_client when it is first imported, from PROMETHEUS_MULTIPROC_DIR.
MULTIPROCESS: bool = values.ValueClass._multiprocess

# `_created` series are not written in multiprocess mode; leave them out in both modes alike.
disable_created_metrics()

LABELS = ("model", "provider", "door", "status", "cache")
DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
FIRST_TOKEN_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)

# This process's metrics, when they live in memory (not collected in multiprocess mode: there
# every process's files are read instead).
REGISTRY = CollectorRegistry(auto_describe=False)

REQUESTS = Counter("orchestrator_requests", "Finished requests.", LABELS, registry=REGISTRY)
TOKENS = Counter(
    "orchestrator_tokens",
    "Tokens of finished requests, by kind (input, output, cached).",
    (*LABELS, "kind"),
    registry=REGISTRY,
)
COST = Counter(
    "orchestrator_cost_usd",
    "What finished requests cost (USD); requests on an unpriced model are not in it.",
    LABELS,
    registry=REGISTRY,
)
BASELINE_COST = Counter(
    "orchestrator_baseline_cost_usd",
    "What the same tokens would have cost on the premium baseline model (USD).",
    LABELS,
    registry=REGISTRY,
)
UNPRICED = Counter(
    "orchestrator_unpriced_requests",
    "Requests answered by a model without a price: counted here, never added as $0.",
    LABELS,
    registry=REGISTRY,
)
DURATION = Histogram(
    "orchestrator_request_duration_seconds",
    "From the request's arrival to its last event.",
    LABELS,
    buckets=DURATION_BUCKETS_S,
    registry=REGISTRY,
)
FIRST_TOKEN = Histogram(
    "orchestrator_time_to_first_token_seconds",
    "From the request's arrival to the first token of its answer (answers that had one).",
    LABELS,
    buckets=FIRST_TOKEN_BUCKETS_S,
    registry=REGISTRY,
)


@dataclass(frozen=True, slots=True)
class _Series:
    """The children of one label set, looked up once: `labels()` validates and locks."""

    requests: Counter
    input_tokens: Counter
    output_tokens: Counter
    cached_tokens: Counter
    cost: Counter
    baseline_cost: Counter
    unpriced: Counter
    duration: Histogram
    first_token: Histogram


_series: dict[tuple[str, str, str, str, str], _Series] = {}


def _series_of(key: tuple[str, str, str, str, str]) -> _Series:
    series = _Series(
        requests=REQUESTS.labels(*key),
        input_tokens=TOKENS.labels(*key, "input"),
        output_tokens=TOKENS.labels(*key, "output"),
        cached_tokens=TOKENS.labels(*key, "cached"),
        cost=COST.labels(*key),
        baseline_cost=BASELINE_COST.labels(*key),
        unpriced=UNPRICED.labels(*key),
        duration=DURATION.labels(*key),
        first_token=FIRST_TOKEN.labels(*key),
    )
    _series[key] = series
    return series


def request_observe(outcome: RequestOutcome) -> None:
    """Count one finished request. Labels: the model and provider that answered (or failed
    last; empty when none was called), the door (`entry_point`), the log status, and whether
    the answer came from the response cache (`hit` / `miss`)."""
    key = (
        outcome.model_name,
        outcome.provider_name,
        outcome.entry_point,
        outcome.status,
        "hit" if outcome.cache_hit else "miss",
    )
    series = _series.get(key) or _series_of(key)
    series.requests.inc()
    series.duration.observe(outcome.latency_ms / 1000)
    if outcome.time_to_first_token_ms is not None:
        series.first_token.observe(outcome.time_to_first_token_ms / 1000)
    if outcome.input_tokens:
        series.input_tokens.inc(outcome.input_tokens)
    if outcome.output_tokens:
        series.output_tokens.inc(outcome.output_tokens)
    if outcome.cached_tokens:
        series.cached_tokens.inc(outcome.cached_tokens)
    if outcome.cost_usd:
        series.cost.inc(float(outcome.cost_usd))
    if outcome.baseline_cost_usd:
        series.baseline_cost.inc(float(outcome.baseline_cost_usd))
    if outcome.cost_state == CostState.UNKNOWN_PRICE:
        series.unpriced.inc()
