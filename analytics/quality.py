"""Estimated quality kept: how much of the premium model's quality the routed answers keep.

For each request the learned router estimated p, the probability that a cheaper model's answer
would be worse than the premium model's. An answer served below the premium tier is counted as
as-good-as-premium with probability 1 - p; a premium answer always is. Over a set of requests:

    quality kept % = 100 * (1 - sum(p_i for answers below premium) / scored requests)

where "scored requests" are those that carry a router probability. The all-premium baseline keeps
100 %. Pure: no I/O.
"""

from __future__ import annotations

PREMIUM_TIER = "premium"


def quality_loss(probability: float | None, tier: str) -> float | None:
    """What one request takes off the premium quality (None when the router did not score it)."""
    if probability is None:
        return None
    return 0.0 if tier == PREMIUM_TIER else probability


def quality_kept_pct(loss_sum: float, scored: int) -> float | None:
    """None when no request was scored (never shown as 100 %)."""
    if scored <= 0:
        return None
    return round(100.0 * (1.0 - loss_sum / scored), 2)
