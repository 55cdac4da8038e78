"""Thresholds with a release margin: a state is entered at its threshold and left only when the
reading falls below the threshold minus the margin, so readings around a threshold do not flap."""

from __future__ import annotations

from collections.abc import Sequence


def level_raw(value: float, thresholds: Sequence[float]) -> int:
    """0 below every threshold, n when at or above the n-th (ascending) threshold."""
    return sum(1 for threshold in thresholds if value >= threshold)


def level_with_hysteresis(
    value: float, thresholds: Sequence[float], margin: float, previous: int | None
) -> int:
    raw = level_raw(value, thresholds)
    if previous is None or raw >= previous:
        return raw
    held = level_raw(value, [t - margin for t in thresholds])
    return max(raw, min(previous, held))
