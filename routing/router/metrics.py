"""How well scores route: the measures of the RouteLLM paper, so figures compare with it.

A router scores each prompt; the prompts with the highest scores go to the strong (premium)
model. At a share c of prompts sent to it, quality r(c) is the mean score of the model each
prompt went to. PGR(c) = (r(c) - r_weak) / (r_strong - r_weak). APGR is the area under PGR at
c = 0 %, 10 %, ..., 100 % (the trapezoid rule); CPT(x) is the smallest share of strong calls
that reaches PGR = x, by linear interpolation. Pure: no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outcome:
    """One prompt's scores under the strong and the weak model, on the benchmark's scale."""

    strong: float
    weak: float


@dataclass(frozen=True, slots=True)
class CurvePoint:
    premium_share: float
    quality: float
    pgr: float


def routed_order(scores: Sequence[float]) -> list[int]:
    """Indexes from the highest score down; ties keep their input order (deterministic)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def curve(
    scores: Sequence[float], outcomes: Sequence[Outcome], points: int = 11
) -> list[CurvePoint]:
    n = len(scores)
    if n == 0 or n != len(outcomes):
        raise ValueError("scores and outcomes must be non-empty and of the same length")
    strong_mean = sum(o.strong for o in outcomes) / n
    weak_mean = sum(o.weak for o in outcomes) / n
    span = strong_mean - weak_mean
    order = routed_order(scores)
    gains = [0.0]
    for i in order:
        gains.append(gains[-1] + outcomes[i].strong - outcomes[i].weak)
    result = []
    for step in range(points):
        share = step / (points - 1)
        k = round(share * n)
        quality = weak_mean + gains[k] / n
        pgr = (quality - weak_mean) / span if span else 1.0
        result.append(CurvePoint(k / n, quality, pgr))
    return result


def apgr(scores: Sequence[float], outcomes: Sequence[Outcome]) -> float:
    pts = curve(scores, outcomes)
    return sum(
        (b.premium_share - a.premium_share) * (a.pgr + b.pgr) / 2
        for a, b in itertools.pairwise(pts)
    )


def cpt(scores: Sequence[float], outcomes: Sequence[Outcome], target_pgr: float) -> float:
    """The smallest share of strong calls reaching `target_pgr` (1.0 if never reached before)."""
    pts = curve(scores, outcomes)
    for a, b in itertools.pairwise(pts):
        if b.pgr >= target_pgr > a.pgr or a.pgr >= target_pgr:
            if a.pgr >= target_pgr:
                return a.premium_share
            return a.premium_share + (target_pgr - a.pgr) / (b.pgr - a.pgr) * (
                b.premium_share - a.premium_share
            )
    return 1.0


def share_for_quality(
    scores: Sequence[float], outcomes: Sequence[Outcome], quality_share: float
) -> float:
    """The smallest share of strong calls whose quality reaches `quality_share` of the strong
    model's (0.95 = 95 % of premium quality), on the 101-point curve."""
    pts = curve(scores, outcomes, points=101)
    strong = sum(o.strong for o in outcomes) / len(outcomes)
    goal = quality_share * strong
    for a, b in itertools.pairwise(pts):
        if a.quality >= goal:
            return a.premium_share
        if b.quality >= goal:
            return a.premium_share + (goal - a.quality) / (b.quality - a.quality) * (
                b.premium_share - a.premium_share
            )
    return 1.0
