"""Balancing across deployments of one model (two Ollama hosts, two regions of one API).

The order is a pure function of the deployments, their breakers, a shared turn counter
(round-robin) or their last observed latencies (least latency). Deployments whose breaker is
open, or half-open with its probe already out, are left out. A deployment whose breaker is
half-open stays in the rotation: whoever draws it carries the probe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from django.core.cache import BaseCache, cache

from routing.guards import conf
from routing.guards.breaker import BreakerConfig, BreakerState, BreakerView, CircuitBreakers
from routing.guards.store import counter_add

TURN_TTL_S = 24 * 3600
# An old measurement says little about a host now; after this it is measured afresh.
LATENCY_TTL_S = 600


class Strategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_LATENCY = "least_latency"


@dataclass(frozen=True)
class Balanced:
    order: tuple[str, ...]
    """Deployments to try, first choice first; the rest are its fallbacks."""
    skipped: tuple[BreakerView, ...]
    """Left out as unhealthy, for the decision trace."""


def deployments_order(
    deployments: Sequence[str],
    *,
    views: Mapping[str, BreakerView],
    strategy: Strategy,
    turn: int = 0,
    latencies_ms: Mapping[str, float] | None = None,
) -> Balanced:
    """Pure. Round-robin rotates the healthy deployments by `turn`; least latency puts the
    unmeasured first (they need measuring), then the fastest."""
    healthy = [d for d in deployments if d not in views or _eligible(views[d])]
    skipped = tuple(views[d] for d in deployments if d in views and not _eligible(views[d]))
    if not healthy:
        return Balanced(order=(), skipped=skipped)
    if strategy is Strategy.ROUND_ROBIN:
        start = turn % len(healthy)
        return Balanced(order=tuple(healthy[start:] + healthy[:start]), skipped=skipped)
    measured = latencies_ms or {}
    ranked = sorted(
        enumerate(healthy),
        key=lambda pair: (pair[1] in measured, measured.get(pair[1], 0.0), pair[0]),
    )
    return Balanced(order=tuple(d for _, d in ranked), skipped=skipped)


def _eligible(view: BreakerView) -> bool:
    if view.state is BreakerState.OPEN:
        return False
    return not (view.state is BreakerState.HALF_OPEN and view.probe_in_flight)


class Balancer:
    def __init__(
        self, store: BaseCache | None = None, breakers: CircuitBreakers | None = None
    ) -> None:
        self.store = store if store is not None else cache
        self.breakers = breakers or CircuitBreakers(self.store)

    def order(
        self,
        group: str,
        deployments: Sequence[str],
        configs: Mapping[str, BreakerConfig],
        strategy: Strategy | None = None,
    ) -> Balanced:
        """`group` names the model the deployments serve; `configs` holds each deployment's
        breaker settings (a deployment missing from it uses the defaults)."""
        strategy = strategy or Strategy(conf.balancer_strategy())
        default = BreakerConfig.for_model()
        views = self.breakers.views({d: configs.get(d, default) for d in deployments})
        by_name = {v.model: v for v in views}
        if strategy is Strategy.ROUND_ROBIN:
            turn = counter_add(self.store, f"balancer:{group}:turn", 1, ttl_s=TURN_TTL_S) - 1
            return deployments_order(deployments, views=by_name, strategy=strategy, turn=turn)
        stored = self.store.get_many([_latency_key(d) for d in deployments])
        latencies = {
            d: float(stored[_latency_key(d)]) for d in deployments if _latency_key(d) in stored
        }
        return deployments_order(
            deployments, views=by_name, strategy=strategy, latencies_ms=latencies
        )

    def record_latency(self, deployment: str, latency_ms: float) -> None:
        self.store.set(_latency_key(deployment), latency_ms, timeout=LATENCY_TTL_S)


def _latency_key(deployment: str) -> str:
    return f"balancer:latency:{deployment}"
