"""Splitting a streamed body into protocol frames: server-sent events and NDJSON lines.

Each layer closes the generator it reads from (`aclosing`), so a consumer that stops early (an
adapter that has seen `[DONE]`, a client gone) closes the whole chain at once. Left to the
garbage collector, every generator still open at that point would be closed by asyncio's
finalizer hook instead: a wake-up of the event loop through its self-pipe and a task of its own
each, several per request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import NamedTuple, Protocol


class ByteStream(Protocol):
    """A response whose body arrives in pieces (`http_client.Response`)."""

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...


class SseEvent(NamedTuple):
    """One event (a named tuple: dozens are made per answer, and a frozen dataclass costs
    several times as much to build)."""

    event: str
    data: str


async def body_line_batches(response: ByteStream) -> AsyncGenerator[list[str], None]:
    """The body's lines, split on `\n`, `\r\n` and `\r` alike, without their endings: the
    lines each piece of the body completed, as one list per piece (never an empty one).

    Works on the raw bytes and decodes each whole line as UTF-8 (what SSE and NDJSON are):
    a multi-byte character never contains a line-ending byte, so no line is cut inside one.
    Cheaper than decoding each chunk as text first. A last line without an ending is still
    returned."""
    pending = b""
    chunks = response.aiter_bytes()
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            data = pending + chunk if pending else chunk
            lines = data.splitlines(keepends=True)
            last = lines[-1]
            # Unfinished, or ending in `\r` whose `\n` may come with the next chunk.
            pending = b"" if last.endswith(b"\n") else lines.pop()
            if lines:
                yield [line.rstrip(b"\r\n").decode("utf-8", errors="replace") for line in lines]
    finally:
        aclose = getattr(chunks, "aclose", None)  # a generator (the upstream client's is one)
        if aclose is not None:
            await aclose()
    if pending:
        yield [pending.rstrip(b"\r").decode("utf-8", errors="replace")]


async def body_lines(response: ByteStream) -> AsyncGenerator[str, None]:
    """`body_line_batches`, one line at a time."""
    async with aclosing(body_line_batches(response)) as batches:
        async for batch in batches:
            for line in batch:
                yield line


async def sse_event_batches(response: ByteStream) -> AsyncGenerator[list[SseEvent], None]:
    """Events as the SSE specification frames them: `event:` and `data:` fields up to a
    blank line, multi-line data joined with newlines, comments (`:`) skipped. An event cut
    off by the end of the body is dropped, as the specification says, so the adapter's
    terminator check sees the stream as incomplete.

    One list per piece of the body, of the events that piece completed (never an empty one):
    events that arrived together can be handled together. Splits the lines itself rather than
    reading `body_line_batches`: a streamed answer passes every token through here, and one
    generator less per token is a measurable part of a forwarded chunk's CPU."""
    parser = _SseParser()
    pending = b""
    chunks = response.aiter_bytes()
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            data = pending + chunk if pending else chunk
            lines = data.splitlines(keepends=True)
            # Unfinished, or ending in `\r` whose `\n` may come with the next chunk.
            pending = b"" if lines[-1].endswith(b"\n") else lines.pop()
            if lines and (events := parser.feed(lines)):
                yield events
    finally:
        aclose = getattr(chunks, "aclose", None)  # a generator (the upstream client's is one)
        if aclose is not None:
            await aclose()
    if pending and (events := parser.feed([pending])):
        yield events


class _SseParser:
    """The SSE field state across pieces of a body."""

    __slots__ = ("data_lines", "event_type")

    def __init__(self) -> None:
        self.event_type = ""
        self.data_lines: list[str] = []

    def feed(self, lines: list[bytes]) -> list[SseEvent]:
        events: list[SseEvent] = []
        for raw in lines:
            line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            if line == "":
                if self.data_lines:
                    data = "\n".join(self.data_lines)
                    events.append(SseEvent(self.event_type or "message", data))
                self.event_type, self.data_lines = "", []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                self.data_lines.append(value)
            elif field == "event":
                self.event_type = value
        return events


async def sse_events(response: ByteStream) -> AsyncGenerator[SseEvent, None]:
    """`sse_event_batches`, one event at a time."""
    async with aclosing(sse_event_batches(response)) as batches:
        async for batch in batches:
            for event in batch:
                yield event


async def ndjson_lines(response: ByteStream) -> AsyncGenerator[str, None]:
    """Non-empty lines of a newline-delimited JSON body. A last line without its newline is
    still returned: whether it is complete is for the JSON parser to say."""
    async with aclosing(body_lines(response)) as lines:
        async for line in lines:
            if line.strip():
                yield line
