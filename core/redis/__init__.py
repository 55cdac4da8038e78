"""The one door to Redis: the process's shared pools (the cache backend, the asyncio clients
per event loop, a sync client per server), commands packed into one round trip, Lua scripts
sent by SHA, atomic counters, and the in-order outbox for writes nobody waits for.

`pool` holds the clients, `exchange` the packed round trips and scripts, `outbox` the
fire-and-forget writes; everything is re-exported here.
"""

from core.redis.exchange import (
    COUNTER_LUA,
    Commands,
    counter_add,
    pipelined,
    script,
    scripts_run,
)
from core.redis.outbox import RedisOutbox
from core.redis.pool import (
    SharedPoolRedisCache,
    async_redis,
    redis_client,
    redis_serializer,
    shared_clients,
    shared_redis,
)

__all__ = [
    "COUNTER_LUA",
    "Commands",
    "RedisOutbox",
    "SharedPoolRedisCache",
    "async_redis",
    "counter_add",
    "pipelined",
    "redis_client",
    "redis_serializer",
    "script",
    "scripts_run",
    "shared_clients",
    "shared_redis",
]
