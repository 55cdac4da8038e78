"""Replay: what another cost-quality knob (or router version) would have done with logged requests.

Each logged request keeps its token counts, task type and the learned router's probability p.
Replayed through another threshold and ladder it gets the rung `ladder.rung_for` picks, and the
first enabled model of that rung's tier (registry order) whose context window holds its prompt and
answer; when none fits the search goes on along `ladder.tier_order`, and when no tier has one the
request is "unroutable" (counted, not costed). Its cost is the logged tokens at that model's
prices; an unknown price is counted apart, never taken as 0. No model is called.

Requests the router did not score (the caller named a model), and cache hits (which the cache
answered for one model only), are replayed unchanged. Costs are compared over the requests whose
logged and replayed costs are both known. Quality is `analytics.quality`'s "estimated quality
kept", both sides with the same probability per request (the re-scored one when a different router
version re-reads a kept prompt); an unroutable request keeps nothing (loss 1). Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from analytics.money import usd_json
from analytics.pricing import Prices, cost_usd
from analytics.quality import quality_kept_pct, quality_loss
from providers.adapters.types import Usage
from routing.engine.taxonomy import TIERS
from routing.engine.values import ModelSpec, RegistrySnapshot
from routing.router.ladder import rung_for, rung_thresholds, tier_order
from routing.router.model import Router

USD_PLACES = Decimal("0.00000001")  # as stored in the request log
PCT_PLACES = Decimal("0.01")
UNKNOWN_TIER = "unknown"
UNROUTABLE_LOSS = 1.0
MAX_DAYS = 366


class ReplayError(ValueError):
    """Bad replay input; `field` names the form field or command option it is about."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """What replay reads of one request log row."""

    task_type: str
    input_tokens: int  # uncached input, as logged
    output_tokens: int
    cached_tokens: int
    tier: str  # the tier of the model that answered ("" when unknown)
    cost_usd: Decimal | None  # logged; None for an unknown price
    probability: float | None  # the learned router's, None when it did not score the request
    router_version: str = ""
    cache_hit: bool = False
    prompt: str | None = None  # the kept prompt text, only read when re-scoring


@dataclass(frozen=True, slots=True)
class ReplayKnob:
    """The alternative: a probability threshold over an ordered ladder of tiers."""

    threshold: float
    ladder: tuple[str, ...]
    quality_target_pct: float | None = None  # what the threshold was derived from, if anything
    policy: str = ""


@dataclass(frozen=True, slots=True)
class TierCount:
    tier: str
    actual: int
    replay: int


@dataclass(frozen=True, slots=True)
class ReplayResult:
    knob: ReplayKnob
    rung_thresholds: tuple[float, ...]
    router_version: str  # the version asked to re-score ("" for the logged probabilities)
    requests: int
    replayed: int  # scored by the router and routed to a model
    unchanged: int  # not scored by the router, or a cache hit: same model, same cost
    unroutable: int  # scored, but no tier of the ladder has a model that fits
    unknown_price: int  # replayed to a model whose price for these tokens is unknown
    actual_unknown_price: int  # the logged cost is unknown
    rescored: int  # probability re-computed from the kept prompt by another router version
    probability_reused: int  # another version was asked for, but no prompt was kept
    compared: int  # requests whose logged and replayed costs are both known
    actual_cost_usd: Decimal  # over the compared requests
    replay_cost_usd: Decimal  # over the compared requests
    cost_difference_usd: Decimal  # replay - actual
    cost_difference_pct: Decimal | None  # of the actual cost; None when that is 0
    baseline_cost_usd: Decimal | None  # the compared requests on the baseline (premium) model
    scored: int
    actual_quality_kept_pct: float | None
    replay_quality_kept_pct: float | None
    quality_difference_points: float | None  # replay - actual
    tiers: tuple[TierCount, ...]

    def as_json(self) -> dict[str, Any]:
        def money(value: Decimal | None) -> str | None:
            return usd_json(value)

        return {
            "knob": {
                "threshold": self.knob.threshold,
                "quality_target_pct": self.knob.quality_target_pct,
                "ladder": list(self.knob.ladder),
                "policy": self.knob.policy or None,
                "rung_thresholds": list(self.rung_thresholds),
                "router_version": self.router_version or None,
            },
            "requests": self.requests,
            "replayed": self.replayed,
            "unchanged": self.unchanged,
            "unroutable": self.unroutable,
            "unknown_price": self.unknown_price,
            "actual_unknown_price": self.actual_unknown_price,
            "rescored": self.rescored,
            "probability_reused": self.probability_reused,
            "compared": self.compared,
            "actual_cost_usd": money(self.actual_cost_usd),
            "replay_cost_usd": money(self.replay_cost_usd),
            "cost_difference_usd": money(self.cost_difference_usd),
            "cost_difference_pct": money(self.cost_difference_pct),
            "baseline_cost_usd": money(self.baseline_cost_usd),
            "scored": self.scored,
            "actual_quality_kept_pct": self.actual_quality_kept_pct,
            "replay_quality_kept_pct": self.replay_quality_kept_pct,
            "quality_difference_points": self.quality_difference_points,
            "tiers": {t.tier: {"actual": t.actual, "replay": t.replay} for t in self.tiers},
        }


def ladder_parse(text: str) -> tuple[str, ...]:
    """ "small_local,standard,premium" → a ladder, cheapest first."""
    ladder = tuple(t.strip() for t in text.split(",") if t.strip())
    if not ladder:
        raise ReplayError("a ladder names at least one tier", "ladder")
    unknown = [t for t in ladder if t not in TIERS]
    if unknown:
        raise ReplayError(
            f"unknown tier {unknown[0]!r}; expected some of {', '.join(TIERS)}", "ladder"
        )
    if len(set(ladder)) != len(ladder):
        raise ReplayError("a tier is listed twice in the ladder", "ladder")
    return ladder


def number_parse(text: str, field: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ReplayError(f"{field.replace('_', ' ')} must be a number", field) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ReplayError(f"{field.replace('_', ' ')} must be between {low:g} and {high:g}", field)
    return value


def days_parse(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise ReplayError("days must be a whole number", "days") from None
    if not 1 <= days <= MAX_DAYS:
        raise ReplayError(f"days must be between 1 and {MAX_DAYS}", "days")
    return days


_TURN = re.compile(r"\n\n(?=(?:system|user|assistant|tool|developer): )")
_ROLE = re.compile(r"^(system|user|assistant|tool|developer): ")


def payload_prompt(text: str) -> str:
    """What the router reads of a kept prompt, as the engine built it (`routing.services`): the
    contents of every turn but the assistant's, one per line. The payload keeps the turns as
    "role: content" separated by blank lines; a text without roles is read whole."""
    turns = [(_ROLE.match(part), part) for part in _TURN.split(text)]
    if not all(found for found, _ in turns):
        return text
    return "\n".join(
        part[found.end() :] for found, part in turns if found and found.group(1) != "assistant"
    )


def trace_router(trace_router: Any) -> tuple[float | None, str]:
    """The probability and version in a decision trace's "router" entry (None if unusable)."""
    if not isinstance(trace_router, Mapping):
        return None, ""
    p = trace_router.get("probability")
    version = str(trace_router.get("version") or "")
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        return None, version
    return float(p), version


