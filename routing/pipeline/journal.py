"""The request journal: no request goes unrecorded, even if its process dies.

The request log row is written after the last byte of the answer has left, so the client never
waits on Postgres. Between the answer and the row, a crash would lose the row; the journal
closes that gap. Every request gets an entry in Redis before its first event (sent with the
guards' reads, in their round trip; a request refused before them sends it on its own), the
entry is updated with the terminal outcome when it is known, and it is removed once the row is
committed. `journal_sweep` (Celery beat) turns entries older than the grace
period that still have no row into rows: the staged outcome if there was one, else an error
row saying the process ended first. A row that exists already is never written twice
(`request_id` is unique and is checked first).

Without Redis (the zero-setup default: one process, SQLite) the journal lives in that
process's memory, which covers cancelled background writes but not a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import orjson
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection

from analytics.models import RequestLog
from analytics.outcome import RequestOutcome
from analytics.services import request_record
from core.dependencies import REDIS_AWAY
from core.redis import Commands, RedisOutbox, shared_redis
from core.threads import in_thread
from routing.metrics import request_observe
from routing.pipeline.events import Event, Failed, Finished, GatewayRequest
from routing.telemetry import stream_tracked

logger = logging.getLogger(__name__)

# Under the cache's key prefix (CACHE_KEY_PREFIX, read from the environment as the cache's own
# settings are), so installs sharing one Redis never sweep each other's entries.
KEY_PREFIX = os.environ.get("CACHE_KEY_PREFIX", "orch")
INDEX_KEY = f"{KEY_PREFIX}:journal"
ENTRY_PREFIX = f"{KEY_PREFIX}:journal:"
# Entries the sweep could not write, with the reason, kept for an operator (never retried).
QUARANTINE_KEY = f"{KEY_PREFIX}:journal-quarantine"
DEFAULT_GRACE_S = 900

# Closed entries wait this long to be dropped together (one round trip for many requests).
CLOSE_BATCH_S = 0.05
CLOSE_BATCH_MAX = 500

_memory: dict[str, dict[str, str]] = {}
_memory_quarantine: dict[str, dict[str, Any]] = {}
_background: set[asyncio.Task[None]] = set()
_closing: list[str] = []
_close_flusher: asyncio.Task[None] | None = None
_outboxes: dict[str, RedisOutbox] = {}


def grace_s() -> int:
    return int(getattr(settings, "ORCHESTRATOR_JOURNAL_GRACE_S", DEFAULT_GRACE_S))


def _outbox() -> RedisOutbox | None:
    """The journal's writes that nobody waits for (stages, closes), in order, per Redis."""
    url = settings.REDIS_URL
    if not url:
        return None
    outbox = _outboxes.get(url)
    if outbox is None:
        outbox = _outboxes[url] = RedisOutbox(url, name="journal", spawn=_spawn)
    return outbox


def _client() -> redis.Redis | None:
    """The process's shared sync client for the journal's Redis (replies are bytes)."""
    url = settings.REDIS_URL
    if not url:
        return None
    return shared_redis(url, **getattr(settings, "REDIS_TIMEOUTS", {}))


def _texts(stored: dict[bytes, bytes]) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in stored.items()}


def _opening(request: GatewayRequest) -> dict[str, str]:
    caller = request.caller
    return {
        "created_at": datetime.now(UTC).isoformat(),
        "entry_point": request.entry_point,
        "user_id": "" if caller.user_id is None else str(caller.user_id),
        "api_key_id": "" if caller.api_key_id is None else str(caller.api_key_id),
        "session_id": request.session_id,
        # Tags hold no comma (routing/request_metadata.py): joined, they read back whole.
        "end_user": request.metadata.end_user,
        "project": request.metadata.project,
        "tags": ",".join(request.metadata.tags),
        "conversation_id": (
            "" if request.conversation_id is None else str(request.conversation_id)
        ),
        "requested_model": request.model or "",
        "task_type": request.task_type or "",
        "parent_id": "" if request.parent_request_id is None else str(request.parent_request_id),
    }


