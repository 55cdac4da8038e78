"""Writes to Redis that nobody waits for, sent in order on one connection per event loop
(the request journal's stages and closes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

import redis.asyncio as aioredis

_logger = logging.getLogger(__name__)

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
    its share of one write and one read, a fraction of the event loop's time a `redis.asyncio`
    call takes (its pool's locks, retries and bookkeeping per command; figures in
    docs/benchmarks.md, "After cutting the CPU of each request"). Commands are
    applied in the order they were sent, so a later command of a process never lands before an
    earlier one. A write that fails (Redis away, an error reply) is logged and dropped, never
    retried: the callers' writes must be ones a sweep can do without (see
    `routing.pipeline.journal`).
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
