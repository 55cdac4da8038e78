"""The guards built with their default store (`django.core.cache.cache`, a proxy) must reach
Redis itself, or limits and counters would silently be per process."""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.cache import cache, caches
from redis.exceptions import ConnectionError as RedisConnectionError

from core.redis import exchange as store
from core.redis import pipelined, redis_client
from core.threads import in_thread
from routing.guards.ratelimit import Limit, RateLimiter


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


def _ping(client: Any) -> list[Any]:
    return pipelined(client, lambda pipe: pipe.get("store-test:absent"))


@contextlib.contextmanager
def _checkouts(pool: Any) -> Iterator[list[Any]]:
    """The connections taken from `pool` meanwhile."""
    taken: list[Any] = []
    real_get = pool.get_connection

    def counting_get(*args: Any, **kwargs: Any) -> Any:
        connection = real_get(*args, **kwargs)
        taken.append(connection)
        return connection

    pool.get_connection = counting_get
    try:
        yield taken
    finally:
        del pool.get_connection


async def test_a_worker_thread_keeps_its_connection_and_other_threads_give_theirs_back() -> None:
    client = redis_client(cache)
    assert client is not None
    pool = client.connection_pool
    with _checkouts(pool) as taken:
        # A long-lived worker thread takes one connection and keeps it between exchanges...
        replies = await in_thread(lambda: [_ping(client) for _ in range(3)])()
        assert replies == [[None]] * 3
        assert len(taken) <= 1
        kept = len(taken)

        # ...while any other thread takes one per exchange and gives it back.
        in_use = set(pool._in_use_connections)
        with ThreadPoolExecutor(max_workers=1) as short_lived:
            for _ in range(2):
                assert short_lived.submit(_ping, client).result() == [None]
        assert len(taken) == kept + 2
        assert set(pool._in_use_connections) == in_use


async def test_a_kept_connection_that_breaks_is_dropped_and_the_next_exchange_works() -> None:
    client = redis_client(cache)
    assert client is not None

    def kill(connection: Any) -> None:
        """Redis closes `connection` (as a restart or its idle timeout would)."""
        host, port = connection._sock.getsockname()[:2]
        client.client_kill(f"{host}:{port}")
        select.select([connection._sock], [], [], 2)  # its end of stream has arrived

    def in_one_worker() -> tuple[list[Any], list[Any], bool]:
        _ping(client)
        kept = store._kept.connection[2]
        address = kept._sock.getsockname()
        kill(kept)
        after_close = _ping(client)  # found closed before use: replaced, nothing lost
        replaced = store._kept.connection[2]._sock.getsockname() != address
        # A connection that breaks after its commands went out fails that exchange (a command
        # that may have run is never sent twice) and is dropped.
        real_sound = store._sound
        setattr(store, "_sound", lambda connection: True)  # noqa: B010 (not polled this once)
        try:
            kill(store._kept.connection[2])
            with contextlib.suppress(RedisConnectionError):
                _ping(client)
                raise AssertionError("an exchange on a broken connection answered")
        finally:
            setattr(store, "_sound", real_sound)  # noqa: B010
        return after_close, _ping(client), replaced

    after_close, after_break, replaced = await in_thread(in_one_worker)()

    assert after_close == [None]
    assert replaced
    assert after_break == [None]


def test_a_connection_kept_before_a_fork_is_not_used_by_the_child() -> None:
    client = redis_client(cache)
    assert client is not None
    pool = client.connection_pool
    parents = pool.get_connection()
    store._kept.connection = (pool, -1, parents)  # kept by another process
    try:
        with _checkouts(pool) as taken:
            assert _ping(client) == [None]
        assert len(taken) == 1 and taken[0] is not parents
        assert getattr(store._kept, "connection", None) is None  # nor kept here: not a worker
    finally:
        pool.release(parents)
