"""A Redis cache backend whose connection pool is shared by the whole process.

Django keeps one cache object per thread and per async context, and each builds its own
`RedisCacheClient` with its own connection pool. Under ASGI every request is a new context, so
every request opened fresh Redis connections. Here every cache object with the same servers and
options reuses one client, and with it one pool; redis-py's pools are thread-safe.

The async methods the request path uses (`aget`, `aset`, `aadd`, `adelete`, `aget_many`) are
native: they talk to Redis through `redis.asyncio` on the running event loop. Django's own
versions run the sync method with `thread_sensitive=True`, which under ASGI starts (and later
joins) a thread per request for a single Redis command.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from functools import cached_property
from typing import Any

import redis.asyncio as aioredis
from django.core.cache import BaseCache, caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.connection import ConnectionProxy
from redis import Redis

_clients: dict[str, RedisCacheClient] = {}
_lock = threading.Lock()
# One asyncio client (and pool) per event loop and server: asyncio connections belong to the
# loop that opened them.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)
# redis.asyncio's default pool refuses the 101st concurrent command ("Too many connections");
# a blocking pool makes a burst wait for a free connection instead.
ASYNC_MAX_CONNECTIONS = 256
ASYNC_POOL_TIMEOUT_S = 10


def async_redis(url: str, **timeouts: float) -> aioredis.Redis:
    """The running event loop's asyncio client for `url` (one pool per loop and server);
    `timeouts` are redis-py's `socket_connect_timeout` and `socket_timeout`."""
    per_loop = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(url)
    if client is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=ASYNC_MAX_CONNECTIONS, timeout=ASYNC_POOL_TIMEOUT_S, **timeouts
        )
        client = per_loop[url] = aioredis.Redis(connection_pool=pool)
    return client


class _ReusingClient(RedisCacheClient):
    """Django's client builds a new `redis.Redis` for every command, copying its response
    callbacks each time (the cost is in docs/benchmarks.md, "Guards"); `redis.Redis` is
    thread-safe, so one per connection pool serves every call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis_by_pool: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index: int = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        client = self._redis_by_pool.get(index)
        if client is None:
            client = self._redis_by_pool[index] = super().get_client(key, write=write)
        return client


class SharedPoolRedisCache(RedisCache):
    @cached_property
    def _cache(self) -> RedisCacheClient:
        # Set by RedisCache.__init__; django-stubs does not declare them.
        servers: list[str] = self.__dict__["_servers"]
        options: dict[str, Any] = self.__dict__["_options"]
        key = repr((servers, sorted(options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = _ReusingClient(servers, **options)
            return client

    def _async_client(self) -> aioredis.Redis:
        # Writes and reads go to the first server, as Django's client does with one server.
        options: dict[str, Any] = self.__dict__["_options"]
        timeouts = {
            name: options[name]
            for name in ("socket_connect_timeout", "socket_timeout")
            if options.get(name) is not None
        }
        return async_redis(self.__dict__["_servers"][0], **timeouts)

    def _serializer(self) -> Any:
        return self._cache.__dict__["_serializer"]

    def _seconds(self, timeout: Any) -> int | None:
        seconds = self.get_backend_timeout(timeout)
        return None if seconds is None else int(seconds)

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        made = self.make_and_validate_key(key, version=version)
        value = await self._async_client().get(made)
        return default if value is None else self._serializer().loads(value)

    async def aget_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        key_map = {self.make_and_validate_key(k, version=version): k for k in keys}
        if not key_map:
            return {}
        values = await self._async_client().mget(list(key_map))
        loads = self._serializer().loads
        return {key_map[k]: loads(v) for k, v in zip(key_map, values, strict=True) if v is not None}

    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (a TTL, as in Django's signature)
        version: int | None = None,
    ) -> None:
        made = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        client = self._async_client()
        if seconds == 0:
            await client.delete(made)
        else:
            await client.set(made, self._serializer().dumps(value), ex=seconds)

    async def aadd(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (a TTL, as in Django's signature)
        version: int | None = None,
    ) -> bool:
        made = self.make_and_validate_key(key, version=version)
        seconds = self._seconds(timeout)
        client = self._async_client()
        stored = self._serializer().dumps(value)
        if seconds == 0:
            added = bool(await client.set(made, stored, nx=True))
            if added:
                await client.delete(made)
            return added
        return bool(await client.set(made, stored, ex=seconds, nx=True))

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        return bool(await self._async_client().delete(made))

    def clear(self) -> None:
        """Delete this cache's keys, everything under its `KEY_PREFIX` (the request journal's
        included), and nothing else. Django's own `clear()` flushes the whole Redis database,
        which also holds the Celery broker, the channel layer and any other install or test run
        sharing it."""
        client = self._cache.get_client(write=True)
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{_glob_escape(self.key_prefix)}:*", count=1000):
            batch.append(key)
            if len(batch) >= CLEAR_BATCH:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)


CLEAR_BATCH = 1000


def _glob_escape(text: str) -> str:
    """`text` matched literally by a Redis MATCH pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


_sync_clients: dict[tuple[str, tuple[tuple[str, float], ...]], Redis] = {}


def shared_redis(url: str, **timeouts: float) -> Redis:
    """The process's one sync client (and pool) for `url` with `timeouts` (redis-py's
    `socket_connect_timeout` and `socket_timeout`), for code that talks to Redis outside the
    cache (the request journal's sweep). Replies are bytes, as the cache's own client gives."""
    key = (url, tuple(sorted(timeouts.items())))
    client = _sync_clients.get(key)
    if client is None:
        with _lock:
            client = _sync_clients.get(key)
            if client is None:
                client = _sync_clients[key] = Redis.from_url(url, **timeouts)
    return client


def shared_clients() -> dict[str, Any]:
    """The clients built so far (for tests and diagnostics)."""
    return dict(_clients)


def redis_client(cache: BaseCache) -> Redis | None:
    """The cache's own Redis client (sharing its connection pool), or None on other backends.

    `django.core.cache.cache` is a proxy to the current context's backend, never a RedisCache
    itself: it is resolved first, or the guards would fall back to process-local state.
    """
    backend = _backend(cache)
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(write=True)
    return None


def async_redis_client(cache: BaseCache) -> aioredis.Redis | None:
    """The cache's async Redis client (this event loop's pool), or None on other backends."""
    backend = _backend(cache)
    if isinstance(backend, SharedPoolRedisCache):
        return backend._async_client()
    return None


def _backend(cache: BaseCache) -> object:
    """The backend behind `cache`, resolving Django's per-context proxy."""
    if isinstance(cache, ConnectionProxy):
        return caches[cache._alias]
    return cache


def redis_serializer(cache: BaseCache) -> Any:
    """How the Redis cache backend encodes values (for reading its keys through a pipeline)."""
    backend = _backend(cache)
    assert isinstance(backend, RedisCache)
    return backend._cache.__dict__["_serializer"]
