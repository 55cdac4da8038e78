"""The guards' pipelined read (rate limit + breaker + response cache in one Redis round trip)
must decide exactly what the guards decide one by one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import BaseCache, cache, caches
from django.core.cache.backends.locmem import LocMemCache

from core.redis import redis_client
from providers.adapters.types import ChatRequest, Message, Usage
from routing.guards.admission import Guards, RateCheck
from routing.guards.breaker import BreakerConfig, BreakerState, CircuitBreakers
from routing.guards.ratelimit import Limit, RateLimiter
from routing.guards.response_cache import ResponseCache, response_cache_key

CONFIG = BreakerConfig(failure_threshold=2, window_s=60, cooldown_s=30, probe_timeout_s=60)
REQUEST = ChatRequest(model="mini", messages=(Message("user", "Capital of France?"),))
KEY = response_cache_key(REQUEST, provider="openai")


def save(store: BaseCache, key: str, text: str) -> None:
    ResponseCache(store).save(key, provider="openai", model="mini", text=text, usage=Usage(5, 1, 0))


KEY_ID = 4242


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(settings) -> Iterator[BaseCache]:
    settings.ORCHESTRATOR_RESPONSE_CACHE_ENABLED = True
    cache.clear()
    yield caches.create_connection("default")
    cache.clear()


def guards_on(store: BaseCache, clock: Clock) -> Guards:
    return Guards(RateLimiter(store), CircuitBreakers(store, clock=clock), ResponseCache(store))


def count_round_trips(store: BaseCache) -> list[str]:
    """Every command or pipeline the store's Redis client sends, by name."""
    client = redis_client(store)
    assert client is not None
    sent: list[str] = []
    pool = client.connection_pool
    original = pool.get_connection

    def counted(*args: object, **kwargs: object) -> object:
        sent.append("connection")
        return original(*args, **kwargs)

    pool.get_connection = counted  # type: ignore[method-assign,assignment]
    return sent


def test_one_round_trip_answers_all_three_guards(store) -> None:
    guards = guards_on(store, Clock(1_000.0))
    save(store, KEY, "Paris")
    sent = count_round_trips(store)
    try:
        reads = guards.read(
            rate=RateCheck(KEY_ID, Limit.of(10, burst=10), Limit.of(1000, burst=1000), 30),
            breaker=("openai:mini", CONFIG),
            cache_key=KEY,
            # The caller's own commands ride along (the request journal's entry).
            also=lambda pipe: pipe.set(store.make_key("also-sent"), "yes"),
        )
    finally:
        del redis_client(store).connection_pool.get_connection  # type: ignore[union-attr]

    assert sent == ["connection"]
    assert reads.also_sent is True
    assert redis_client(store).get(store.make_key("also-sent")) == b"yes"  # type: ignore[union-attr]
    assert reads.rate_limit is not None and reads.rate_limit.allowed
    assert reads.rate_limit.requests is not None and reads.rate_limit.requests.remaining == 9
    assert reads.rate_limit.tokens is not None and reads.rate_limit.tokens.remaining == 970
    assert reads.permit is not None and reads.permit.allowed and not reads.permit.probe
    assert reads.cached is not None
    assert (reads.cached.text, reads.cached.usage) == ("Paris", Usage(5, 1, 0))


def test_the_rate_limit_refuses_at_the_exact_boundary_like_the_limiter_alone(store) -> None:
    guards = guards_on(store, Clock(1_000.0))
    rate = RateCheck(KEY_ID, Limit.of(3, burst=3), None, 0)

    answers = [guards.read(rate=rate, breaker=None, cache_key=None) for _ in range(4)]

    assert [a.rate_limit.allowed for a in answers if a.rate_limit] == [True, True, True, False]
    refused = answers[-1].rate_limit
    assert refused is not None and refused.requests is not None
    assert refused.requests.remaining == 0
    # 1 request refills in 60 s / 3 = 20 s.
    assert refused.retry_after_s == 20
    # The refused read took nothing: the limiter alone sees the same empty bucket.
    alone = RateLimiter(store).check(key_id=KEY_ID, requests=Limit.of(3, burst=3), tokens=None)
    assert not alone.allowed and alone.requests is not None and alone.requests.remaining == 0


def test_an_open_breaker_refuses_and_a_half_open_one_gives_exactly_one_probe(store) -> None:
    clock = Clock(1_000.0)
    breakers = CircuitBreakers(store, clock=clock)
    guards = guards_on(store, clock)
    for _ in range(CONFIG.failure_threshold):
        breakers.record_failure(breakers.allow("openai:mini", CONFIG), CONFIG)

    opened = guards.read(rate=None, breaker=("openai:mini", CONFIG), cache_key=None).permit
    clock.now += CONFIG.cooldown_s
    probe = guards.read(rate=None, breaker=("openai:mini", CONFIG), cache_key=None).permit
    second = guards.read(rate=None, breaker=("openai:mini", CONFIG), cache_key=None).permit

    assert opened is not None and not opened.allowed
    assert opened.view.state is BreakerState.OPEN
    assert opened.view.retry_at == 1_000.0 + CONFIG.cooldown_s
    assert probe is not None and probe.allowed and probe.probe
    assert probe.view.state is BreakerState.HALF_OPEN
    assert second is not None and not second.allowed and second.view.probe_in_flight


