"""Commands to Redis packed into one round trip, Lua scripts sent by SHA, and atomic counters
on the Django cache (one Redis round trip in production, a lock elsewhere).

Django's own `incr` checks existence and increments in two commands; a key that expires in
between comes back without a TTL and lives forever. Counters here set their TTL in the same
atomic step that creates them.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import hiredis
from django.core.cache import BaseCache
from redis import Redis
from redis.commands.core import AsyncScript, Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redis.pool import async_redis_client, redis_client
from core.threads import in_long_lived_worker

_COUNTER_LUA = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return n
"""

COUNTER_LUA = _COUNTER_LUA
"""For callers that pipeline the counter with other commands (routing.guards.balancer)."""

_scripts: dict[str, Script] = {}
_async_scripts: dict[str, AsyncScript] = {}
_local_lock = threading.Lock()


class Commands:
    """Commands queued to go out in one write: the part of redis-py's pipeline interface the
    guards and the journal use, recorded as plain argument tuples."""

    __slots__ = ("queued",)

    def __init__(self) -> None:
        self.queued: list[tuple[Any, ...]] = []

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> None:
        self.queued.append(("EVALSHA", sha, numkeys, *keys_and_args))

    def mget(self, keys: Sequence[Any]) -> None:
        self.queued.append(("MGET", *keys))

    def get(self, key: Any) -> None:
        self.queued.append(("GET", key))

    def hset(self, name: Any, *, mapping: Mapping[Any, Any]) -> None:
        self.queued.append(("HSET", name, *(x for pair in mapping.items() for x in pair)))

    def zadd(self, name: Any, mapping: Mapping[Any, float]) -> None:
        self.queued.append(("ZADD", name, *(x for item in mapping.items() for x in item[::-1])))

    def set(self, name: Any, value: Any) -> None:
        self.queued.append(("SET", name, value))


_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def _exchange(
    client: Redis, commands: list[tuple[Any, ...]], meanwhile: Callable[[], None] | None
) -> list[Any]:
    """Write `commands` on one of `client`'s pooled connections, run `meanwhile()` while their
    replies travel, then read the replies, an error reply as its exception object in its place.

    redis-py's pipeline object spends more of the process's time than the round trip itself
    (its command stack, callbacks, retries and instrumentation), so the commands go out packed
    by hiredis on a connection taken from the pool directly. A connection that fails before the
    commands are written is replaced once; one that fails after is dropped and the error raised
    (a command that may have run is not sent twice)."""
    pool = client.connection_pool
    packed = b"".join(hiredis.pack_command(command) for command in commands)
    for attempt in (1, 2):
        connection = _connection_from(pool)
        try:
            connection.send_packed_command([packed], check_health=False)
        except _CONNECTION_ERRORS:
            connection.disconnect()
            pool.release(connection)
            if attempt == 2:
                raise
            continue
        break
    replies: list[Any] = []
    try:
        if meanwhile is not None:
            meanwhile()
    finally:
        try:
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except ResponseError as error:
                    replies.append(error)
        except BaseException:
            connection.disconnect()
            pool.release(connection)
            raise
        _keep(pool, connection)
    return replies


# A long-lived worker thread (`core.threads`) keeps the connection of its last exchange instead
# of taking one from the pool and giving it back each time: redis-py's checkout (its argument
# checks, a fork check, a lock, a poll of the socket) cost about as much of a gateway request's
# CPU as the commands themselves. The kept connection is clean (every reply was read), belongs
# to this process (checked), is dropped on any error, and is polled before each use as the
# pool would: one that Redis closed meanwhile (a restart, an idle timeout) is replaced before
# anything is sent on it. Other threads, which may be short-lived, always give theirs back.
_kept = threading.local()


def _connection_from(pool: Any) -> Any:
    kept = getattr(_kept, "connection", None)
    if kept is not None:
        kept_pool, pid, connection = kept
        _kept.connection = None
        if pid == os.getpid():
            if kept_pool is pool and _sound(connection):
                return connection
            connection.disconnect()
            kept_pool.release(connection)
    return pool.get_connection()


def _sound(connection: Any) -> bool:
    """Connected, with nothing to read: no end of stream, no stray reply."""
    sock = connection._sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _keep(pool: Any, connection: Any) -> None:
    if in_long_lived_worker():
        _kept.connection = (pool, os.getpid(), connection)
    else:
        pool.release(connection)


def pipelined(
    client: Redis,
    fill: Callable[[Any], None],
    scripts: Sequence[str] = (),
    *,
    meanwhile: Callable[[], None] | None = None,
) -> list[Any]:
    """Send the commands `fill` queues (on a `Commands`), in one round trip, running
    `meanwhile()` (once) while their replies travel; the replies, in order (the first error
    reply is raised).

    A script sent by SHA to a Redis that lost it (restarted) fails without running: the
    `scripts` are then loaded and every command is sent again, once, so `fill`'s other commands
    must be safe to repeat."""
    for first_try in (True, False):
        commands = Commands()
        fill(commands)
        replies = _exchange(client, commands.queued, meanwhile)
        meanwhile = None  # once, even when the commands go out again
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


async def acounter_add(cache: BaseCache, key: str, delta: int, ttl_s: int) -> int:
    """`counter_add` from the event loop: one round trip on the cache's async Redis client (no
    worker thread), the same atomic script."""
    client = async_redis_client(cache)
    if client is None:
        # Other backends (local memory in development) answer at once, without I/O.
        return counter_add(cache, key, delta, ttl_s)
    counter = _async_scripts.get(_COUNTER_LUA)
    if counter is None:
        counter = _async_scripts[_COUNTER_LUA] = client.register_script(_COUNTER_LUA)
    return int(await counter(keys=[cache.make_key(key)], args=[delta, ttl_s], client=client))


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
