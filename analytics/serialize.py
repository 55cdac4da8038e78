"""JSON shapes of the report values: money as decimal strings, dates as ISO strings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from analytics.budgets import BudgetStatus
from analytics.insights import Recommendation
from analytics.score import Score
from analytics.selectors import BreakdownRow, DayPoint, Totals


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def totals_json(t: Totals) -> dict[str, Any]:
    keys = (
        "requests",
        "succeeded",
        "failed",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost_usd",
        "avg_cost_usd",
        "estimated_requests",
        "unknown_price_requests",
        "priced_requests",
        "avg_latency_ms",
        "p50_latency_ms",
        "p95_latency_ms",
        "avg_ttft_ms",
        "success_rate",
        "error_rate",
        "fallback_rate",
        "cache_hit_rate",
        "cache_hits",
    )
    return {k: _plain(getattr(t, k)) for k in keys}


def savings_json(t: Totals, baseline_label: str | None) -> dict[str, Any]:
    return {
        "baseline_model": baseline_label,
        "actual_cost_usd": _plain(t.comparable_cost_usd),
        "baseline_cost_usd": _plain(t.comparable_baseline_usd),
        "savings_usd": _plain(t.savings_usd),
        "savings_rate": _plain(t.savings_rate),
        "routing_savings_usd": _plain(t.routing_savings_usd),
        "cache_savings_usd": _plain(t.cache_savings_usd),
    }


def quality_json(t: Totals) -> dict[str, Any]:
    """The estimated quality kept (None when the router scored no answered request)."""
    return {"quality_kept_pct": t.quality_kept_pct, "scored_requests": t.quality_scored}


def breakdown_json(rows: list[BreakdownRow]) -> list[dict[str, Any]]:
    return [
        {
            "key": r.key,
            "request_share": _plain(r.request_share),
            "cost_share": _plain(r.cost_share),
            **totals_json(r.totals),
            "baseline_cost_usd": _plain(r.totals.comparable_baseline_usd),
            "savings_usd": _plain(r.totals.savings_usd),
        }
        for r in rows
    ]


def days_json(points: list[DayPoint]) -> list[dict[str, Any]]:
    return [
        {
            "day": p.day.isoformat(),
            "requests": p.totals.requests,
            "cost_usd": _plain(p.totals.cost_usd),
            "baseline_cost_usd": _plain(p.totals.comparable_baseline_usd),
            "savings_usd": _plain(p.totals.savings_usd),
        }
        for p in points
    ]


def score_json(score: Score) -> dict[str, Any]:
    return {
        "value": _plain(score.value),
        "parts": [
            {
                "key": p.key,
                "label": p.label,
                "weight": p.weight,
                "value": _plain(p.value),
                "detail": p.detail,
            }
            for p in score.parts
        ],
        "invalid_requests": score.invalid_requests,
        "invalid_share": _plain(score.invalid_share),
    }


def recommendations_json(items: list[Recommendation]) -> list[dict[str, Any]]:
    return [
        {
            "kind": r.kind,
            "message": r.message,
            "effect_usd": _plain(r.effect_usd),
            "effect_share": _plain(r.effect_share),
        }
        for r in items
    ]


def budgets_json(items: list[BudgetStatus]) -> list[dict[str, Any]]:
    return [
        {
            "name": b.name,
            "scope": b.scope,
            "period": b.period,
            "limit_usd": _plain(b.limit_usd),
            "spent_usd": _plain(b.spent_usd),
            "reserved_usd": _plain(b.reserved_usd),
            "used_share": _plain(b.used_share),
            "soft_alert_crossed": b.soft_alert_crossed,
            "alerted_at": b.alerted_at.isoformat() if b.alerted_at else None,
            "exceeded": b.exceeded,
        }
        for b in items
    ]
