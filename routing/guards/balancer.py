"""Balancing across deployments of one model (two Ollama hosts, two regions of one API), and
across the models of one rung of a routing decision (`Balancer.rungs_order`, which the engine
asks when a policy balances).

The order is a pure function of the deployments, their breakers, a shared turn counter
(round-robin, weighted) or their last observed latencies (least latency). Deployments whose
breaker is open, or half-open with its probe already out, are left out. A deployment whose
breaker is half-open stays in the rotation: whoever draws it carries the probe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from django.core.cache import BaseCache, cache

from core.redis import (
    COUNTER_LUA,
    counter_add,
    pipelined,
    redis_client,
    redis_serializer,
    script,
)
from routing.engine.values import BalanceSpec, Rung, RungOrder
from routing.guards import conf
from routing.guards.breaker import (
    BreakerConfig,
    BreakerState,
    BreakerView,
    CircuitBreakers,
    breaker_view,
    breaker_view_keys,
)

TURN_TTL_S = 24 * 3600
# An old measurement says little about a host now; after this it is measured afresh.
LATENCY_TTL_S = 600


class Strategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_LATENCY = "least_latency"
    WEIGHTED = "weighted"


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
    weights: Mapping[str, int] | None = None,
) -> Balanced:
    """Pure. Round-robin rotates the healthy deployments by `turn`; weighted gives each turn
    to one of them in proportion to its weight (1 when not named), evenly interleaved, the
    others following by weight; least latency puts the unmeasured first (they need
    measuring), then the fastest."""
    healthy = [d for d in deployments if d not in views or _eligible(views[d])]
    skipped = tuple(views[d] for d in deployments if d in views and not _eligible(views[d]))
    if not healthy:
        return Balanced(order=(), skipped=skipped)
    if strategy is Strategy.ROUND_ROBIN:
        start = turn % len(healthy)
        return Balanced(order=tuple(healthy[start:] + healthy[:start]), skipped=skipped)
    if strategy is Strategy.WEIGHTED:
        shares = tuple(max(1, (weights or {}).get(d, 1)) for d in healthy)
        sequence = weighted_sequence(shares)
        first = sequence[turn % len(sequence)]
        rest = sorted((i for i in range(len(healthy)) if i != first), key=lambda i: -shares[i])
        return Balanced(order=tuple(healthy[i] for i in (first, *rest)), skipped=skipped)
    measured = latencies_ms or {}
    ranked = sorted(
        enumerate(healthy),
        key=lambda pair: (pair[1] in measured, measured.get(pair[1], 0.0), pair[0]),
    )
    return Balanced(order=tuple(d for _, d in ranked), skipped=skipped)


@lru_cache(maxsize=256)
def weighted_sequence(weights: tuple[int, ...]) -> tuple[int, ...]:
    """Smooth weighted round-robin (as nginx): one cycle of sum(weights) turns in which index
    i comes weights[i] times, spread out rather than in runs."""
    total = sum(weights)
    current = [0] * len(weights)
    sequence = []
    for _ in range(total):
        for i, weight in enumerate(weights):
            current[i] += weight
        best = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[best] -= total
        sequence.append(best)
    return tuple(sequence)


def rung_order(
    rung: Rung,
    *,
    strategy: Strategy,
    views: Mapping[str, BreakerView],
    turn: int | None,
    latencies_ms: Mapping[str, float],
    weights: Mapping[str, int],
) -> RungOrder:
    """Pure. The rung's healthy models in the strategy's order, then the unhealthy ones (the
    chain keeps them as a last resort; execution asks their breakers again), with the trace
    that explains the order."""
    balanced = deployments_order(
        rung.models,
        views=views,
        strategy=strategy,
        turn=turn or 0,
        latencies_ms=latencies_ms,
        weights=weights,
    )
    left_out = tuple(v.model for v in balanced.skipped)
    trace: dict[str, Any] = {
        "strategy": str(strategy),
        "candidates": list(rung.models),
        "order": [*balanced.order, *left_out],
        "picked": balanced.order[0] if balanced.order else None,
        "skipped": [v.as_trace() for v in balanced.skipped],
    }
    if strategy is not Strategy.LEAST_LATENCY:
        trace["turn"] = turn
    if strategy is Strategy.WEIGHTED:
        trace["weights"] = {m: max(1, weights.get(m, 1)) for m in rung.models}
    if strategy is Strategy.LEAST_LATENCY:
        trace["latencies_ms"] = {m: latencies_ms.get(m) for m in rung.models}
    return RungOrder(order=(*balanced.order, *left_out), trace=trace)


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
            turn = counter_add(self.store, _turn_key(group), 1, ttl_s=TURN_TTL_S) - 1
            return deployments_order(deployments, views=by_name, strategy=strategy, turn=turn)
        stored = self.store.get_many([_latency_key(d) for d in deployments])
        latencies = {
            d: float(stored[_latency_key(d)]) for d in deployments if _latency_key(d) in stored
        }
        return deployments_order(
            deployments, views=by_name, strategy=strategy, latencies_ms=latencies
        )

    def rungs_order(self, rungs: Sequence[Rung], spec: BalanceSpec) -> list[RungOrder]:
        """Each rung's order by the policy's strategy, from the shared state read in one round
        trip on Redis: a turn per rung (round-robin, weighted: `INCR`), every model's breaker
        and, for least latency, its last latency (one `MGET`)."""
        strategy = Strategy(spec.strategy)
        config = BreakerConfig.for_model()
        now = self.breakers.clock()
        models = list(dict.fromkeys(m for rung in rungs for m in rung.models))
        breaker_keys = {m: breaker_view_keys(m, config, now) for m in models}
        keys = [k for m in models for k in breaker_keys[m]]
        if strategy is Strategy.LEAST_LATENCY:
            keys += [_latency_key(m) for m in models]
        turn_keys = [] if strategy is Strategy.LEAST_LATENCY else [_turn_key(r.key) for r in rungs]
        turns, stored = self._read(turn_keys, keys)
        views = {}
        for m in models:
            opened, probe, failures = breaker_keys[m]
            views[m] = breaker_view(
                model=m,
                opened_at=stored.get(opened),
                failures=int(stored.get(failures, 0)),
                probe_held=probe in stored,
                now=now,
                config=config,
            )
        latencies = {m: float(stored[_latency_key(m)]) for m in models if _latency_key(m) in stored}
        return [
            rung_order(
                rung,
                strategy=strategy,
                views=views,
                turn=turns[i] if turns else None,
                latencies_ms=latencies,
                weights=spec.weights,
            )
            for i, rung in enumerate(rungs)
        ]

    def _read(self, turn_keys: list[str], keys: list[str]) -> tuple[list[int], dict[str, Any]]:
        """Take a turn of each counter (the turn taken: its new value less one) and read `keys`."""
        client = redis_client(self.store)
        if client is None:
            turns = [counter_add(self.store, k, 1, ttl_s=TURN_TTL_S) - 1 for k in turn_keys]
            return turns, self.store.get_many(keys)
        store = self.store
        sha = script(client, COUNTER_LUA).sha

        def fill(pipe: Any) -> None:
            for key in turn_keys:
                pipe.evalsha(sha, 1, store.make_key(key), 1, TURN_TTL_S)
            pipe.mget([store.make_key(k) for k in keys])

        # A Redis that lost the script ran none of the counters: all are sent again, once.
        replies = pipelined(client, fill, [COUNTER_LUA])
        loads = redis_serializer(store).loads
        values = replies[-1]
        stored = {k: loads(v) for k, v in zip(keys, values, strict=True) if v is not None}
        return [int(r) - 1 for r in replies[:-1]], stored

    def record_latency(self, deployment: str, latency_ms: float) -> None:
        self.store.set(_latency_key(deployment), latency_ms, timeout=LATENCY_TTL_S)


def _turn_key(group: str) -> str:
    return f"balancer:{group}:turn"


def _latency_key(deployment: str) -> str:
    return f"balancer:latency:{deployment}"
