from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.core.cache import cache, caches

from orchestrator_site.cache import SharedPoolRedisCache


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
