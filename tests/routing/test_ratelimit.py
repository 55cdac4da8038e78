from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import BaseCache, cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.test import override_settings

from core.redis import redis_client
from routing.guards.ratelimit import (
    BucketState,
    Limit,
    RateLimiter,
    RateLimitResult,
    TokenDebit,
)

T0 = 1_800_000_000_000_000  # µs


class Clock:
    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


@pytest.fixture
def redis_store() -> Iterator[BaseCache]:
    cache.clear()
    store = caches.create_connection("default")
    assert redis_client(store) is not None
    yield store
    cache.clear()


@pytest.fixture(params=["redis", "locmem"])
def store(request: pytest.FixtureRequest, redis_store: BaseCache) -> BaseCache:
    """Every behaviour holds on Redis (Lua) and on the local-memory fallback alike."""
    if request.param == "redis":
        return redis_store
    return LocMemCache(f"ratelimit-{request.node.name}", {})


def test_requests_are_exact_at_the_refill_boundary(store) -> None:
    clock = Clock(T0)
    limiter = RateLimiter(store, clock)
    rpm = Limit(per_minute=60, burst=3)

    outcomes = [limiter.check(key_id=1, requests=rpm, tokens=None).allowed for _ in range(4)]
    assert outcomes == [True, True, True, False]

    clock.now_us = T0 + 999_999
    early = limiter.check(key_id=1, requests=rpm, tokens=None)
    assert early.allowed is False
    assert early.requests == BucketState(
        allowed=False, remaining=0, reset_us=2_000_001, retry_after_us=1
    )
    clock.now_us = T0 + 1_000_000
    on_time = limiter.check(key_id=1, requests=rpm, tokens=None)
    assert on_time.allowed is True
    assert on_time.requests == BucketState(
        allowed=True, remaining=0, reset_us=3_000_000, retry_after_us=0
    )


def test_a_rate_that_does_not_divide_a_minute_is_still_exact(store) -> None:
    clock = Clock(T0)
    limiter = RateLimiter(store, clock)
    seven = Limit(per_minute=7, burst=1)
    assert limiter.check(key_id=2, requests=seven, tokens=None).allowed

    # 60 s / 7 = 8.571428571… s: not yet at 8_571_428 µs, allowed from 8_571_429 µs.
    clock.now_us = T0 + 8_571_428
    assert limiter.check(key_id=2, requests=seven, tokens=None).allowed is False
    clock.now_us = T0 + 8_571_429
    assert limiter.check(key_id=2, requests=seven, tokens=None).allowed is True


def test_requests_and_tokens_are_taken_together_or_not_at_all(store) -> None:
    clock = Clock(T0)
    limiter = RateLimiter(store, clock)
    rpm, tpm = Limit(60, 5), Limit(1000, 1000)

    first = limiter.check(key_id=3, requests=rpm, tokens=tpm, token_cost=700)
    refused = limiter.check(key_id=3, requests=rpm, tokens=tpm, token_cost=301)
    fits = limiter.check(key_id=3, requests=rpm, tokens=tpm, token_cost=300)

    assert first.allowed and fits.allowed and not refused.allowed
    assert refused.requests is not None and refused.requests.remaining == 4
    assert refused.tokens is not None
    # 1 token short at 1000 tokens a minute: 60 ms.
    assert refused.tokens.retry_after_us == 60_000
    assert fits.requests is not None and fits.requests.remaining == 3
    assert fits.tokens is not None and fits.tokens.remaining == 0


def test_a_request_larger_than_the_burst_passes_on_a_full_bucket_and_owes(store) -> None:
    clock = Clock(T0)
    limiter = RateLimiter(store, clock)
    tpm = Limit(600, 100)

    big = limiter.check(key_id=4, requests=None, tokens=tpm, token_cost=250)
    after = limiter.check(key_id=4, requests=None, tokens=tpm, token_cost=1)

    assert big.allowed is True
    assert after.allowed is False
    assert after.tokens is not None
    # 150 owed plus 1 needed at 10 tokens a second.
    assert after.tokens.retry_after_us == 15_100_000


def test_real_usage_corrects_the_token_bucket(store) -> None:
    clock = Clock(T0)
    limiter = RateLimiter(store, clock)
    tpm = Limit(1000, 1000)
    limiter.check(key_id=5, requests=None, tokens=tpm, token_cost=100)

    limiter.debit_tokens(key_id=5, tokens=tpm, amount=850)
    assert limiter.check(key_id=5, requests=None, tokens=tpm, token_cost=51).allowed is False
    limiter.debit_tokens(key_id=5, tokens=tpm, amount=-2000)
    result = limiter.check(key_id=5, requests=None, tokens=tpm, token_cost=1000)
    assert result.allowed is True