def test_a_cache_slot_held_by_another_request_is_a_miss(store) -> None:
    other = ChatRequest(model="mini", messages=(Message("user", "Capital of Spain?"),))
    other_key = response_cache_key(other, provider="openai")
    save(store, other_key, "Madrid")

    reads = guards_on(store, Clock(1_000.0)).read(rate=None, breaker=None, cache_key=KEY)

    assert reads.cached is None
    assert ResponseCache(store).lookup(other_key) is not None


def test_a_disabled_response_cache_is_not_read(store, settings) -> None:
    save(store, KEY, "Paris")
    settings.ORCHESTRATOR_RESPONSE_CACHE_ENABLED = False

    reads = guards_on(store, Clock(1_000.0)).read(rate=None, breaker=None, cache_key=KEY)

    assert reads.cached is None


def test_a_redis_that_forgot_the_script_is_taught_again_and_nothing_is_taken_twice(store) -> None:
    guards = guards_on(store, Clock(1_000.0))
    rate = RateCheck(KEY_ID, Limit.of(5, burst=5), None, 0)
    guards.read(rate=rate, breaker=None, cache_key=None)
    client = redis_client(store)
    assert client is not None
    client.script_flush()

    reads = guards.read(rate=rate, breaker=("openai:mini", CONFIG), cache_key=None)

    assert reads.rate_limit is not None and reads.rate_limit.requests is not None
    assert reads.rate_limit.requests.remaining == 3
    assert reads.permit is not None and reads.permit.allowed


def test_meanwhile_runs_once_while_the_replies_travel(store) -> None:
    guards = guards_on(store, Clock(1_000.0))
    rate = RateCheck(KEY_ID, Limit.of(5, burst=5), None, 0)
    client = redis_client(store)
    assert client is not None
    key = store.make_key("meanwhile")
    client.delete(key)
    seen: list[object] = []

    def meanwhile() -> None:
        # The commands are out (written) but their replies not read yet: Redis has run them.
        seen.append(client.get(key))

    client.script_flush()  # the first try fails on the script and is sent again
    reads = guards.read(
        rate=rate,
        breaker=None,
        cache_key=None,
        also=lambda pipe: pipe.set(key, "out"),
        meanwhile=meanwhile,
    )

    assert seen == [b"out"]  # once, though the commands went out twice
    assert reads.rate_limit is not None and reads.rate_limit.requests is not None
    assert reads.rate_limit.requests.remaining == 4  # taken once


def test_an_error_in_meanwhile_still_reads_the_replies_off_the_connection(store) -> None:
    guards = guards_on(store, Clock(1_000.0))
    rate = RateCheck(KEY_ID, Limit.of(5, burst=5), None, 0)

    def failing() -> None:
        raise RuntimeError("hold failed")

    with pytest.raises(RuntimeError, match="hold failed"):
        guards.read(rate=rate, breaker=("openai:mini", CONFIG), cache_key=None, meanwhile=failing)
    # The connection went back to the pool with nothing left unread: the next read is whole.
    reads = guards.read(rate=rate, breaker=("openai:mini", CONFIG), cache_key=None)

    assert reads.rate_limit is not None and reads.rate_limit.requests is not None
    assert reads.rate_limit.requests.remaining == 3
    assert reads.permit is not None and reads.permit.allowed


def test_without_redis_each_guard_answers_alone_with_the_same_outcome(settings) -> None:
    settings.ORCHESTRATOR_RESPONSE_CACHE_ENABLED = True
    local = LocMemCache("guards-admission", {})
    guards = guards_on(local, Clock(1_000.0))
    save(local, KEY, "Paris")
    rate = RateCheck(KEY_ID, Limit.of(2, burst=2), None, 0)

    called: list[object] = []
    answers = [
        guards.read(rate=rate, breaker=("openai:mini", CONFIG), cache_key=KEY, also=called.append)
        for _ in range(3)
    ]

    assert called == [] and not any(a.also_sent for a in answers)  # the caller does it alone

    assert [a.rate_limit.allowed for a in answers if a.rate_limit] == [True, True, False]
    assert all(a.permit is not None and a.permit.allowed for a in answers)
    assert [a.cached.text if a.cached else None for a in answers] == ["Paris"] * 3
