"""One circuit breaker per model, shared by every process through the Django cache.

closed ──(threshold failures within one window)──> open ──(cooldown)──> half-open
half-open: one caller at a time gets a probe; its success closes, its failure reopens.

Keys (all under the cache's prefix):
  breaker:<model>:failures:<window>   failures counted in clock-aligned windows of `window_s`
  breaker:<model>:opened              when the breaker opened (epoch seconds); absent when closed
  breaker:<model>:probe               held by the one caller allowed through while half-open

Every transition is one atomic cache operation (`add` is SET NX, counters are INCR): when two
processes race, exactly one opens the breaker and exactly one gets the probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.core.cache import BaseCache, cache

from core.redis import counter_add
from routing.guards import conf

# The opened marker outlives any sane cooldown, yet does not linger forever on a model
# nobody calls any more.
OPENED_TTL_S = 7 * 24 * 3600


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 5
    window_s: int = 60
    cooldown_s: int = 30
    probe_timeout_s: int = 60

    @classmethod
    def for_model(cls, overrides: Mapping[str, Any] | None = None) -> BreakerConfig:
        """Settings defaults, with a model's own values (as the engine passes them) on top."""
        values: dict[str, int] = conf.breaker_defaults()
        for name, value in (overrides or {}).items():
            if name not in values:
                raise ValueError(f"unknown breaker setting {name!r}")
            values[name] = int(value)
        return cls(**values)


@dataclass(frozen=True)
class BreakerView:
    """A breaker as the decision trace shows it."""

    model: str
    state: BreakerState
    failures: int
    opened_at: float | None
    retry_at: float | None
    """When an open breaker lets its next probe through."""
    probe_in_flight: bool = False

    def as_trace(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "state": str(self.state),
            "failures": self.failures,
            "opened_at": self.opened_at,
            "retry_at": self.retry_at,
            "probe_in_flight": self.probe_in_flight,
        }


def breaker_view(
    *,
    model: str,
    opened_at: float | None,
    failures: int,
    probe_held: bool,
    now: float,
    config: BreakerConfig,
) -> BreakerView:
    """The state that the stored facts amount to. Pure."""
    if opened_at is None:
        return BreakerView(model, BreakerState.CLOSED, failures, None, None)
    retry_at = opened_at + config.cooldown_s
    if now < retry_at:
        return BreakerView(model, BreakerState.OPEN, failures, opened_at, retry_at)
    return BreakerView(model, BreakerState.HALF_OPEN, failures, opened_at, retry_at, probe_held)


@dataclass(frozen=True)
class Permit:
    """The answer to "may I call this model now?"; hand it back with the outcome."""

    model: str
    allowed: bool
    probe: bool
    view: BreakerView


class CircuitBreakers:
    def __init__(
        self, store: BaseCache | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store if store is not None else cache
        self.clock = clock

    def allow(self, model: str, config: BreakerConfig) -> Permit:
        """Closed: yes. Open: no. Half-open: yes to exactly one caller, as the probe."""
        opened_key, probe_key = breaker_keys(model)
        stored = self.store.get_many([opened_key, probe_key])
        return self.permit(model, config, stored.get(opened_key), probe_key in stored)

    def permit(
        self, model: str, config: BreakerConfig, opened_at: float | None, probe_held: bool
    ) -> Permit:
        """The answer from the stored facts (read by `allow`, or pipelined by a caller); only
        a half-open breaker needs one more cache call, the race for the probe."""
        now = self.clock()
        view = breaker_view(
            model=model,
            opened_at=opened_at,
            failures=0,
            probe_held=probe_held,
            now=now,
            config=config,
        )
        if view.state is BreakerState.CLOSED:
            return Permit(model, allowed=True, probe=False, view=view)
        if view.state is BreakerState.OPEN or view.probe_in_flight:
            return Permit(model, allowed=False, probe=False, view=view)
        won = self.store.add(_key(model, "probe"), now, timeout=config.probe_timeout_s)
        return Permit(model, allowed=won, probe=won, view=view)

    def record_success(self, permit: Permit) -> None:
        if permit.probe:
            self.store.delete_many([_key(permit.model, "opened"), _key(permit.model, "probe")])

    def record_failure(self, permit: Permit, config: BreakerConfig) -> BreakerView:
        now = self.clock()
        model = permit.model
        if permit.probe:
            # The probe failed: a fresh cooldown starts now.
            self.store.set(_key(model, "opened"), now, timeout=OPENED_TTL_S)
            self.store.delete(_key(model, "probe"))
            return self.view(model, config)
        window = int(now // config.window_s)
        failures = counter_add(
            self.store, _key(model, f"failures:{window}"), 1, ttl_s=2 * config.window_s
        )
        if failures >= config.failure_threshold:
            # add, not set: later failures of calls already in flight keep the first opening time.
            self.store.add(_key(model, "opened"), now, timeout=OPENED_TTL_S)
        return self.view(model, config)

    def view(self, model: str, config: BreakerConfig) -> BreakerView:
        return self.views({model: config})[0]

    def views(self, configs: Mapping[str, BreakerConfig]) -> list[BreakerView]:
        """Every named breaker in one cache round trip, for the decision trace."""
        now = self.clock()
        windows = {m: f"failures:{int(now // c.window_s)}" for m, c in configs.items()}
        keys = [_key(m, part) for m in configs for part in ("opened", "probe", windows[m])]
        stored = self.store.get_many(keys)
        return [
            breaker_view(
                model=m,
                opened_at=stored.get(_key(m, "opened")),
                failures=int(stored.get(_key(m, windows[m]), 0)),
                probe_held=_key(m, "probe") in stored,
                now=now,
                config=c,
            )
            for m, c in configs.items()
        ]


def _key(model: str, part: str) -> str:
    return f"breaker:{model}:{part}"


def breaker_view_keys(model: str, config: BreakerConfig, now: float) -> tuple[str, str, str]:
    """The cache keys a view reads: the opened marker, the probe and the current window's
    failure count (for a caller that pipelines the read, as `views` reads them)."""
    return (
        _key(model, "opened"),
        _key(model, "probe"),
        _key(model, f"failures:{int(now // config.window_s)}"),
    )


def breaker_keys(model: str) -> tuple[str, str]:
    """The cache keys `allow` reads: the opened marker and the probe."""
    return _key(model, "opened"), _key(model, "probe")
