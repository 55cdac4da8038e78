"""`RedisOutbox`: writes nobody waits for, applied in order, failures logged and dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.conf import settings

from core.redis import RedisOutbox, async_redis

KEY = "outbox-test"


def redis() -> Any:
    assert settings.REDIS_URL
    return async_redis(settings.REDIS_URL)


async def idle(outbox: RedisOutbox) -> None:
    for box in list(outbox._outboxes.values()):
        while box.sender is not None and not box.sender.done():
            await box.sender


@pytest.fixture
async def clean() -> AsyncIterator[None]:
    await redis().delete(KEY, KEY + ":list")
    yield
    await redis().delete(KEY, KEY + ":list")


async def test_sent_commands_are_applied_in_the_order_they_were_sent(clean) -> None:
    assert settings.REDIS_URL
    outbox = RedisOutbox(settings.REDIS_URL)

    # Queued in one turn of the loop: one write. Then more while that write is out.
    outbox.send(("RPUSH", KEY + ":list", "a"), ("RPUSH", KEY + ":list", "b"))
    outbox.send(("HSET", KEY, "field", "1"))
    await asyncio.sleep(0)
    outbox.send(("RPUSH", KEY + ":list", "c"), ("DEL", KEY))
    outbox.send(("HSET", KEY, "field", "2", "other", "x"))
    await idle(outbox)

    assert await redis().lrange(KEY + ":list", 0, -1) == [b"a", b"b", b"c"]
    assert await redis().hgetall(KEY) == {b"field": b"2", b"other": b"x"}
    # One connection, opened once and kept for the next writes.
    box = outbox._outboxes[asyncio.get_running_loop()]
    first = box.connection
    outbox.send(("RPUSH", KEY + ":list", "d"))
    await idle(outbox)
    assert box.connection is first
    assert await redis().llen(KEY + ":list") == 4


async def test_a_refused_command_is_logged_and_the_others_still_apply(clean, caplog) -> None:
    assert settings.REDIS_URL
    outbox = RedisOutbox(settings.REDIS_URL, name="test outbox")
    await redis().set(KEY, "a string")

    with caplog.at_level(logging.WARNING, logger="core.redis.outbox"):
        # HSET on a string key is refused (WRONGTYPE); the RPUSH after it still applies.
        outbox.send(("HSET", KEY, "f", "v"), ("RPUSH", KEY + ":list", "after"))
        await idle(outbox)

    assert [r.getMessage().split(":")[:2] for r in caplog.records] == [
        ["test outbox", " 1 commands refused by Redis"]
    ]
    assert await redis().get(KEY) == b"a string"
    assert await redis().lrange(KEY + ":list", 0, -1) == [b"after"]


async def test_writes_to_an_unreachable_redis_are_logged_and_dropped(caplog) -> None:
    outbox = RedisOutbox("redis://127.0.0.1:1/0", name="test outbox")

    with caplog.at_level(logging.WARNING, logger="core.redis.outbox"):
        outbox.send(("SET", "a", "1"), ("SET", "b", "2"))
        await idle(outbox)
        outbox.send(("SET", "c", "3"))
        await idle(outbox)

    assert [r.getMessage().split(":")[:2] for r in caplog.records] == [
        ["test outbox", " 2 commands lost, Redis unreachable"],
        ["test outbox", " 1 commands lost, Redis unreachable"],
    ]
    box = outbox._outboxes[asyncio.get_running_loop()]
    assert box.queue == []
    assert box.connection is None