def test_corrections_of_many_keys_go_together_and_land_like_single_ones(store) -> None:
    clock = Clock(T0)
    limiter = RateLimiter(store, clock)
    tpm = Limit(1000, 1000)
    for key_id in (7, 8):
        limiter.check(key_id=key_id, requests=None, tokens=tpm, token_cost=100)

    limiter.debit_many([TokenDebit(7, tpm, 850), TokenDebit(8, tpm, -100)])

    # Key 7 used 950 of its 1000; key 8 got its 100 back and is full again.
    assert limiter.check(key_id=7, requests=None, tokens=tpm, token_cost=51).allowed is False
    assert limiter.check(key_id=7, requests=None, tokens=tpm, token_cost=50).allowed is True
    full = limiter.check(key_id=8, requests=None, tokens=tpm, token_cost=1000)
    assert full.allowed is True
    assert full.tokens is not None and full.tokens.remaining == 0


def test_corrections_reach_a_redis_that_lost_its_scripts(redis_store) -> None:
    clock = Clock(T0)
    limiter = RateLimiter(redis_store, clock)
    tpm = Limit(1000, 1000)
    limiter.check(key_id=9, requests=None, tokens=tpm, token_cost=1000)
    client = redis_client(redis_store)
    assert client is not None
    client.script_flush()  # as after a restart

    limiter.debit_many([TokenDebit(9, tpm, -600), TokenDebit(9, tpm, 0)])

    assert limiter.check(key_id=9, requests=None, tokens=tpm, token_cost=601).allowed is False
    assert limiter.check(key_id=9, requests=None, tokens=tpm, token_cost=600).allowed is True


def test_keys_are_limited_independently(store) -> None:
    limiter = RateLimiter(store, Clock(T0))
    one = Limit(1, 1)

    assert limiter.check(key_id=6, requests=one, tokens=None).allowed
    assert not limiter.check(key_id=6, requests=one, tokens=None).allowed
    assert limiter.check(key_id=7, requests=one, tokens=None).allowed


def test_redis_and_local_memory_agree_on_a_random_run(redis_store) -> None:
    rng = random.Random(20261122)
    steps = [(rng.randrange(0, 400_000), rng.randrange(0, 40)) for _ in range(300)]
    rpm, tpm = Limit(97, 7), Limit(1234, 300)

    def run(store: BaseCache) -> list[RateLimitResult]:
        clock = Clock(T0)
        limiter = RateLimiter(store, clock)
        results = []
        for gap_us, tokens in steps:
            clock.now_us += gap_us
            results.append(limiter.check(key_id=8, requests=rpm, tokens=tpm, token_cost=tokens))
        return results

    on_redis = run(redis_store)
    assert on_redis == run(LocMemCache("ratelimit-compare", {}))
    assert 50 < sum(r.allowed for r in on_redis) < 250


def test_concurrent_callers_on_the_redis_clock_get_exactly_the_burst(redis_store) -> None:
    rpm = Limit(per_minute=1, burst=10)

    def one(_: int) -> bool:
        limiter = RateLimiter(caches.create_connection("default"))
        return limiter.check(key_id=9, requests=rpm, tokens=None).allowed

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(one, range(50)))

    assert outcomes.count(True) == 10


def test_buckets_expire_once_they_would_be_full(redis_store) -> None:
    limiter = RateLimiter(redis_store, Clock(T0))
    limiter.check(key_id=10, requests=Limit(60, 2), tokens=None)

    client = redis_client(redis_store)
    assert client is not None
    # One unit to refill at one a second, plus a second of margin.
    assert 1900 < client.pttl(redis_store.make_key("ratelimit:10:requests")) <= 2000


def test_headers_for_a_429() -> None:
    result = RateLimitResult(
        allowed=False,
        requests=BucketState(False, 0, 2_500_000, 1_200_001),
        tokens=BucketState(True, 40, 100_000, 0),
        requests_limit=60,
        tokens_limit=1000,
    )

    assert result.retry_after_s == 2
    assert result.headers() == {
        "Retry-After": "2",
        "X-RateLimit-Limit-Requests": "60",
        "X-RateLimit-Remaining-Requests": "0",
        "X-RateLimit-Reset-Requests": "2.500",
        "X-RateLimit-Limit-Tokens": "1000",
        "X-RateLimit-Remaining-Tokens": "40",
        "X-RateLimit-Reset-Tokens": "0.100",
    }


def test_the_default_burst_follows_the_setting() -> None:
    assert Limit.of(60) == Limit(60, 60)
    with override_settings(ORCHESTRATOR_RATE_LIMIT_BURST_SHARE=0.25):
        assert Limit.of(10) == Limit(10, 3)
    with pytest.raises(ValueError):
        Limit.of(0)
