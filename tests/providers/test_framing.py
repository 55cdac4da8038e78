"""Line and event framing of streamed bodies, whatever the chunk boundaries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from providers.adapters.framing import (
    SseEvent,
    body_line_batches,
    body_lines,
    ndjson_lines,
    sse_event_batches,
    sse_events,
)


def streamed(*chunks: bytes) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return httpx.Response(200, content=body())


async def lines_of(*chunks: bytes) -> list[str]:
    return [line async for line in body_lines(streamed(*chunks))]


async def test_every_line_ending_splits_lines_across_any_chunk_boundary() -> None:
    assert await lines_of(b"a\nb\r\nc\rd") == ["a", "b", "c", "d"]
    # A \r at the end of a chunk whose \n arrives with the next one is one ending, not two.
    assert await lines_of(b"a\r", b"\nb\r", b"\r\n", b"c") == ["a", "b", "", "c"]
    # A bare \r ending a chunk ends its line when the next chunk starts with text.
    assert await lines_of(b"a\r", b"b\n") == ["a", "b"]
    assert await lines_of(b"par", b"tial", b" line\n", b"", b"tail") == ["partial line", "tail"]
    assert await lines_of(b"\r") == [""]
    assert await lines_of() == []


async def test_a_character_split_between_chunks_is_decoded_whole() -> None:
    assert await lines_of(b"caf", b"\xc3", b"\xa9 \xe2\x82", b"\xac\n") == ["café €"]


async def test_sse_events_survive_any_chunking() -> None:
    body = (
        b': comment\r\nevent: delta\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata: second\n\ndata: cut off'
    )
    whole = [e async for e in sse_events(streamed(body))]
    bytewise = [e async for e in sse_events(streamed(*(body[i : i + 1] for i in range(len(body)))))]

    assert (
        whole
        == bytewise
        == [
            SseEvent(event="delta", data='{"a":\n1}'),
            SseEvent(event="message", data="second"),
        ]
    )


async def test_batches_hold_what_each_piece_of_the_body_completed() -> None:
    pieces = (b"data: 1\n\ndata: 2\n\nda", b"ta: 3\n", b"\n", b": only a comment\n", b"data: 4\n\n")

    lines = [batch async for batch in body_line_batches(streamed(*pieces))]
    events = [batch async for batch in sse_event_batches(streamed(*pieces))]

    assert lines == [
        ["data: 1", "", "data: 2", ""],
        ["data: 3"],
        [""],
        [": only a comment"],
        ["data: 4", ""],
    ]
    # A piece that completes no event yields no batch.
    assert events == [
        [SseEvent("message", "1"), SseEvent("message", "2")],
        [SseEvent("message", "3")],
        [SseEvent("message", "4")],
    ]


@pytest.mark.parametrize("size", [1, 3, 64])
async def test_ndjson_lines_keep_a_last_line_without_its_newline(size: int) -> None:
    body = b'{"a": 1}\n\n  \n{"b": 2}\r\n{"c": 3}'
    chunks = [body[i : i + size] for i in range(0, len(body), size)]

    assert [line async for line in ndjson_lines(streamed(*chunks))] == [
        '{"a": 1}',
        '{"b": 2}',
        '{"c": 3}',
    ]
