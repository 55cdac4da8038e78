"""Report values: frozen dataclasses and the arithmetic on them. Pure, so charts and the score
can use them without the ORM."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from analytics.buckets import LATENCY_BUCKET_EDGES_MS
from analytics.quality import quality_kept_pct

RATIO_PLACES = Decimal("0.0001")


def ratio(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    """part / whole to four places; None when there is nothing to divide by."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(RATIO_PLACES)


def nearest_rank_ms(sorted_values: Sequence[int], share: Decimal) -> int | None:
    """The nearest-rank percentile: the smallest value with at least `share` of the values at
    or below it (one value is every percentile of itself)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(share * len(sorted_values)) - 1)]


def latency_percentile_ms(buckets: tuple[int, ...], share: Decimal) -> int | None:
    """A percentile read from the latency histogram, interpolated linearly inside its bucket.

    Only an estimate, to the bucket; the open last bucket reports its lower edge. Reports use
    it when the raw rows are gone (`Totals.latency_exact`).
    """
    count = sum(buckets)
    if not count:
        return None
    wanted = Decimal(count) * share
    seen = 0
    lower = 0
    for edge, in_bucket in zip((*LATENCY_BUCKET_EDGES_MS, None), buckets, strict=True):
        if in_bucket and seen + in_bucket >= wanted:
            if edge is None:
                return lower
            inside = (wanted - seen) / in_bucket
            return int((lower + (edge - lower) * inside).to_integral_value())
        seen += in_bucket
        lower = edge if edge is not None else lower
    return lower


P50 = Decimal("0.5")
P95 = Decimal("0.95")


@dataclass(frozen=True)
class LatencyPercentiles:
    """Exact percentiles over `count` successful requests."""

    count: int
    p50_ms: int | None
    p95_ms: int | None


@dataclass(frozen=True)
class Totals:
    requests: int
    succeeded: int
    clean_successes: int
    priced_requests: int
    fallback_requests: int
    cache_hits: int
    estimated_requests: int
    unknown_price_requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: Decimal
    comparable_cost_usd: Decimal
    comparable_baseline_usd: Decimal
    cache_comparable_cost_usd: Decimal
    cache_comparable_baseline_usd: Decimal
    latency_ms_sum: int
    ttft_ms_sum: int
    ttft_count: int
    latency_buckets: tuple[int, ...]
    quality_loss_sum: float = 0.0
    quality_scored: int = 0
    # Nearest-rank percentiles of the successful requests' latencies, read from the raw rows;
    # None when those rows are no longer all held (retention) and the histogram must answer.
    latency_exact: LatencyPercentiles | None = None
    # Refused as invalid (malformed, over every context window): the caller's error, reported
    # apart and left out of the routing parts of the score.
    invalid_requests: int = 0

    @property
    def quality_kept_pct(self) -> float | None:
        """Estimated quality kept against all-premium (analytics/quality.py); None when the
        learned router scored no answered request."""
        return quality_kept_pct(self.quality_loss_sum, self.quality_scored)

    @property
    def failed(self) -> int:
        return self.requests - self.succeeded

    @property
    def avg_cost_usd(self) -> Decimal | None:
        """Mean cost of the requests whose cost is known; unknown prices are counted apart."""
        if not self.priced_requests:
            return None
        return (self.cost_usd / self.priced_requests).quantize(Decimal("0.00000001"))

    @property
    def avg_latency_ms(self) -> int | None:
        if not self.succeeded:
            return None
        return int((Decimal(self.latency_ms_sum) / self.succeeded).to_integral_value())

    @property
    def p95_latency_ms(self) -> int | None:
        if self.latency_exact is not None:
            return self.latency_exact.p95_ms
        return latency_percentile_ms(self.latency_buckets, P95)

    @property
    def p50_latency_ms(self) -> int | None:
        if self.latency_exact is not None:
            return self.latency_exact.p50_ms
        return latency_percentile_ms(self.latency_buckets, P50)

    @property
    def avg_ttft_ms(self) -> int | None:
        if not self.ttft_count:
            return None
        return int((Decimal(self.ttft_ms_sum) / self.ttft_count).to_integral_value())

    @property
    def success_rate(self) -> Decimal | None:
        return ratio(self.succeeded, self.requests)

    @property
    def error_rate(self) -> Decimal | None:
        return ratio(self.failed, self.requests)

    @property
    def fallback_rate(self) -> Decimal | None:
        return ratio(self.fallback_requests, self.requests)

    @property
    def cache_hit_rate(self) -> Decimal | None:
        return ratio(self.cache_hits, self.requests)

    @property
    def savings_usd(self) -> Decimal:
        return self.comparable_baseline_usd - self.comparable_cost_usd

    @property
    def cache_savings_usd(self) -> Decimal:
        return self.cache_comparable_baseline_usd - self.cache_comparable_cost_usd

    @property
    def routing_savings_usd(self) -> Decimal:
        return self.savings_usd - self.cache_savings_usd

    @property
    def savings_rate(self) -> Decimal | None:
        return ratio(self.savings_usd, self.comparable_baseline_usd)


@dataclass(frozen=True)
class BreakdownRow:
    key: str
    totals: Totals
    request_share: Decimal | None
    cost_share: Decimal | None


@dataclass(frozen=True)
class DayPoint:
    # The bucket's start: a date, or an aware datetime for the hourly points of short ranges.
    day: date
    totals: Totals


@dataclass(frozen=True)
class ModelDayCost:
    # As in DayPoint: a day, or the start of an hour.
    day: date
    model_name: str
    cost_usd: Decimal
