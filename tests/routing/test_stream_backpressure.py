"""A streamed `/v1` answer and a client that reads slowly: the process holds a bounded part of
the answer (backpressure reaches the upstream), what waited goes out coalesced once the client
catches up, a fast client gets every chunk in order, and a client that leaves is charged for
what the gateway had received.

The application is called in-process with a `send` that waits when told to, as uvicorn's does
while the client's socket buffer is full; the upstream is a real HTTP server in its own thread,
which waits for its socket to drain as a real one does."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from analytics.models import RequestLog
from analytics.pricing import Prices, cost_usd, usage_estimate
from orchestrator_site.asgi import application
from providers.adapters import http_client
from routing.pipeline.journal import journal_background_idle
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)

# About 3 MiB of text in 3,000 chunks: far more than the process may hold for one stream.
PIECES = [f"<{index:05d}{'x' * 1000}>" for index in range(3000)]
PROMPT = "Tell a long story"


class Client:
    """The ASGI `send` and `receive` of one request; `paused` holds `send` like a full socket."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.start: dict[str, Any] | None = None
        self.pieces: list[bytes] = []
        self.offered: list[bytes] = []  # what `send` was given, received or still waiting
        self.done = asyncio.Event()
        self.paused = asyncio.Event()
        self.paused.set()
        self.hang_up = asyncio.Event()
        self._body_sent = False

    async def receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.offered.append(message.get("body", b""))
        await self.paused.wait()
        if message["type"] == "http.response.start":
            self.start = message
            return
        self.pieces.append(message.get("body", b""))
        if not message.get("more_body", False):
            self.done.set()

    def content(self, offered: bool = False) -> str:
        """The text of the content chunks received (or offered), in order."""
        texts = []
        for event in b"".join(self.offered if offered else self.pieces).split(b"\n\n"):
            if event.startswith(b"data: {"):
                payload = json.loads(event[6:])
                for choice in payload.get("choices") or ():
                    texts.append(choice["delta"].get("content") or "")
        return "".join(texts)


def scope(key: str) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def request_body() -> bytes:
    messages = [{"role": "user", "content": PROMPT}]
    return json.dumps({"model": "auto", "messages": messages, "stream": True}).encode()


@pytest.fixture
def upstream_buffered(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The most bytes of an answer the upstream client held unread, per read (a spy)."""
    sizes: list[int] = []
    received = http_client._Connection.data_received

    def data_received(self: http_client._Connection, data: bytes) -> None:
        received(self, data)
        sizes.append(len(self.buffer))

    monkeypatch.setattr(http_client._Connection, "data_received", data_received)
    return sizes


async def until(check: Any, timeout_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_slow_client_holds_a_bounded_part_of_the_answer_and_gets_it_coalesced(
    upstream: UpstreamServer, upstream_buffered: list[int]
) -> None:
    await sync_to_async(gateway_registry)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(PIECES, usage=(9, 3000))))
    key = await sync_to_async(new_key)()
    client = Client(request_body())
    client.paused.clear()  # the client reads nothing for now
    handler = asyncio.create_task(application(scope(key), client.receive, client.send))

    # The upstream sends as fast as it may; after a second the stream has stopped moving.
    await until(lambda: upstream_buffered)
    await asyncio.sleep(1.0)
    held = len(upstream_buffered)
    await asyncio.sleep(0.5)
    assert len(upstream_buffered) == held, "the upstream client kept reading"
    # Never more than the pause threshold plus one read of the socket held unread, and the
    # upstream was held back long before its answer's end.
    assert max(upstream_buffered) <= 32 * 1024 + 256 * 1024
    assert sum(1 for size in upstream_buffered if size) < len(PIECES) // 4
    assert client.pieces == []  # the response start is the one message waiting in `send`

    client.paused.set()
    await asyncio.wait_for(client.done.wait(), 30)
    await handler

    assert client.start is not None and client.start["status"] == 200
    assert client.content() == "".join(PIECES)
    assert b"".join(client.pieces).endswith(b"data: [DONE]\n\n")
    # What had waited went out joined: fewer messages than the upstream's chunks.
    assert len(client.pieces) < len(PIECES)
    await journal_background_idle()
    (row,) = await sync_to_async(wait_rows)(1)
    assert (row.status, row.output_tokens) == ("success", 3000)


async def test_a_fast_client_sees_every_chunk_in_order(upstream: UpstreamServer) -> None:
    await sync_to_async(gateway_registry)(upstream)
    pieces = [f"<{index:03d}>" for index in range(200)]
    reply = Reply.sse(openai_sse(pieces, usage=(9, 200))).but(chunk_delay_s=0.002)
    upstream.reply("POST", chat_path("alpha"), reply)
    key = await sync_to_async(new_key)()
    client = Client(request_body())

    await asyncio.wait_for(application(scope(key), client.receive, client.send), 30)

    assert client.content() == "".join(pieces)
    events = [e for e in b"".join(client.pieces).split(b"\n\n") if b'"content":"<' in e]
    # Paced a few milliseconds apart, nearly every chunk arrives and goes out on its own.
    assert len(events) > len(pieces) // 2
    await journal_background_idle()
    (row,) = await sync_to_async(wait_rows)(1)
    assert (row.status, row.output_tokens) == ("success", 200)


async def test_a_slow_client_that_leaves_is_charged_for_what_the_gateway_received(
    upstream: UpstreamServer,
) -> None:
    await sync_to_async(gateway_registry)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(PIECES, usage=None)))
    key = await sync_to_async(new_key)()
    client = Client(request_body())
    handler = asyncio.create_task(application(scope(key), client.receive, client.send))
    await until(lambda: len(client.pieces) >= 3)
    client.paused.clear()  # the client falls behind, then leaves
    await asyncio.sleep(0.5)
    client.hang_up.set()
    await asyncio.wait_for(handler, 30)
    client.paused.set()

    await journal_background_idle()
    (row,) = await sync_to_async(wait_rows)(1, status="cancelled")
    # The text the gateway took from the upstream is what it had handed to `send` (the
    # stream was not read past the piece still waiting there), counted locally and priced.
    received = client.content(offered=True)
    assert received and len(received) < len("".join(PIECES))
    counted = usage_estimate(prompt=f"user: {PROMPT}", completion=received)
    assert (row.error_code, row.cost_state) == ("CANCELLED", "estimated")
    assert (row.input_tokens, row.output_tokens) == (counted.input, counted.output)
    assert row.cost_usd == cost_usd(counted, Prices(Decimal("1.25"), Decimal("10")))
    assert await sync_to_async(RequestLog.objects.count)() == 1
