"""The optimization score and the recommendations, read from the same grouped metrics as reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q

from analytics.budgets import budget_statuses
from analytics.filters import ReportFilter
from analytics.models import LATENCY_BUCKET_EDGES_MS, RequestFeedback, RequestLog
from analytics.rollups import day_start
from analytics.score import Score, ScoreInputs, score_compute
from analytics.selectors import Grouped, Totals, fold, ratio, report_cube, report_totals
from providers.models import LLMModel

MILLION = Decimal(1_000_000)
FALLBACK_ALERT_RATE = Decimal("0.10")
MIN_REQUESTS_FOR_ADVICE = 20


def latency_target_ms() -> int:
    return int(getattr(settings, "ORCHESTRATOR_LATENCY_TARGET_MS", 2500))


def within_latency_target(totals: Totals, target_ms: int) -> int:
    """Successful requests in histogram buckets whose upper edge is within the target."""
    return sum(
        count
        for edge, count in zip(LATENCY_BUCKET_EDGES_MS, totals.latency_buckets, strict=False)
        if edge <= target_ms
    )


@dataclass(frozen=True)
class FeedbackCounts:
    positive: int
    negative: int


def feedback_counts(f: ReportFilter) -> FeedbackCounts:
    """Votes on the requests the filter selects (requests still held raw; see retention)."""
    requests = RequestLog.objects.filter(
        f.raw_q(),
        created_at__gte=day_start(f.start),
        created_at__lt=day_start(f.end + timedelta(days=1)),
    ).values("request_id")
    row = RequestFeedback.objects.filter(request_id__in=requests).aggregate(
        up=Count("pk", filter=Q(positive=True)),
        down=Count("pk", filter=Q(positive=False)),
    )
    return FeedbackCounts(positive=row["up"], negative=row["down"])


def report_score(f: ReportFilter, totals: Totals | None = None) -> Score:
    totals = totals or report_totals(f)
    budgets = budget_statuses(f.scope)
    votes = feedback_counts(f)
    target = latency_target_ms()
    inputs = ScoreInputs(
        requests=totals.requests,
        succeeded=totals.succeeded,
        clean_successes=totals.clean_successes,
        comparable_cost_usd=totals.comparable_cost_usd,
        comparable_baseline_usd=totals.comparable_baseline_usd,
        within_latency_target=within_latency_target(totals, target),
        cache_hits=totals.cache_hits,
        budgets=len(budgets),
        budgets_within_limit=sum(1 for b in budgets if not b.exceeded),
        feedback_positive=votes.positive,
        feedback_negative=votes.negative,
        quality_loss_sum=totals.quality_loss_sum,
        quality_scored=totals.quality_scored,
        invalid_requests=totals.invalid_requests,
    )
    return score_compute(inputs, latency_target_ms=target)


@dataclass(frozen=True)
class Recommendation:
    kind: str
    message: str
    effect_usd: Decimal | None
    effect_share: Decimal | None


def _cheapest_non_premium() -> LLMModel | None:
    candidates = LLMModel.objects.filter(
        enabled=True,
        input_price_per_mtok_usd__isnull=False,
        output_price_per_mtok_usd__isnull=False,
    ).exclude(tier=LLMModel.Tier.PREMIUM)
    return min(
        candidates,
        key=lambda m: (m.input_price_per_mtok_usd or 0) + (m.output_price_per_mtok_usd or 0),
        default=None,
    )


def _pct(share: Decimal | None) -> str:
    return "0" if share is None else f"{(share * 100).quantize(Decimal(1))}"


def _simple_on_premium(cube: Grouped, total_cost: Decimal) -> list[Recommendation]:
    premium = set(
        LLMModel.objects.filter(tier=LLMModel.Tier.PREMIUM).values_list("name", flat=True)
    )
    target = _cheapest_non_premium()
    rows = fold(cube, (0, 1))
    premium_requests = sum(m["requests"] for (name, _), m in rows.items() if name in premium)
    simple = [m for (name, cx), m in rows.items() if name in premium and cx == "simple"]
    simple_requests = sum(m["requests"] for m in simple)
    if target is None or not premium_requests or simple_requests < 1:
        return []
    actual = sum((m["cost_usd"] for m in simple), Decimal(0))
    repriced = (
        sum(m["input_tokens"] for m in simple) * (target.input_price_per_mtok_usd or 0)
        + sum(m["output_tokens"] for m in simple) * (target.output_price_per_mtok_usd or 0)
    ) / MILLION
    saved = actual - repriced
    if saved <= 0:
        return []
    share = ratio(saved, total_cost)
    return [
        Recommendation(
            kind="simple_on_premium",
            message=(
                f"{_pct(ratio(simple_requests, premium_requests))} % of premium requests were "
                f"classified simple; routing them to {target.label} would have saved "
                f"${saved:.2f} (-{_pct(share)} %)"
            ),
            effect_usd=saved,
            effect_share=share,
        )
    ]


def _fallback_heavy(cube: Grouped) -> list[Recommendation]:
    advice = []
    for (task_type,), m in sorted(fold(cube, (2,)).items(), key=lambda kv: str(kv[0])):
        rate = ratio(m["fallback_requests"], m["requests"])
        if (
            m["requests"] >= MIN_REQUESTS_FOR_ADVICE
            and rate is not None
            and rate >= FALLBACK_ALERT_RATE
        ):
            advice.append(
                Recommendation(
                    kind="fallback_heavy",
                    message=(
                        f"{_pct(rate)} % of {task_type or 'unclassified'} requests needed a "
                        f"fallback ({m['fallback_requests']} of {m['requests']}); put a more "
                        "reliable model first in that chain"
                    ),
                    effect_usd=None,
                    effect_share=rate,
                )
            )
    return advice


def _unknown_prices(cube: Grouped) -> list[Recommendation]:
    advice = []
    for (model_name,), m in sorted(fold(cube, (0,)).items(), key=lambda kv: str(kv[0])):
        if m["unknown_price_requests"]:
            advice.append(
                Recommendation(
                    kind="unknown_price",
                    message=(
                        f"{m['unknown_price_requests']} requests to "
                        f"{model_name or 'an unnamed model'} "
                        "have no price, so their cost is missing from every total; set its prices"
                    ),
                    effect_usd=None,
                    effect_share=ratio(m["unknown_price_requests"], m["requests"]),
                )
            )
    return advice


def report_recommendations(f: ReportFilter, cube: Grouped | None = None) -> list[Recommendation]:
    cube = report_cube(f) if cube is None else cube
    totals = report_totals(f, cube)
    return [
        *_simple_on_premium(cube, totals.cost_usd),
        *_fallback_heavy(cube),
        *_unknown_prices(cube),
    ]
