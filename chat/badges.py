"""What the badge under an answer says, built from the gateway's terminal event."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from analytics.money import usd_json
from routing.pipeline.events import Fallback, Finished

COST_QUANTUM = Decimal("0.000001")


FREE_LOCAL = "free (local)"


def cost_kind(cost_usd: Decimal | None, cost_state: str, locality: str = "") -> str:
    """How the page shows the cost: "unknown", "free", "estimated" or "reported"."""
    if cost_state == "unknown_price" or (cost_usd is None and cost_state != "none"):
        return "unknown"
    # A local model runs on this machine: nothing is billed unless someone priced it.
    if locality == "local" and not cost_usd:
        return "free"
    return "estimated" if cost_state == "estimated" else "reported"


def cost_label(cost_usd: Decimal | None, cost_state: str, locality: str = "") -> str:
    """Money as a person reads it; an unknown price never shows as $0."""
    kind = cost_kind(cost_usd, cost_state, locality)
    if kind == "unknown":
        return "unknown price"
    if kind == "free":
        return FREE_LOCAL
    if cost_usd is None:
        return "no charge"
    amount = f"${cost_usd.quantize(COST_QUANTUM):f}"
    return f"≈ {amount} (estimated)" if kind == "estimated" else amount


def badge_costs(badge: dict[str, Any]) -> dict[str, Any]:
    """The badge with its cost label and kind worked out again from its stored amount, and
    the amount in plain decimal notation, so answers saved before a change of wording (or
    with `"0E-12"`) read like new ones."""
    state = badge.get("cost_state")
    if not isinstance(state, str):
        return badge
    raw = badge.get("cost_usd")
    try:
        amount = Decimal(str(raw)) if raw is not None else None
    except ArithmeticError:
        return badge
    locality = str(badge.get("locality") or "")
    return {
        **badge,
        "cost_usd": usd_json(amount),
        "cost_label": cost_label(amount, state, locality),
        "cost_kind": cost_kind(amount, state, locality),
    }


def badge_from(finished: Finished, fallbacks: list[Fallback]) -> dict[str, Any]:
    usage = finished.usage
    badge = {
        "model_ref": finished.model_ref,
        "provider": finished.provider_name,
        "locality": finished.locality,
        "input_tokens": usage.input,
        "output_tokens": usage.output,
        "cached_tokens": usage.cached,
        "cost_usd": usd_json(finished.cost_usd),
        "cost_state": finished.cost_state,
        "cost_label": cost_label(finished.cost_usd, finished.cost_state, finished.locality),
        "cost_kind": cost_kind(finished.cost_usd, finished.cost_state, finished.locality),
        "latency_ms": finished.latency_ms,
        "time_to_first_token_ms": finished.time_to_first_token_ms,
        "cached": finished.cached,
        "attempts": finished.attempts,
        "fallbacks": finished.fallbacks,
        "fallbacks_taken": [
            {"from": f.from_model, "to": f.to_model, "error_code": f.error_code} for f in fallbacks
        ],
        "finish_reason": finished.finish_reason,
        "decision_trace": finished.decision_trace,
    }
    plan = finished.decision_trace.get("plan")
    if isinstance(plan, dict):
        # Answered by parts: the note under the answer says from how many.
        badge["plan"] = {key: plan[key] for key in ("parts", "reduce_steps", "calls")}
    return badge