def _terminal(event: Finished | Failed) -> dict[str, str]:
    if isinstance(event, Failed):
        return {"outcome": orjson.dumps({"failed": event.code, "partial": event.partial}).decode()}
    return {
        "outcome": orjson.dumps(
            {
                "model_id": event.model_id,
                "model_name": event.model_ref.partition(":")[2],
                "provider_name": event.provider_name,
                "locality": event.locality,
                "input_tokens": event.usage.input,
                "output_tokens": event.usage.output,
                "cached_tokens": event.usage.cached,
                "cost_usd": None if event.cost_usd is None else str(event.cost_usd),
                "cost_state": event.cost_state,
                "baseline_cost_usd": (
                    None if event.baseline_cost_usd is None else str(event.baseline_cost_usd)
                ),
                "latency_ms": event.latency_ms,
                "time_to_first_token_ms": event.time_to_first_token_ms,
                "attempts": event.attempts,
                "fallbacks": event.fallbacks,
                "cache_hit": event.cached,
            }
        ).decode()
    }


def journal_open_commands(pipe: Any, request: GatewayRequest) -> None:
    """Queue the opening of `request`'s entry on `pipe`, a sync redis-py pipeline to the
    journal's Redis, so that it goes out with the request's other reads in one round trip
    (`chat_stream` sends it with the guards'). Idempotent: sent twice, it writes the same."""
    rid = str(request.request_id)
    pipe.hset(ENTRY_PREFIX + rid, mapping=_opening(request))
    pipe.zadd(INDEX_KEY, {rid: time.time() + grace_s()})


def journal_open(*, request: GatewayRequest) -> None:
    """Open `request`'s entry on its own (blocking: call it from a worker thread)."""
    client = _client()
    if client is None:
        rid = str(request.request_id)
        _memory[rid] = {**_opening(request), "due": str(time.time() + grace_s())}
        return
    try:
        with client.pipeline(transaction=False) as pipe:
            journal_open_commands(pipe, request)
            pipe.execute()
    except REDIS_AWAY as exc:
        # Fails open (docs/guards.md): the request runs and its row is written as usual; only
        # the recovery of a process that dies mid-request is lost while Redis is away.
        logger.warning(
            "journal entry of %s not opened, Redis unreachable: %s", request.request_id, exc
        )


def journal_stage(*, request_id: uuid.UUID, event: Finished | Failed) -> None:
    """Stage the terminal outcome on the entry. Never waits: on Redis the write is queued on
    the journal's outbox, which sends it ahead of the entry's close (one connection, in order:
    a stage can never land after its close and leave an entry behind)."""
    _journal_write(request_id, _terminal(event))


def _journal_write(request_id: uuid.UUID, fields: dict[str, str]) -> None:
    rid = str(request_id)
    outbox = _outbox()
    if outbox is None:
        _memory.get(rid, {}).update(fields)
        return
    commands = Commands()
    commands.hset(ENTRY_PREFIX + rid, mapping=fields)
    outbox.send(*commands.queued)


async def journal_close(*, request_id: uuid.UUID) -> None:
    """Drop the entry of a request whose row is committed. On Redis the entries closed within
    CLOSE_BATCH_S go in one write; an entry whose close is lost with its process is only swept
    later, and the sweep finds its row and writes nothing."""
    rid = str(request_id)
    outbox = _outbox()
    if outbox is None:
        _memory.pop(rid, None)
        return
    _closing.append(rid)
    global _close_flusher
    flusher = _close_flusher
    # One flusher per process; a finished one, or one of an event loop that is gone (tests
    # run one loop each), is replaced.
    if flusher is None or flusher.done() or flusher.get_loop() is not asyncio.get_running_loop():
        _close_flusher = _spawn(_closes_flush(outbox))


async def _closes_flush(outbox: RedisOutbox) -> None:
    await asyncio.sleep(CLOSE_BATCH_S)
    while _closing:
        batch = _closing[:CLOSE_BATCH_MAX]
        del _closing[: len(batch)]
        # Their rows are committed: if these are lost, the sweep finds the rows and only
        # drops the entries.
        outbox.send(("ZREM", INDEX_KEY, *batch), ("DEL", *(ENTRY_PREFIX + rid for rid in batch)))


def _int_or_none(value: str) -> int | None:
    return int(value) if value else None


