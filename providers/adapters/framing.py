"""Splitting a streamed body into protocol frames: server-sent events and NDJSON lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Events as the SSE specification frames them: `event:` and `data:` fields up to a
    blank line, multi-line data joined with newlines, comments (`:`) skipped. An event cut
    off by the end of the body is dropped, as the specification says, so the adapter's
    terminator check sees the stream as incomplete."""
    event_type = ""
    data_lines: list[str] = []
    # aiter_lines splits on \n, \r\n and \r alike; some providers end lines with \r\n.
    async for line in response.aiter_lines():
        if line == "":
            if data_lines:
                yield SseEvent(event=event_type or "message", data="\n".join(data_lines))
            event_type, data_lines = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event_type = value
        elif field == "data":
            data_lines.append(value)


async def ndjson_lines(response: httpx.Response) -> AsyncIterator[str]:
    """Non-empty lines of a newline-delimited JSON body. A last line without its newline is
    still returned: whether it is complete is for the JSON parser to say."""
    async for line in response.aiter_lines():
        if line.strip():
            yield line