def prices_of(model: ModelSpec) -> Prices:
    return Prices(
        input_per_mtok_usd=model.input_price_per_mtok_usd,
        output_per_mtok_usd=model.output_price_per_mtok_usd,
        cached_per_mtok_usd=model.cached_input_price_per_mtok_usd,
    )


def model_for(
    registry: RegistrySnapshot, ladder: tuple[str, ...], rung: int, task_type: str, needed: int
) -> ModelSpec | None:
    """The first enabled model that fits `needed` tokens, from the rung's tier up, then down."""
    for tier in tier_order(ladder, rung):
        for model in registry.tier_for_task(tier, task_type):
            if model.enabled and needed <= model.context_window:
                return model
    return None


def replay(
    requests: Iterable[LoggedRequest],
    *,
    knob: ReplayKnob,
    registry: RegistrySnapshot,
    router: Router | None = None,
) -> ReplayResult:
    """Replay `requests` through `knob`; `router`, when given, re-scores kept prompts whose
    logged probability came from another version."""
    thresholds = rung_thresholds(knob.threshold, len(knob.ladder))
    baseline = next((m for m in registry.models if m.is_baseline), None)
    counts: Counter[str] = Counter()
    actual_tiers: Counter[str] = Counter()
    replay_tiers: Counter[str] = Counter()
    actual_usd = replay_usd = Decimal(0)
    baseline_usd: Decimal | None = Decimal(0) if baseline is not None else None
    actual_loss = replay_loss = 0.0
    for row in requests:
        counts["requests"] += 1
        actual_tier = row.tier or UNKNOWN_TIER
        actual_tiers[actual_tier] += 1
        if row.cost_usd is None:
            counts["actual_unknown_price"] += 1
        usage = Usage(input=row.input_tokens, output=row.output_tokens, cached=row.cached_tokens)
        probability = row.probability
        if probability is not None and router is not None and row.router_version != router.version:
            if row.prompt is not None:
                probability = router.score(payload_prompt(row.prompt))
                counts["rescored"] += 1
            else:
                counts["probability_reused"] += 1
        if probability is not None:
            counts["scored"] += 1
            actual_loss += quality_loss(probability, actual_tier) or 0.0
        if probability is None or row.cache_hit:
            counts["unchanged"] += 1
            replay_tiers[actual_tier] += 1
            replay_cost = row.cost_usd
            if probability is not None:
                replay_loss += quality_loss(probability, actual_tier) or 0.0
        else:
            needed = row.input_tokens + row.cached_tokens + row.output_tokens
            model = model_for(
                registry, knob.ladder, rung_for(probability, thresholds), row.task_type, needed
            )
            if model is None:
                counts["unroutable"] += 1
                replay_loss += UNROUTABLE_LOSS
                continue
            counts["replayed"] += 1
            replay_tiers[model.tier] += 1
            replay_loss += quality_loss(probability, model.tier) or 0.0
            replay_cost = cost_usd(usage, prices_of(model))
            if replay_cost is None:
                counts["unknown_price"] += 1
        if row.cost_usd is None or replay_cost is None:
            continue
        counts["compared"] += 1
        actual_usd += row.cost_usd
        replay_usd += replay_cost
        if baseline is not None and baseline_usd is not None:
            on_baseline = cost_usd(usage, prices_of(baseline))
            baseline_usd = None if on_baseline is None else baseline_usd + on_baseline
    return _result(
        knob=knob,
        thresholds=thresholds,
        router=router,
        counts=counts,
        costs=(actual_usd, replay_usd, baseline_usd),
        losses=(actual_loss, replay_loss),
        tiers=(actual_tiers, replay_tiers),
    )


