"""Atomic counters on the Django cache: one Redis round trip in production, a lock elsewhere.

Django's own `incr` checks existence and increments in two commands; a key that expires in
between comes back without a TTL and lives forever. Counters here set their TTL in the same
atomic step that creates them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.core.cache import BaseCache, caches
from django.core.cache.backends.redis import RedisCache
from django.utils.connection import ConnectionProxy
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

_COUNTER_LUA = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return n
"""

_scripts: dict[str, Script] = {}
_local_lock = threading.Lock()


def redis_client(cache: BaseCache) -> Redis | None:
    """The cache's own Redis client (sharing its connection pool), or None on other backends.

    `django.core.cache.cache` is a proxy to the current context's backend, never a RedisCache
    itself: it is resolved first, or the guards would fall back to process-local state.
    """
    backend = _backend(cache)
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(write=True)
    return None


def _backend(cache: BaseCache) -> object:
    """The backend behind `cache`, resolving Django's per-context proxy."""
    if isinstance(cache, ConnectionProxy):
        return caches[cache._alias]
    return cache


# Building a redis-py pipeline copies the client's response callbacks (a fifth of a
# millisecond); each thread keeps one and reuses it (execute() leaves it empty again).
_pipelines = threading.local()


def pipeline_for(client: Redis) -> Any:
    """This thread's reusable non-transactional pipeline on `client`'s connection pool."""
    pipe = getattr(_pipelines, "pipe", None)
    if pipe is None or pipe.connection_pool is not client.connection_pool:
        pipe = _pipelines.pipe = client.pipeline(transaction=False)
    return pipe


def pipelined(client: Redis, fill: Callable[[Any], None], scripts: Sequence[str] = ()) -> list[Any]:
    """Send the commands `fill` queues on this thread's pipeline, in one round trip; the
    replies, in order (the first error reply is raised).

    A script sent by SHA to a Redis that lost it (restarted) fails without running: the
    `scripts` are then loaded and every command is sent again, once, so `fill`'s other commands
    must be safe to repeat."""
    for first_try in (True, False):
        pipe = pipeline_for(client)
        fill(pipe)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        if first_try and scripts and any(isinstance(r, NoScriptError) for r in replies):
            for source in scripts:
                client.script_load(source)
            continue
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
    raise AssertionError("unreachable")


def scripts_run(client: Redis, source: str, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
    """Run the Lua script `source` once per `(keys, args)`, by SHA, in one round trip."""
    sha = script(client, source).sha

    def fill(pipe: Any) -> None:
        for keys, args in calls:
            pipe.evalsha(sha, len(keys), *keys, *args)

    return pipelined(client, fill, [source])


def script(client: Redis, source: str) -> Script:
    """A Lua script registered once per process; it is sent by SHA after the first call."""
    registered = _scripts.get(source)
    if registered is None:
        registered = _scripts[source] = client.register_script(source)
    return registered


def counter_add(cache: BaseCache, key: str, delta: int, ttl_s: int) -> int:
    """Add `delta` to the counter at `key`, creating it with a `ttl_s` lifetime; the new value."""
    client = redis_client(cache)
    if client is not None:
        counter = script(client, _COUNTER_LUA)
        return int(counter(keys=[cache.make_key(key)], args=[delta, ttl_s], client=client))
    # Other backends (local memory in development) are per process; a lock makes add+incr one step.
    with _local_lock:
        cache.add(key, 0, timeout=ttl_s)
        return int(cache.incr(key, delta))


def redis_serializer(cache: BaseCache) -> Any:
    """How the Redis cache backend encodes values (for reading its keys through a pipeline)."""
    backend = _backend(cache)
    assert isinstance(backend, RedisCache)
    return backend._cache.__dict__["_serializer"]
