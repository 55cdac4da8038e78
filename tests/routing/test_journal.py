"""The request journal's Redis entries: opened before any event, closed in batches."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError

from analytics.models import RequestLog
from core.redis import RedisOutbox, async_redis
from routing.pipeline import journal
from routing.pipeline.events import GatewayRequest, Message
from routing.pipeline.journal import (
    ENTRY_PREFIX,
    INDEX_KEY,
    journal_background_idle,
    journal_close,
    journal_open,
    journal_pending,
    journaled,
)
from routing.services import chat_stream


def redis() -> Any:
    assert settings.REDIS_URL
    return async_redis(settings.REDIS_URL)


def gateway_request() -> GatewayRequest:
    return GatewayRequest(messages=(Message(role="user", content="hi"),), entry_point="openai")


@pytest.fixture
async def redis_journal() -> AsyncIterator[None]:
    client = redis()
    await client.delete(INDEX_KEY)
    yield
    await client.delete(INDEX_KEY)


async def entry_exists(rid: str) -> bool:
    return bool(await redis().exists(ENTRY_PREFIX + rid))


async def test_closes_within_the_batch_window_go_out_together(redis_journal, monkeypatch):
    monkeypatch.setattr(journal, "_closing", [])  # closes left by earlier tests' loops
    requests = [gateway_request() for _ in range(3)]
    for request in requests:
        await sync_to_async(journal_open)(request=request)
    assert await sync_to_async(journal_pending)() == 3
    sent: list[int] = []
    real_flush = journal._closes_flush

    async def counting_flush(client: Any) -> None:
        sent.append(len(journal._closing))
        await real_flush(client)

    monkeypatch.setattr(journal, "_closes_flush", counting_flush)

    for request in requests:
        await journal_close(request_id=request.request_id)
    # Not yet dropped: the batch waits CLOSE_BATCH_S for more.
    assert await entry_exists(str(requests[0].request_id)) is True
    await journal_background_idle()

    assert sent == [3]  # one flush, begun by the first close, took all three
    assert await sync_to_async(journal_pending)() == 0
    assert [await entry_exists(str(r.request_id)) for r in requests] == [False, False, False]


@pytest.mark.django_db(transaction=True)
async def test_the_entry_is_written_before_the_first_event_reaches_the_consumer(redis_journal):
    request = gateway_request()  # no model is configured: routing finds none
    seen: list[tuple[str, bool]] = []

    async for event in journaled(chat_stream(request), request=request):
        seen.append((type(event).__name__, await entry_exists(str(request.request_id))))

    assert seen == [("Failed", True)]
    await journal_background_idle()
    assert await sync_to_async(journal_pending)() == 0
    row = await sync_to_async(RequestLog.objects.get)(request_id=request.request_id)
    assert (row.status, row.error_code) == ("error", "MODEL_UNAVAILABLE")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("text", "model"), [("  ", None), ("hi", "no-such-model")], ids=["no text", "unknown model"]
)
async def test_a_request_refused_before_routing_is_journaled_before_its_event_too(
    redis_journal, text: str, model: str | None
):
    request = GatewayRequest(
        messages=(Message(role="user", content=text),), entry_point="openai", model=model
    )
    seen: list[tuple[str, bool]] = []

    async for event in journaled(chat_stream(request), request=request):
        seen.append((type(event).__name__, await entry_exists(str(request.request_id))))

    assert seen == [("Failed", True)]
    await journal_background_idle()
    row = await sync_to_async(RequestLog.objects.get)(request_id=request.request_id)
    assert (row.status, row.error_code) == ("invalid", "INVALID_REQUEST")
    assert await entry_exists(str(request.request_id)) is False  # closed with its row
    assert await sync_to_async(journal_pending)() == 0


async def test_a_close_batch_that_cannot_reach_redis_is_left_to_the_sweep(monkeypatch, caplog):
    monkeypatch.setattr(journal, "_closing", ["a", "b"])
    unreachable = RedisOutbox("redis://127.0.0.1:1/0", name="journal")

    with caplog.at_level(logging.WARNING, logger="core.redis.outbox"):
        await journal._closes_flush(unreachable)
        await _outbox_idle(unreachable)

    assert journal._closing == []
    # One write of two commands (ZREM, DEL), lost and not retried.
    assert [r.getMessage().split(":")[:2] for r in caplog.records] == [
        ["journal", " 2 commands lost, Redis unreachable"]
    ]


async def _outbox_idle(outbox: RedisOutbox) -> None:
    for box in outbox._outboxes.values():
        if box.sender is not None:
            await box.sender


@pytest.fixture
async def clean_quarantine() -> AsyncIterator[None]:
    await redis().delete(journal.QUARANTINE_KEY)
    yield
    await redis().delete(journal.QUARANTINE_KEY)


@pytest.mark.django_db(transaction=True)
async def test_a_poisoned_entry_is_quarantined_and_every_other_row_written(
    redis_journal, clean_quarantine
):
    requests = [gateway_request() for _ in range(3)]
    for request in requests:
        await sync_to_async(journal_open)(request=request)
    poisoned = str(requests[1].request_id)
    # A NUL byte: Postgres refuses it in a text column, so this entry's row cannot be written.
    await redis().hset(ENTRY_PREFIX + poisoned, "session_id", "bad\x00id")
    later = time.time() + journal.grace_s() + 1

    written = await sync_to_async(journal.journal_sweep)(now=later)

    assert written == 2
    logged = await sync_to_async(
        lambda: set(RequestLog.objects.values_list("request_id", flat=True))
    )()
    assert logged == {requests[0].request_id, requests[2].request_id}
    quarantined = await sync_to_async(journal.journal_quarantined)()
    assert list(quarantined) == [poisoned]
    assert quarantined[poisoned]["entry"]["session_id"] == "bad\x00id"
    assert "NUL" in quarantined[poisoned]["reason"]
    assert await sync_to_async(journal_pending)() == 0
    assert await sync_to_async(journal.journal_sweep)(now=later) == 0


def test_journal_keys_live_under_the_cache_key_prefix():
    code = (
        "import django; django.setup(); from routing.pipeline import journal; "
        "print(journal.INDEX_KEY, journal.ENTRY_PREFIX, journal.QUARANTINE_KEY)"
    )
    env = {**os.environ, "CACHE_KEY_PREFIX": "install-b"}
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()

    assert shown == ["install-b:journal", "install-b:journal:", "install-b:journal-quarantine"]
    assert f"{settings.CACHES['default']['KEY_PREFIX']}:journal" == INDEX_KEY


@pytest.mark.django_db(transaction=True)
async def test_a_database_outage_quarantines_nothing_and_the_next_sweep_writes_the_rows(
    redis_journal, clean_quarantine, monkeypatch
):
    requests = [gateway_request() for _ in range(2)]
    for request in requests:
        await sync_to_async(journal_open)(request=request)
    later = time.time() + journal.grace_s() + 1
    real_record = journal.request_record

    def database_away(**kwargs: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(journal, "request_record", database_away)
    with pytest.raises(OperationalError):
        await sync_to_async(journal.journal_sweep)(now=later)
    monkeypatch.setattr(journal, "request_record", real_record)

    assert await sync_to_async(journal.journal_quarantined)() == {}
    assert await sync_to_async(journal_pending)() == 2
    assert await sync_to_async(journal.journal_sweep)(now=later) == 2
    assert await sync_to_async(journal_pending)() == 0
