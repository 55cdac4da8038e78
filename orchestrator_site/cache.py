"""A Redis cache backend whose connection pool is shared by the whole process.

Django keeps one cache object per thread and per async context, and each builds its own
`RedisCacheClient` with its own connection pool. Under ASGI every request is a new context, so
every request opened fresh Redis connections. Here every cache object with the same servers and
options reuses one client, and with it one pool; redis-py's pools are thread-safe.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_clients: dict[str, RedisCacheClient] = {}
_lock = threading.Lock()


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
                client = _clients[key] = RedisCacheClient(servers, **options)
            return client


def shared_clients() -> dict[str, Any]:
    """The clients built so far (for tests and diagnostics)."""
    return dict(_clients)
