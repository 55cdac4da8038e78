"""The guards built with their default store (`django.core.cache.cache`, a proxy) must reach
Redis itself, or limits and counters would silently be per process."""

from __future__ import annotations

from django.core.cache import cache, caches

from routing.guards.ratelimit import Limit, RateLimiter
from routing.guards.store import redis_client


def test_the_default_cache_proxy_resolves_to_the_redis_client() -> None:
    client = redis_client(cache)

    assert client is not None
    assert client.ping() is True
    assert redis_client(caches["default"]) is not None


def test_a_default_rate_limiter_keeps_its_buckets_in_redis() -> None:
    limiter = RateLimiter()

    first = limiter.check(key_id=991, requests=Limit.of(3, burst=3), tokens=None)

    client = redis_client(cache)
    assert client is not None
    assert first.allowed
    assert first.requests is not None and first.requests.remaining == 2
    assert client.exists(cache.make_key("ratelimit:991:requests")) == 1
    other_process_view = RateLimiter(store=caches["default"])
    second = other_process_view.check(key_id=991, requests=Limit.of(3, burst=3), tokens=None)
    assert second.requests is not None and second.requests.remaining == 1
