"""The cost-quality knob: from the router's probability to a rung of the policy's model ladder.

A ladder is an ordered list of tiers from cheapest to best (default: small_local, large_local,
standard, premium). The policy's threshold t is where the top rung starts; a ladder of n rungs
has n - 1 rung thresholds t*1/(n-1), t*2/(n-1), ..., t, and a prompt goes to the highest rung
whose threshold its probability reaches. With two rungs this is the plain "premium when p >= t".
A policy may give the threshold directly or as "quality to keep" (e.g. 95 %), which the router's
out-of-fold cost-quality curve turns into a threshold. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_LADDER = ("small_local", "large_local", "standard", "premium")
DEFAULT_QUALITY_TARGET_PCT = 95.0
COMPLEXITY_OF_RUNG = ("simple", "moderate", "complex")


@dataclass(frozen=True, slots=True)
class Knob:
    """A policy's router settings. `threshold` wins over `quality_target_pct` when both are set."""

    ladder: tuple[str, ...] = DEFAULT_LADDER
    threshold: float | None = None
    quality_target_pct: float | None = DEFAULT_QUALITY_TARGET_PCT


DEFAULT_KNOB = Knob()


def rung_thresholds(threshold: float, rungs: int) -> tuple[float, ...]:
    if rungs < 2:
        return ()
    return tuple(round(threshold * k / (rungs - 1), 6) for k in range(1, rungs))


def rung_for(probability: float, thresholds: Sequence[float]) -> int:
    """The index of the highest rung whose threshold the probability reaches (0 = cheapest)."""
    rung = 0
    for k, t in enumerate(thresholds, 1):
        if probability >= t:
            rung = k
    return rung


def complexity_for(rung: int, rungs: int) -> str:
    """The complexity label a rung stands for: the cheapest simple, the top complex."""
    if rungs <= 1 or rung == 0:
        return "simple"
    return "complex" if rung == rungs - 1 else "moderate"


def tier_order(ladder: Sequence[str], rung: int) -> tuple[str, ...]:
    """Tiers to try: the chosen rung, then better rungs (escalation), then cheaper ones."""
    return (ladder[rung], *ladder[rung + 1 :], *reversed(ladder[:rung]))


def knob_from(value: Mapping[str, Any] | None) -> Knob | None:
    """A policy's `router` JSON (validated by policy_rules.router_errors) as a Knob; None when
    the policy routes by the complexity heuristic."""
    value = value or {}
    if value.get("mode", "learned") == "heuristic":
        return None
    threshold = value.get("threshold")
    target = value.get("quality_target_pct")
    return Knob(
        ladder=tuple(value.get("ladder") or DEFAULT_LADDER),
        threshold=float(threshold) if threshold is not None else None,
        quality_target_pct=(
            float(target)
            if target is not None
            else (None if threshold is not None else DEFAULT_QUALITY_TARGET_PCT)
        ),
    )
