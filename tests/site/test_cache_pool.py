from __future__ import annotations

import asyncio
import threading

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.cache import cache, caches

from core.redis import SharedPoolRedisCache


def _pool_id() -> int:
    backend = caches["default"]
    assert isinstance(backend, SharedPoolRedisCache)
    backend.set("pool-probe", 1, timeout=5)
    return id(backend._cache.get_client(write=True).connection_pool)


async def test_every_async_context_and_thread_shares_one_redis_pool() -> None:
    async def in_new_context() -> int:
        return _pool_id()

    from_tasks = await asyncio.gather(*(asyncio.create_task(in_new_context()) for _ in range(5)))
    from_threads = await asyncio.gather(
        *(sync_to_async(_pool_id, thread_sensitive=False)() for _ in range(5))
    )

    assert len(set(from_tasks) | set(from_threads) | {_pool_id()}) == 1


def test_the_shared_cache_still_reads_and_writes() -> None:
    cache.set("shared-pool", {"n": 1}, timeout=5)

    assert cache.get("shared-pool") == {"n": 1}
    assert cache.add("shared-pool-counter", 1) is True
    assert cache.incr("shared-pool-counter", 2) == 3


async def test_the_async_methods_speak_the_same_keys_and_values_as_the_sync_ones() -> None:
    cache.set("async-shared", {"n": 1}, timeout=30)
    cache.set("async-int", 41, timeout=30)

    assert await cache.aget("async-shared") == {"n": 1}
    assert await cache.aget("async-int") == 41
    assert await cache.aget("async-missing", "fallback") == "fallback"
    assert await cache.aget_many(["async-shared", "async-int", "async-missing"]) == {
        "async-shared": {"n": 1},
        "async-int": 41,
    }

    await cache.aset("async-written", ["a", 2], timeout=30)
    assert cache.get("async-written") == ["a", 2]
    assert await cache.aadd("async-written", "other", timeout=30) is False
    assert await cache.aadd("async-added", 7, timeout=30) is True
    assert cache.incr("async-added", 1) == 8
    assert await cache.adelete("async-added") is True
    assert await cache.adelete("async-added") is False
    assert cache.get("async-added") is None
    await cache.aset("async-written", "gone", timeout=0)
    assert cache.get("async-written", "absent") == "absent"


async def test_the_async_methods_expire_keys_like_the_sync_ones() -> None:
    backend = caches["default"]
    assert isinstance(backend, SharedPoolRedisCache)
    client = backend._cache.get_client(write=True)

    await cache.aset("async-ttl", 1, timeout=120)
    await cache.aadd("async-ttl-added", 1, timeout=60)

    assert 118 <= client.ttl(backend.make_key("async-ttl")) <= 120
    assert 58 <= client.ttl(backend.make_key("async-ttl-added")) <= 60


async def test_an_async_cache_read_inside_a_request_starts_no_thread() -> None:
    cache.set("async-thread", "x", timeout=30)
    threads_before = {thread.ident for thread in threading.enumerate()}

    # Django's ASGI handler runs every request inside its own ThreadSensitiveContext.
    async with ThreadSensitiveContext():
        for _ in range(20):
            assert await cache.aget("async-thread") == "x"
        threads_during = {thread.ident for thread in threading.enumerate()}

    assert threads_during <= threads_before


async def test_a_burst_beyond_the_pool_size_waits_for_connections_instead_of_failing() -> None:
    cache.set("async-burst", "x", timeout=30)

    answers = await asyncio.gather(*(cache.aget("async-burst") for _ in range(400)))

    assert answers == ["x"] * 400
