"""The optimization score (0-100), as documented in docs/optimization-score.md. Pure: it takes
numbers and returns numbers, so every edge case is testable without a database."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from analytics.quality import quality_kept_pct

PLACES = Decimal("0.0001")
CACHE_HIT_TARGET = Decimal("0.20")
MIN_FEEDBACK_VOTES = 20
# Estimated quality kept at or below this scores 0 on the quality-kept part, 100 % scores 1.
QUALITY_FLOOR_PCT = Decimal(80)


@dataclass(frozen=True)
class ScoreInputs:
    requests: int
    succeeded: int
    clean_successes: int
    comparable_cost_usd: Decimal
    comparable_baseline_usd: Decimal
    within_latency_target: int
    cache_hits: int
    budgets: int
    budgets_within_limit: int
    feedback_positive: int
    feedback_negative: int
    quality_loss_sum: float = 0.0
    quality_scored: int = 0
    # Of `requests`, refused as invalid: the caller's own error, not the routing's.
    invalid_requests: int = 0


@dataclass(frozen=True)
class ScorePart:
    key: str
    label: str
    weight: int
    value: Decimal | None
    detail: str

    @property
    def available(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class Score:
    value: Decimal | None
    parts: tuple[ScorePart, ...]
    invalid_requests: int = 0
    invalid_share: Decimal | None = None
    """Invalid requests over all requests: reported beside the score, not part of it."""


WEIGHTS = {
    "cost": 30,
    "reliability": 25,
    "latency": 15,
    "cache": 10,
    "budget": 10,
    "quality": 10,
    "quality_kept": 20,
}


def _q(value: Decimal) -> Decimal:
    return value.quantize(PLACES, rounding=ROUND_HALF_UP)


def _clip(value: Decimal) -> Decimal:
    return max(Decimal(0), min(Decimal(1), value))


def score_compute(inputs: ScoreInputs, *, latency_target_ms: int) -> Score:
    """Weighted mean of the parts that have data, scaled to 0-100; None with no traffic.

    Requests refused as invalid are counted apart (`Score.invalid_requests`) and left out of
    every part: they never reached routing.
    """
    i = inputs
    routed = i.requests - i.invalid_requests
    cost = (
        _q(_clip(1 - i.comparable_cost_usd / i.comparable_baseline_usd))
        if i.comparable_baseline_usd > 0
        else None
    )
    reliability = _q(Decimal(i.clean_successes) / routed) if routed else None
    latency = _q(Decimal(i.within_latency_target) / i.succeeded) if i.succeeded else None
    cache = (
        _q(min(Decimal(1), Decimal(i.cache_hits) / routed / CACHE_HIT_TARGET)) if routed else None
    )
    budget = _q(Decimal(i.budgets_within_limit) / i.budgets) if i.budgets else None
    votes = i.feedback_positive + i.feedback_negative
    quality = _q(Decimal(i.feedback_positive) / votes) if votes >= MIN_FEEDBACK_VOTES else None
    kept_pct = quality_kept_pct(i.quality_loss_sum, i.quality_scored)
    kept = (
        None
        if kept_pct is None
        else _q(_clip((Decimal(str(kept_pct)) - QUALITY_FLOOR_PCT) / (100 - QUALITY_FLOOR_PCT)))
    )
    parts = (
        ScorePart(
            "cost",
            "Cost against the baseline",
            WEIGHTS["cost"],
            cost,
            "share of the all-premium cost saved",
        ),
        ScorePart(
            "reliability",
            "Success without fallback",
            WEIGHTS["reliability"],
            reliability,
            "routed requests that succeeded on the first model chosen",
        ),
        ScorePart(
            "latency",
            "Latency within target",
            WEIGHTS["latency"],
            latency,
            f"successful requests answered within {latency_target_ms} ms",
        ),
        ScorePart(
            "cache",
            "Cache effectiveness",
            WEIGHTS["cache"],
            cache,
            f"cache hit rate against a {int(CACHE_HIT_TARGET * 100)} % target",
        ),
        ScorePart(
            "budget",
            "Budget adherence",
            WEIGHTS["budget"],
            budget,
            "budgets not over their limit" if i.budgets else "no budgets to measure",
        ),
        ScorePart(
            "quality",
            "Answer quality (feedback)",
            WEIGHTS["quality"],
            quality,
            f"{votes} votes"
            if votes >= MIN_FEEDBACK_VOTES
            else f"not enough feedback ({votes} of {MIN_FEEDBACK_VOTES} votes)",
        ),
        ScorePart(
            "quality_kept",
            "Quality kept (router estimate)",
            WEIGHTS["quality_kept"],
            kept,
            f"estimated {kept_pct:.2f} % of the premium quality kept over {i.quality_scored} "
            f"scored requests, measured from a {QUALITY_FLOOR_PCT} % floor"
            if kept_pct is not None
            else "no request scored by the router",
        ),
    )
    invalid_share = _q(Decimal(i.invalid_requests) / i.requests) if i.requests else None
    weighted = [(p.weight, p.value) for p in parts if p.value is not None]
    if not routed or not weighted:
        return Score(None, parts, i.invalid_requests, invalid_share)
    total_weight = sum(w for w, _ in weighted)
    value = sum((w * v for w, v in weighted), Decimal(0)) * 100 / total_weight
    return Score(
        value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP),
        parts,
        i.invalid_requests,
        invalid_share,
    )