def _recovered_outcome(rid: str, entry: dict[str, str]) -> RequestOutcome:
    common: dict[str, Any] = {
        "request_id": uuid.UUID(rid),
        "created_at": datetime.fromisoformat(entry["created_at"]),
        "entry_point": entry["entry_point"],
        "user_id": _int_or_none(entry.get("user_id", "")),
        "api_key_id": _int_or_none(entry.get("api_key_id", "")),
        "conversation_id": _int_or_none(entry.get("conversation_id", "")),
        "session_id": entry.get("session_id", ""),
        "end_user": entry.get("end_user", ""),
        "project": entry.get("project", ""),
        "tags": tuple(tag for tag in entry.get("tags", "").split(",") if tag),
        "requested_model": entry.get("requested_model", ""),
        "task_type": entry.get("task_type", ""),
        "parent_id": uuid.UUID(entry["parent_id"]) if entry.get("parent_id") else None,
    }
    staged = json.loads(entry["outcome"]) if entry.get("outcome") else None
    trace = {"journal": "recovered: the process ended before the request was recorded"}
    if staged is None or "failed" in staged:
        partial = bool(staged and staged.get("partial"))
        status = RequestLog.Status.PARTIAL if partial else RequestLog.Status.ERROR
        if staged and staged.get("cancelled"):
            status = RequestLog.Status.CANCELLED
        return RequestOutcome(
            **common,
            status=status,
            error_code=staged["failed"] if staged else "SERVICE_UNAVAILABLE",
            cost_state=RequestLog.CostState.NONE,
            decision_trace=trace,
        )
    return RequestOutcome(
        **common,
        status=RequestLog.Status.SUCCESS,
        model_id=staged["model_id"],
        model_name=staged["model_name"],
        provider_name=staged["provider_name"],
        locality=staged["locality"],
        input_tokens=staged["input_tokens"],
        output_tokens=staged["output_tokens"],
        cached_tokens=staged["cached_tokens"],
        cost_usd=None if staged["cost_usd"] is None else Decimal(staged["cost_usd"]),
        cost_state=staged["cost_state"],
        baseline_cost_usd=(
            None if staged["baseline_cost_usd"] is None else Decimal(staged["baseline_cost_usd"])
        ),
        latency_ms=staged["latency_ms"],
        time_to_first_token_ms=staged["time_to_first_token_ms"],
        attempts=staged["attempts"],
        fallbacks=staged["fallbacks"],
        cache_hit=staged["cache_hit"],
        decision_trace=trace,
    )


def _record_if_missing(rid: str, entry: dict[str, str]) -> bool:
    if RequestLog.objects.filter(request_id=rid).exists():
        return False
    outcome = _recovered_outcome(rid, entry)
    try:
        request_record(outcome=outcome)
    except IntegrityError:
        if RequestLog.objects.filter(request_id=rid).exists():
            return False  # the request's own write landed meanwhile
        # The model row was deleted since; the name stays on the row.
        request_record(outcome=replace(outcome, model_id=None))
    return True


# A database that cannot be reached fails every entry alike; quarantining them would lose rows
# the next sweep can write.
DATABASE_AWAY = (OperationalError, InterfaceError)


def journal_sweep(*, now: float | None = None) -> int:
    """Write the rows of journal entries past their grace period; returns how many."""
    cutoff = time.time() if now is None else now
    written = 0
    client = _client()
    if client is None:
        for rid, entry in list(_memory.items()):
            if float(entry["due"]) <= cutoff:
                try:
                    written += _record_if_missing(rid, entry)
                except DATABASE_AWAY:
                    raise  # not the entry's fault: every entry left waits for the next sweep
                except Exception as exc:  # one bad entry must not stop the others' rows
                    reason = f"{type(exc).__name__}: {exc}"
                    logger.error("journal entry %s quarantined: %s", rid, reason)
                    _memory_quarantine[rid] = {"reason": reason, "entry": entry}
                _memory.pop(rid, None)
        return written
    due = cast(list[bytes], client.zrangebyscore(INDEX_KEY, "-inf", cutoff))
    for rid in (member.decode() for member in due):
        stored = _texts(cast(dict[bytes, bytes], client.hgetall(ENTRY_PREFIX + rid)))
        if stored:
            try:
                written += _record_if_missing(rid, stored)
            except DATABASE_AWAY:
                raise  # not the entry's fault: every entry left waits for the next sweep
            except Exception as exc:  # one bad entry must not stop the others' rows
                _quarantine(client, rid, stored, exc)
        client.zrem(INDEX_KEY, rid)
        client.delete(ENTRY_PREFIX + rid)
    return written


def _quarantine(client: redis.Redis, rid: str, entry: dict[str, str], exc: Exception) -> None:
    """Keep an entry whose row cannot be written aside, with the reason, and go on."""
    connection.close_if_unusable_or_obsolete()
    reason = f"{type(exc).__name__}: {exc}"
    logger.error("journal entry %s quarantined, its row cannot be written: %s", rid, reason)
    client.hset(QUARANTINE_KEY, rid, orjson.dumps({"reason": reason, "entry": entry}).decode())


