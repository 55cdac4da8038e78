"""The active router as the report pages show it: its out-of-fold cost-quality curve and where the
default policy sits on it. Analytics reads this through the `ORCHESTRATOR_ROUTER_CURVE` setting
(a dotted path to `router_curve_read`), so it never imports routing.
"""

from __future__ import annotations

from typing import Any

from routing.models import RoutingPolicy
from routing.router.ladder import Knob, knob_from
from routing.router.model import OperatingPoint, Router
from routing.router.store import active_router


def _pct(share: float) -> float:
    return round(share * 100, 2)


def _point(point: OperatingPoint) -> dict[str, float]:
    return {
        "premium_share_pct": _pct(point.premium_share),
        "quality_kept_pct": point.quality_kept_pct,
        "threshold": point.threshold,
    }


def _default_knob() -> tuple[str, Knob | None]:
    """The default policy's name and knob (None: it routes by the complexity heuristic); with no
    policy, the built-in knob the engine uses."""
    policy = RoutingPolicy.objects.filter(is_default=True).first()
    if policy is None:
        return "", Knob()
    return policy.name, knob_from(policy.router)


def operating_point_of(router: Router, knob: Knob | None) -> OperatingPoint | None:
    """Where the knob sits on the curve: a threshold wins over a quality target, as in the
    engine (routing/pipeline/route.py)."""
    if knob is None:
        return None
    return router.operating_point(router.threshold_of(knob))


def router_curve_read() -> dict[str, Any]:
    """The active router's curve, its evaluation, and the default policy's operating point."""
    router = active_router()
    policy, knob = _default_knob()
    point = operating_point_of(router, knob)
    out_of_fold = router.evaluation.get("out_of_fold", {})
    return {
        "version": router.version,
        "data_sha256": router.data_sha256,
        "trained_on_rows": router.trained_on.get("rows"),
        "points": [_point(p) for p in router.curve],
        "operating_point": None
        if point is None
        else {
            **_point(point),
            "policy": policy,
            "policy_threshold": None if knob is None else knob.threshold,
            "quality_target_pct": None
            if knob is None or knob.threshold is not None
            else knob.quality_target_pct,
        },
        "mode": "heuristic" if knob is None else "learned",
        "out_of_fold": [
            {
                "benchmark": name,
                "n": figures.get("n"),
                "apgr": figures.get("apgr"),
                "cpt50_pct": _pct(figures["cpt50"]) if "cpt50" in figures else None,
                "cpt80_pct": _pct(figures["cpt80"]) if "cpt80" in figures else None,
                "share_for_95pct_quality_pct": (
                    _pct(figures["share_for_95pct_quality"])
                    if "share_for_95pct_quality" in figures
                    else None
                ),
            }
            for name, figures in sorted(out_of_fold.items())
        ],
    }