def _result(
    *,
    knob: ReplayKnob,
    thresholds: tuple[float, ...],
    router: Router | None,
    counts: Counter[str],
    costs: tuple[Decimal, Decimal, Decimal | None],
    losses: tuple[float, float],
    tiers: tuple[Counter[str], Counter[str]],
) -> ReplayResult:
    actual_usd = costs[0].quantize(USD_PLACES)
    replay_usd = costs[1].quantize(USD_PLACES)
    baseline_usd = None if costs[2] is None else costs[2].quantize(USD_PLACES)
    difference = replay_usd - actual_usd
    actual_kept = quality_kept_pct(losses[0], counts["scored"])
    replay_kept = quality_kept_pct(losses[1], counts["scored"])
    known = [t for t in TIERS if t in tiers[0] or t in tiers[1]]
    others = sorted((set(tiers[0]) | set(tiers[1])) - set(TIERS))
    return ReplayResult(
        knob=knob,
        rung_thresholds=thresholds,
        router_version=router.version if router is not None else "",
        requests=counts["requests"],
        replayed=counts["replayed"],
        unchanged=counts["unchanged"],
        unroutable=counts["unroutable"],
        unknown_price=counts["unknown_price"],
        actual_unknown_price=counts["actual_unknown_price"],
        rescored=counts["rescored"],
        probability_reused=counts["probability_reused"],
        compared=counts["compared"],
        actual_cost_usd=actual_usd,
        replay_cost_usd=replay_usd,
        cost_difference_usd=difference,
        cost_difference_pct=(
            (difference * 100 / actual_usd).quantize(PCT_PLACES) if actual_usd else None
        ),
        baseline_cost_usd=baseline_usd,
        scored=counts["scored"],
        actual_quality_kept_pct=actual_kept,
        replay_quality_kept_pct=replay_kept,
        quality_difference_points=(
            round(replay_kept - actual_kept, 2)
            if actual_kept is not None and replay_kept is not None
            else None
        ),
        tiers=tuple(TierCount(t, tiers[0][t], tiers[1][t]) for t in [*known, *others]),
    )