def journal_quarantined() -> dict[str, dict[str, Any]]:
    """The entries the sweep could not write: request id -> {"reason", "entry"}."""
    client = _client()
    if client is None:
        return dict(_memory_quarantine)
    stored = _texts(cast(dict[bytes, bytes], client.hgetall(QUARANTINE_KEY)))
    return {rid: orjson.loads(value) for rid, value in stored.items()}


def journal_pending() -> int:
    client = _client()
    if client is None:
        return len(_memory)
    return int(client.zcard(INDEX_KEY))


async def journaled(
    stream: AsyncGenerator[Event, None], *, request: GatewayRequest
) -> AsyncGenerator[Event, None]:
    """The events of `stream` (a `chat_stream`, which opens the entry with the guards' reads,
    before any event), journaled. After the terminal event the rest of the stream (where the
    request log row is written) runs in a background task, so neither the client nor a client
    disconnect waits on or cancels the write. A consumer that stops early (client disconnect)
    closes `stream` in the background and marks the entry cancelled.

    Every door answers through here, so this is where an answer counts as an active stream
    (telemetry), from its first event until the consumer is done with it."""
    rid = request.request_id
    handed_off = False
    try:
        async with stream_tracked():
            async for event in stream:
                if isinstance(event, Finished | Failed):
                    # Staged while the answer goes out (queued: nothing waits for it).
                    journal_stage(request_id=rid, event=event)
                    handed_off = True
                    _spawn(_drain(stream, rid))
                    yield event
                    return
                yield event
            handed_off = True
            await journal_close(request_id=rid)
    finally:
        if not handed_off:
            _spawn(_abandoned(stream, rid))


def _spawn(coroutine: Any) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _drain(stream: AsyncGenerator[Event, None], request_id: uuid.UUID) -> None:
    async for _ in stream:
        pass
    await journal_close(request_id=request_id)


async def _abandoned(stream: AsyncGenerator[Event, None], request_id: uuid.UUID) -> None:
    await stream.aclose()
    _journal_write(request_id, {"outcome": json.dumps({"failed": "CANCELLED", "cancelled": True})})
    if await sync_to_async(_row_exists, thread_sensitive=False)(request_id):
        await journal_close(request_id=request_id)


def _row_exists(request_id: uuid.UUID) -> bool:
    """Runs after its request has finished, where Django no longer returns connections to the
    pool for us; an unreturned pooled connection per disconnect would drain the pool."""
    try:
        return RequestLog.objects.filter(request_id=request_id).exists()
    finally:
        connection.close()


async def journal_background_idle(timeout_s: float = 10) -> None:
    """Wait for this process's pending background writes (graceful shutdown, tests)."""
    deadline = time.monotonic() + timeout_s
    # A write that finishes may start another (a row, then the batched close of its entry).
    while _background and (left := deadline - time.monotonic()) > 0:
        await asyncio.wait(list(_background), timeout=left)


async def journal_loop_idle(timeout_s: float = 5) -> None:
    """Wait for the background writes started on this event loop (the batched close of an
    entry, then its send). For a caller whose loop ends with its request, a batch item run by
    `async_to_sync`: a write still pending when the loop ends is lost with it, and its entry
    would wait for the sweep."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        mine = [task for task in _background if task.get_loop() is loop and not task.done()]
        if not mine:
            return
        await asyncio.wait(mine, timeout=left)


async def request_refusal_record(
    *, request: GatewayRequest, status: str, error_code: str, message: str
) -> None:
    """The log row of a request refused by its entry point before it could run (for example
    a malformed body from an authenticated caller)."""
    caller = request.caller
    outcome = RequestOutcome(
        request_id=request.request_id,
        created_at=datetime.now(UTC),
        entry_point=request.entry_point,
        status=status,
        error_code=error_code,
        cost_state=RequestLog.CostState.NONE,
        user_id=caller.user_id,
        api_key_id=caller.api_key_id,
        session_id=request.session_id,
        end_user=request.metadata.end_user,
        project=request.metadata.project,
        tags=request.metadata.tags,
        requested_model=request.model or "",
        decision_trace={"refused": message[:500]},
    )
    request_observe(outcome)
    await in_thread(request_record)(outcome=outcome)
