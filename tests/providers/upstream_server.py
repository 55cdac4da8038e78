"""A scriptable upstream HTTP/1.1 server on 127.0.0.1 for tests that talk to "providers".

It listens on a real socket (its own thread and event loop, so sync and async tests can
share it) and answers each request with a scripted `Reply`, byte for byte: a recorded
fixture body, split into HTTP chunks as the test says, with optional delays, a TCP reset
mid-body, or any status and headers. Every request it receives is recorded.

    from tests.providers.upstream_server import Reply, UpstreamServer, fixture

    with UpstreamServer() as upstream:                  # or the `upstream` pytest fixture
        upstream.reply("POST", "/v1/chat/completions",
                       Reply.sse(fixture("openai/chat_stream.sse")))
        endpoint = Endpoint(base_url=f"{upstream.url}/v1", api_key="sk-test")
        ...                                             # run the adapter against it
        sent = upstream.requests[0]                     # RecordedRequest
        assert sent.json()["stream"] is True
        assert sent.headers["authorization"] == "Bearer sk-test"

API
- `UpstreamServer()`: `start()` / `stop()` or use it as a context manager; `url` is
  `http://127.0.0.1:<port>`.
- `reply(method, path, *replies)`: script the answers for `method` + `path` (the path
  without its query string). Requests are answered by the replies in order and the last one
  repeats, so `reply("POST", p, Reply.json(err, status=500), Reply.json(ok))` fails once and
  then succeeds. Calling it again replaces the script. An unscripted request gets a 404
  whose JSON body says so.
- `requests`: the `RecordedRequest`s received so far (method, path, `query` as a dict of
  lists, lower-cased `headers`, raw `body`, `json()`), in arrival order.
- `reset()`: forget the scripts and the recorded requests.
- `Reply` fields: `status`, `headers`, and either `body` (sent with Content-Length) or
  `chunks` (sent with `Transfer-Encoding: chunked`, one HTTP chunk per item, so the client
  receives them as separate reads); `delay_s` waits before the status line,
  `chunk_delay_s` before each chunk; `reset_after_chunks=n` sends n chunks and then resets
  the connection (TCP RST) without ending the body; `reset_before_status=True` resets the
  connection without answering at all; `stall_after_chunks=n` with `stall_s` sends n
  chunks, then goes silent for `stall_s` before the rest.
  Constructors: `Reply.json(obj_or_bytes, status=...)`, `Reply.sse(raw)` (one chunk per
  event), `Reply.ndjson(raw)` (one chunk per line), `Reply.chunked(raw, size,
  content_type=...)` (fixed-size pieces, to split frames across reads); `reply.but(...)`
  copies a Reply with fields changed.
- `fixture(relative_path)`: the bytes of `tests/fixtures/<relative_path>`.

Every response carries `Connection: close`, so no pooled connection outlives a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture(relative_path: str) -> bytes:
    return (FIXTURES / relative_path).read_bytes()


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    chunks: tuple[bytes, ...] | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    reset_after_chunks: int | None = None
    reset_before_status: bool = False
    stall_after_chunks: int | None = None
    stall_s: float = 0.0

    @classmethod
    def json(
        cls, payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
    ) -> Reply:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        merged = {"content-type": "application/json"} | (headers or {})
        return cls(status=status, headers=tuple(merged.items()), body=body)

    @classmethod
    def sse(cls, raw: bytes, **options: Any) -> Reply:
        """One HTTP chunk per event (each ends at a blank line), as providers flush them."""
        return cls(
            headers=(("content-type", "text/event-stream"),),
            chunks=tuple(_split_after(raw, (b"\r\n\r\n", b"\n\n"))),
            **options,
        )

    @classmethod
    def ndjson(cls, raw: bytes, **options: Any) -> Reply:
        return cls(
            headers=(("content-type", "application/x-ndjson"),),
            chunks=tuple(_split_after(raw, (b"\n",))),
            **options,
        )

    @classmethod
    def chunked(cls, raw: bytes, size: int, *, content_type: str, **options: Any) -> Reply:
        return cls(
            headers=(("content-type", content_type),),
            chunks=tuple(raw[i : i + size] for i in range(0, len(raw), size)),
            **options,
        )

    def but(self, **changes: Any) -> Reply:
        """A copy with some fields changed: `Reply.sse(raw).but(chunk_delay_s=1.0)`."""
        return replace(self, **changes)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Script:
    replies: list[Reply]
    served: int = 0

    def next(self) -> Reply:
        reply = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        return reply


@dataclass
class UpstreamServer:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    _scripts: dict[tuple[str, str], _Script] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reply(self, method: str, path: str, *replies: Reply) -> None:
        if not replies:
            raise ValueError("give at least one Reply")
        with self._lock:
            self._scripts[(method.upper(), path)] = _Script(list(replies))

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()

    def start(self) -> UpstreamServer:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="upstream-server", daemon=True)
        self._thread.start()
        if not started.wait(timeout=10):
            raise RuntimeError("upstream server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> UpstreamServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
                script = self._scripts.get((request.method, request.path))
                reply = script.next() if script else _unscripted(request)
            await _send(writer, reply)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            # The client went away first (its timeout, or it stopped reading): asyncio
            # cancels the handler of a lost connection, which is no failure here.
            pass
        finally:
            self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    parts = urlsplit(target)
    return RecordedRequest(
        method=method.upper(),
        path=parts.path,
        query=parse_qs(parts.query),
        headers=headers,
        body=body,
    )


def _unscripted(request: RecordedRequest) -> Reply:
    return Reply.json(
        {"error": f"no reply scripted for {request.method} {request.path}"}, status=404
    )


async def _send(writer: asyncio.StreamWriter, reply: Reply) -> None:
    if reply.delay_s:
        await asyncio.sleep(reply.delay_s)
    if reply.reset_before_status:
        await _reset(writer)
        return
    try:
        phrase = HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = "Status"
    lines = [f"HTTP/1.1 {reply.status} {phrase}"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    if reply.chunks is None:
        lines.append(f"content-length: {len(reply.body)}")
    else:
        lines.append("transfer-encoding: chunked")
    lines.append("connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if reply.chunks is None:
        writer.write(reply.body)
        await writer.drain()
        return
    await writer.drain()
    for index, chunk in enumerate(reply.chunks):
        if reply.reset_after_chunks is not None and index >= reply.reset_after_chunks:
            await _reset(writer)
            return
        if reply.chunk_delay_s:
            await asyncio.sleep(reply.chunk_delay_s)
        if index == reply.stall_after_chunks:
            await asyncio.sleep(reply.stall_s)
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort with a TCP RST (SO_LINGER 0) after what was written has left."""
    await writer.drain()
    await asyncio.sleep(0.05)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _split_after(raw: bytes, separators: tuple[bytes, ...]) -> list[bytes]:
    """Split `raw` right after each separator, keeping every byte."""
    pieces: list[bytes] = []
    start = 0
    while start < len(raw):
        ends = [raw.find(sep, start) + len(sep) for sep in separators if raw.find(sep, start) >= 0]
        end = min(ends) if ends else len(raw)
        pieces.append(raw[start:end])
        start = end
    return pieces
