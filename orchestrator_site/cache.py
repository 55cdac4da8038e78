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
import contextlib
import logging
import threading
import weakref
from functools import cached_property
from typing import Any

import redis.asyncio as aioredis
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_logger = logging.getLogger(__name__)

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
    """Django's client builds a new `redis.Redis` for every command, copying its ~170
    response callbacks each time (about 0.2 ms); `redis.Redis` is thread-safe, so one per
    connection pool serves every call."""

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


def shared_clients() -> dict[str, Any]:
    """The clients built so far (for tests and diagnostics)."""
    return dict(_clients)


Command = tuple[str | bytes | int | float, ...]
OUTBOX_TIMEOUT_S = 5


class _Outbox:
    """One event loop's queued commands, its connection and the task sending them."""

    def __init__(self) -> None:
        self.queue: list[Command] = []
        self.connection: Any = None
        self.sender: asyncio.Task[None] | None = None


class RedisOutbox:
    """Writes to Redis that nobody waits for, sent in order on one connection per event loop.

    `send` only queues; a task sends everything queued meanwhile in one write, reads the
    replies, and goes on while more is queued. On that path a command costs its encoding and
    its share of one write and one read, against ~0.4 ms of the event loop's time for a
    `redis.asyncio` call (its pool's locks, retries and bookkeeping per command). Commands are
    applied in the order they were sent, so a later command of a process never lands before an
    earlier one. A write that fails (Redis away, an error reply) is logged and dropped, never
    retried: the callers' writes must be ones a sweep can do without (see `routing.journal`).
    """

    def __init__(self, url: str, *, name: str = "redis outbox", spawn: Any = None) -> None:
        """`spawn(coroutine)` starts the sending task (default: the loop's `create_task`), so
        that its owner can wait for pending writes."""
        self.url = url
        self.name = name
        self._spawn = spawn
        self._outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = (
            weakref.WeakKeyDictionary()
        )

    def send(self, *commands: Command) -> None:
        loop = asyncio.get_running_loop()
        outbox = self._outboxes.get(loop)
        if outbox is None:
            outbox = self._outboxes[loop] = _Outbox()
        outbox.queue.extend(commands)
        if outbox.sender is None or outbox.sender.done():
            coroutine = self._send_queued(outbox)
            outbox.sender = self._spawn(coroutine) if self._spawn else loop.create_task(coroutine)

    async def _send_queued(self, outbox: _Outbox) -> None:
        while outbox.queue:
            commands, outbox.queue = outbox.queue, []
            try:
                # One deadline for the whole write and its replies: redis-py's own socket
                # timeout would arm a timer (and a task) per reply.
                async with asyncio.timeout(OUTBOX_TIMEOUT_S):
                    await self._write(outbox, commands)
            except (aioredis.RedisError, OSError, TimeoutError) as exc:
                _logger.warning(
                    "%s: %d commands lost, Redis unreachable: %s",
                    self.name,
                    len(commands),
                    exc or type(exc).__name__,
                )
                if outbox.connection is not None:
                    with contextlib.suppress(Exception):
                        await outbox.connection.disconnect(nowait=True)
                outbox.connection = None

    async def _write(self, outbox: _Outbox, commands: list[Command]) -> None:
        connection = outbox.connection
        if connection is None:
            connection = aioredis.ConnectionPool.from_url(self.url).make_connection()
            await connection.connect()
            outbox.connection = connection
        await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        errors = []
        for _ in commands:
            try:
                await connection.read_response(disable_decoding=True)
            except aioredis.ResponseError as exc:
                errors.append(str(exc))
        if errors:
            _logger.warning(
                "%s: %d commands refused by Redis: %s", self.name, len(errors), errors[0]
            )
