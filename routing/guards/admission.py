"""The guards' reads before a request runs, in one Redis round trip.

A request asks three shared-state questions before its first model is called: may this key
spend another request and these tokens (rate limit), is the model's circuit closed (breaker),
and is the answer already known (response cache). On Redis the three go out as one pipeline:
the rate-limit script, an `MGET` of the breaker's markers and a `GET` of the cache slot. The
script is atomic on its own, the other two are reads, so pipelining changes no outcome, only
the number of round trips. Elsewhere (local memory in development) each guard answers alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.redis import pipelined, redis_client, redis_serializer, script
from routing.guards import conf
from routing.guards.breaker import BreakerConfig, CircuitBreakers, Permit, breaker_keys
from routing.guards.ratelimit import RATE_LIMIT_LUA, Limit, RateLimiter, RateLimitResult
from routing.guards.response_cache import CachedAnswer, ResponseCache, answer_of, slot_key


@dataclass(frozen=True)
class RateCheck:
    key_id: int
    requests: Limit | None
    tokens: Limit | None
    token_cost: int


@dataclass(frozen=True)
class GuardReads:
    rate_limit: RateLimitResult | None
    permit: Permit | None
    cached: CachedAnswer | None
    also_sent: bool = False
    """Whether the caller's `also` commands went out with the reads."""


class Guards:
    """The rate limiter, the circuit breakers and the response cache, on one shared store."""

    def __init__(
        self, limiter: RateLimiter, breakers: CircuitBreakers, responses: ResponseCache
    ) -> None:
        self.limiter = limiter
        self.breakers = breakers
        self.responses = responses

    def read(
        self,
        *,
        rate: RateCheck | None,
        breaker: tuple[str, BreakerConfig] | None,
        cache_key: str | None,
        also: Callable[[Any], None] | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> GuardReads:
        """Take from the rate limit, and read the breaker and the cache (the answer stored
        under `cache_key`, `response_cache_key(...)`), in one round trip.

        The breaker and the cache are read even when the rate limit refuses (they are only
        reads); callers look at `rate_limit` first. `also` queues more commands of the caller's
        on the same pipeline (they may be sent twice, so they must be idempotent); without a
        shared Redis it is not called, and `also_sent` says so. `meanwhile()` is run once while
        the replies travel (after the reads without Redis)."""
        if cache_key is not None and not conf.response_cache_enabled():
            cache_key = None
        store = self.limiter.store
        client = redis_client(store)
        shared = store is self.breakers.store and store is self.responses.store
        if client is None or not shared:
            reads = self._one_by_one(rate, breaker, cache_key)
            if meanwhile is not None:
                meanwhile()
            return reads
        replies = self._pipeline(client, store, rate, breaker, cache_key, also, meanwhile)
        loads = redis_serializer(store).loads
        index = 0
        limited = None
        if rate is not None:
            levels, allowed = RateLimiter.script_reply(replies[index])
            limited = RateLimiter.result(
                levels, allowed, requests=rate.requests, tokens=rate.tokens, cost=rate.token_cost
            )
            index += 1
        permit = None
        if breaker is not None:
            opened, probe = replies[index]
            model, config = breaker
            opened_at = None if opened is None else loads(opened)
            permit = self.breakers.permit(model, config, opened_at, probe is not None)
            index += 1
        cached = None
        if cache_key is not None:
            entry = replies[index]
            cached = answer_of(None if entry is None else loads(entry), cache_key)
        return GuardReads(
            rate_limit=limited,
            permit=permit,
            cached=cached,
            also_sent=also is not None,
        )

    def _pipeline(
        self,
        client: Any,
        store: Any,
        rate: RateCheck | None,
        breaker: tuple[str, BreakerConfig] | None,
        cache_key: str | None,
        also: Callable[[Any], None] | None,
        meanwhile: Callable[[], None] | None,
    ) -> list[Any]:
        def fill(pipe: Any) -> None:
            if rate is not None:
                keys, args = self.limiter.script_call(
                    rate.key_id, rate.requests, rate.tokens, rate.token_cost, take=True
                )
                pipe.evalsha(script(client, RATE_LIMIT_LUA).sha, len(keys), *keys, *args)
            if breaker is not None:
                pipe.mget([store.make_key(k) for k in breaker_keys(breaker[0])])
            if cache_key is not None:
                pipe.get(store.make_key(slot_key(cache_key)))
            if also is not None:
                also(pipe)

        # A Redis restarted since the script was registered: the script did not run (nothing
        # was taken), the reads and `also` are safe to repeat.
        return pipelined(client, fill, [RATE_LIMIT_LUA], meanwhile=meanwhile)

    def _one_by_one(
        self,
        rate: RateCheck | None,
        breaker: tuple[str, BreakerConfig] | None,
        cache_key: str | None,
    ) -> GuardReads:
        limited = (
            None
            if rate is None
            else self.limiter.check(
                key_id=rate.key_id,
                requests=rate.requests,
                tokens=rate.tokens,
                token_cost=rate.token_cost,
            )
        )
        permit = None if breaker is None else self.breakers.allow(*breaker)
        cached = None if cache_key is None else self.responses.lookup(cache_key)
        return GuardReads(rate_limit=limited, permit=permit, cached=cached)
