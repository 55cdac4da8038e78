"""What the badge under an answer says, built from the gateway's terminal event."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from routing.events import Fallback, Finished

COST_QUANTUM = Decimal("0.000001")


def cost_label(cost_usd: Decimal | None, cost_state: str) -> str:
    """Money as a person reads it; an unknown price never shows as $0."""
    if cost_state == "unknown_price" or (cost_usd is None and cost_state != "none"):
        return "unknown price"
    if cost_usd is None:
        return "no charge"
    amount = f"${cost_usd.quantize(COST_QUANTUM)}"
    return f"≈ {amount} (estimated)" if cost_state == "estimated" else amount


def badge_from(finished: Finished, fallbacks: list[Fallback]) -> dict[str, Any]:
    usage = finished.usage
    return {
        "model_ref": finished.model_ref,
        "provider": finished.provider_name,
        "locality": finished.locality,
        "input_tokens": usage.input,
        "output_tokens": usage.output,
        "cached_tokens": usage.cached,
        "cost_usd": str(finished.cost_usd) if finished.cost_usd is not None else None,
        "cost_state": finished.cost_state,
        "cost_label": cost_label(finished.cost_usd, finished.cost_state),
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
