"""The upstream HTTP/1.1 client: a keep-alive connection pool per event loop, TLS, bodies
framed by Content-Length, chunked encoding or the end of the connection, gzip/deflate
answers, connect/read/write/pool timeouts, and HTTP(S)_PROXY / NO_PROXY from the
environment (CONNECT tunnels for https, absolute-form requests for http).

It replaces httpx on the request path because the gateway benchmark showed httpx as the
largest single cost of a proxied request, more than routing, guards and the request log
together (figures in docs/benchmarks.md, "Upstream client"). This client does one write and
one or two reads per request on an asyncio stream, and nothing else.

Only what the provider adapters need is here: POST or GET with an optional body, the whole
answer or its body as it arrives. Failures are the exceptions below;
`providers.adapters.upstream` maps them to typed `ProviderError`s.

One module of about 800 lines, on purpose: the connection (an asyncio protocol with its own
buffer and flow control), the pool that keeps it idle and the response that reads from it
share private state that a split would have to expose. In order: errors and headers, targets
and proxies, the connection, the pool, the request head, the response.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import time
import weakref
import zlib
from collections import deque
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib import request as urllib_request
from urllib.parse import quote, unquote, urlencode, urlsplit

# NO_PROXY matching as urllib does it (typeshed does not list this function).
_proxy_bypass = urllib_request.proxy_bypass_environment  # type: ignore[attr-defined]

MAX_CONNECTIONS = 200
# An idle connection older than this is closed, not reused: a NAT or firewall may have
# dropped it without a word, and a request sent on it would only fail at its read timeout.
KEEPALIVE_EXPIRY_S = 5.0
MAX_HEAD_BYTES = 64 * 1024
# Reading from the socket pauses while this much of an answer waits unread: a streamed answer
# whose client reads slowly holds at most this much here (plus the socket's own buffer), and
# the upstream is held back by TCP's flow control beyond it (docs/benchmarks.md, "Paced
# streams"). A reader that takes what arrived each time (every one here) never sees it.
BUFFER_HIGH_WATER = 32 * 1024
_HEX_DIGITS = b"0123456789abcdefABCDEF"
USER_AGENT = "llm-orchestrator"


class WireError(Exception):
    """A transport failure: nothing usable came back."""


class ConnectFailed(WireError):
    """No connection: refused, unknown host, TLS handshake failed, or the proxy said no."""


class WireTimeout(WireError):
    """A phase took longer than its timeout: connect, write, read (between two reads of the
    answer) or pool (waiting for a free connection)."""

    def __init__(self, phase: str, seconds: float) -> None:
        super().__init__(f"{phase} timeout after {seconds:g} s")
        self.phase = phase


class ConnectionCut(WireError):
    """The connection ended or was reset before the answer was complete."""


class ProtocolViolation(WireError):
    """The upstream sent something that is not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    read: float = 120.0
    write: float = 10.0
    pool: float = 10.0


class Headers(Mapping[str, str]):
    """Response headers, looked up case-insensitively; repeated fields are joined with
    ", " as RFC 9110 allows (`set-cookie` aside, which no adapter reads)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, str] | None = None) -> None:
        self._fields = {k.lower(): v for k, v in (fields or {}).items()}

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        old = self._fields.get(key)
        self._fields[key] = value if old is None else f"{old}, {value}"

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._fields.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


class _Target(NamedTuple):
    tls: bool
    host: str
    port: int
    host_header: str
    path: str  # path and query, as sent in the request line


@lru_cache(maxsize=1024)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectFailed(f"unsupported URL {url!r}: only http:// and https:// are spoken")
    tls = parts.scheme == "https"
    default_port = 443 if tls else 80
    try:
        port = parts.port or default_port
    except ValueError:
        raise ConnectFailed(f"invalid port in URL {url!r}") from None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Target(tls, host, port, host_header, path)


class _Proxy(NamedTuple):
    host: str
    port: int
    authorization: str | None


def _proxy(url: str) -> _Proxy:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ConnectFailed(f"unsupported proxy {url!r}: only http:// proxies are spoken")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return _Proxy(parts.hostname, parts.port or 80, authorization)


def _tls_context() -> ssl.SSLContext:
    """Certificates from SSL_CERT_FILE / SSL_CERT_DIR when set, else certifi's bundle (what
    httpx verified against before)."""
    cafile = os.environ.get("SSL_CERT_FILE")
    capath = os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        import certifi

        cafile = certifi.where()
    context = ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    context.set_alpn_protocols(["http/1.1"])
    return context


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection. Bytes that arrive are kept in `buffer` and parsed in
    place; a reader waits (`more`) only when the buffer holds nothing it can use."""

    def __init__(self, key: tuple[object, ...]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.used = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        # The read timeout's deadline and its one timer, re-armed only when it fires early:
        # a stream waits once per token, and a timer plus its cancel per wait was a few per
        # cent of a forwarded chunk's CPU.
        self._read_deadline = 0.0
        self._read_timeout_s = 0.0
        self._read_timer: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None
        self._reading_paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > BUFFER_HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # for the pool and the response

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self, timeout_s: float) -> None:
        """Wait until more bytes arrive or the connection ends; `WireTimeout` after
        `timeout_s` of silence."""
        if self.eof:
            return
        if self._reading_paused and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._read_deadline = loop.time() + timeout_s
        self._read_timeout_s = timeout_s
        if self._read_timer is None:
            self._read_timer = loop.call_at(self._read_deadline, self._read_expire)
        try:
            await waiter
        finally:
            self._waiter = None

    def _read_expire(self) -> None:
        """The read timer: fails the waiting read once its deadline has passed; re-armed for
        the deadline of the read waiting now if that one is later; dropped when none waits."""
        self._read_timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        loop = waiter.get_loop()
        if loop.time() >= self._read_deadline:
            waiter.set_exception(WireTimeout("read", self._read_timeout_s))
        else:
            self._read_timer = loop.call_at(self._read_deadline, self._read_expire)

    def take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def send(self, data: bytes, timeout_s: float) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionCut("connection closed before the request was sent")
        self.transport.write(data)
        drained = self._drained
        if drained is None:
            return  # the transport took it all without pausing us
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout_s, _expire, drained, WireTimeout("write", timeout_s))
        try:
            await drained
        finally:
            timer.cancel()
        if self.eof:
            raise ConnectionCut(f"connection cut while sending: {self.error or 'closed'}")

    def alive(self) -> bool:
        # A server that closed an idle keep-alive connection has sent EOF by now; bytes that
        # nobody asked for mean the connection is out of step.
        return not (
            self.eof or self.buffer or self.transport is None or self.transport.is_closing()
        )

    def close(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None], error: WireTimeout) -> None:
    if not waiter.done():
        waiter.set_exception(error)


class Pool:
    """Keep-alive connections of one event loop, at most MAX_CONNECTIONS open at once."""

    def __init__(
        self,
        max_connections: int = MAX_CONNECTIONS,
        keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S,
    ) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry_s = keepalive_expiry_s
        self._idle: dict[tuple[object, ...], list[_Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._proxies = urllib_request.getproxies_environment()
        self._proxy_of: dict[tuple[bool, str], _Proxy | None] = {}
        self._tls: ssl.SSLContext | None = None

    @property
    def is_closed(self) -> bool:
        return self._closed

    def idle_connections(self) -> int:
        return sum(len(stack) for stack in self._idle.values())

    def proxy_for(self, target: _Target) -> _Proxy | None:
        key = (target.tls, target.host)
        if key not in self._proxy_of:
            url = self._proxies.get("https" if target.tls else "http")
            if url and not _proxy_bypass(target.host, self._proxies):
                self._proxy_of[key] = _proxy(url)
            else:
                self._proxy_of[key] = None
        return self._proxy_of[key]

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeouts: Timeouts = Timeouts(),
    ) -> Response:
        """Send a request and return once the answer's head has arrived; read its body from
        the `Response` (and close it). A reused connection that turns out to be dead before
        any byte of the answer arrived is replaced once by a fresh one."""
        target = _target(url)
        proxy = self.proxy_for(target)
        head = _request_head(method, target, proxy, headers, body)
        for attempt in (0, 1):
            connection = await self._acquire(target, proxy, timeouts, fresh=attempt == 1)
            reused = connection.used
            connection.used = True
            try:
                await connection.send(head + body if body else head, timeouts.write)
                status, response_headers = await _read_head(connection, timeouts.read)
                return Response(self, connection, method, status, response_headers, timeouts.read)
            except ConnectionCut:
                self._discard(connection)
                if reused and attempt == 0 and not connection.buffer:
                    continue  # nothing came back: the upstream had closed it meanwhile
                raise
            except BaseException:
                self._discard(connection)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(
        self, target: _Target, proxy: _Proxy | None, timeouts: Timeouts, *, fresh: bool
    ) -> _Connection:
        key = (target.tls, target.host, target.port, proxy)
        if not fresh and (idle := self._idle_one(key)) is not None:
            return idle
        if self._closed:
            raise ConnectFailed("the upstream client is closed")
        while self._open >= self.max_connections:
            if self._evict_idle():
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(timeouts.pool):
                    await waiter
            except TimeoutError:
                raise WireTimeout("pool", timeouts.pool) from None
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if not fresh and (idle := self._idle_one(key)) is not None:
                return idle
        self._open += 1
        try:
            return await self._connect(key, target, proxy, timeouts.connect)
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    def _idle_one(self, key: tuple[object, ...]) -> _Connection | None:
        """The most recently used idle connection to `key` that is still open and fresh;
        older ones are closed on the way."""
        stack = self._idle.get(key)
        if not stack:
            return None
        fresh_after = time.monotonic() - self.keepalive_expiry_s
        if stack[0].idle_since < fresh_after:
            # The oldest are at the bottom of the stack: close every expired one.
            expired = [c for c in stack if c.idle_since < fresh_after]
            stack[:] = [c for c in stack if c.idle_since >= fresh_after]
            for connection in expired:
                self._discard(connection)
        while stack:
            connection = stack.pop()
            if connection.alive():
                return connection
            self._discard(connection)
        return None

    async def _connect(
        self, key: tuple[object, ...], target: _Target, proxy: _Proxy | None, timeout_s: float
    ) -> _Connection:
        if target.tls and self._tls is None:
            self._tls = _tls_context()
        host, port = (proxy.host, proxy.port) if proxy else (target.host, target.port)
        tunnel = proxy is not None and target.tls
        direct_tls = self._tls if target.tls and not tunnel else None
        loop = asyncio.get_running_loop()
        connection = _Connection(key)
        try:
            async with asyncio.timeout(timeout_s):
                await loop.create_connection(
                    lambda: connection,
                    host,
                    port,
                    ssl=direct_tls,
                    server_hostname=target.host if direct_tls else None,
                )
                if tunnel:
                    assert proxy is not None and self._tls is not None
                    await _tunnel(connection, target, proxy, timeout_s)
                    assert connection.transport is not None
                    connection.transport = await loop.start_tls(
                        connection.transport, connection, self._tls, server_hostname=target.host
                    )
        except TimeoutError:
            connection.close()
            raise WireTimeout("connect", timeout_s) from None
        except OSError as exc:  # refused, unknown host, and TLS failures (ssl.SSLError) alike
            connection.close()
            where = f"proxy {host}:{port}" if proxy else f"{host}:{port}"
            raise ConnectFailed(f"cannot connect to {where}: {exc}") from None
        except BaseException:
            connection.close()
            raise
        return connection

    def _release(self, connection: _Connection) -> None:
        if self._closed or not connection.alive():
            self._discard(connection)
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.key, []).append(connection)
        self._wake()

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open -= 1
        self._wake()

    def _evict_idle(self) -> bool:
        for stack in self._idle.values():
            if stack:
                self._discard(stack.pop(0))
                return True
        return False

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for stack in self._idle.values():
            while stack:
                self._discard(stack.pop())
        self._idle.clear()


def _request_head(
    method: str,
    target: _Target,
    proxy: _Proxy | None,
    headers: Mapping[str, str],
    body: bytes | None,
) -> bytes:
    # Through a proxy without a tunnel (http:// targets) the request line names the whole URL.
    absolute = proxy is not None and not target.tls
    line_target = f"http://{target.host_header}{target.path}" if absolute else target.path
    lines = [f"{method} {line_target} HTTP/1.1", f"host: {target.host_header}"]
    given = {name.lower() for name in headers}
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ProtocolViolation(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    if "user-agent" not in given:
        lines.append(f"user-agent: {USER_AGENT}")
    if "accept-encoding" not in given:
        lines.append("accept-encoding: gzip, deflate")
    if body is not None:
        lines.append(f"content-length: {len(body)}")
    if absolute and proxy is not None and proxy.authorization:
        lines.append(f"proxy-authorization: {proxy.authorization}")
    return _head_bytes(lines)


def _head_bytes(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _tunnel(
    connection: _Connection, target: _Target, proxy: _Proxy, timeout_s: float
) -> None:
    authority = f"[{target.host}]" if ":" in target.host else target.host
    authority += f":{target.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"host: {authority}"]
    if proxy.authorization:
        lines.append(f"proxy-authorization: {proxy.authorization}")
    await connection.send(_head_bytes(lines), timeout_s)
    try:
        status, _ = await _read_head(connection, timeout_s)
    except WireError as exc:
        raise ConnectFailed(
            f"proxy {proxy.host}:{proxy.port} did not open a tunnel: {exc}"
        ) from None
    if status != 200:
        raise ConnectFailed(
            f"proxy {proxy.host}:{proxy.port} refused the tunnel to {authority} (HTTP {status})"
        )
    connection.buffer.clear()


async def _read_head(connection: _Connection, timeout_s: float) -> tuple[int, Headers]:
    buffer = connection.buffer
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            status, headers = _parse_head(connection.take(end + 4))
            if status >= 200 or status == 101:
                return status, headers
            continue  # 1xx interim answers (100 Continue, 103 Early Hints) precede the real one
        if len(buffer) > MAX_HEAD_BYTES:
            raise ProtocolViolation(f"answer head longer than {MAX_HEAD_BYTES} bytes")
        if connection.eof:
            began = "ended its head" if buffer else "began"
            reason = f": {connection.error}" if connection.error else ""
            raise ConnectionCut(f"connection closed before the answer {began}{reason}")
        await connection.more(timeout_s)


def _parse_head(raw: bytes) -> tuple[int, Headers]:
    lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolViolation(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolViolation(f"malformed header line: {line[:100]!r}")
        headers.add(name, value.strip())
    if version == "HTTP/1.0" and "keep-alive" not in (headers.get("connection") or "").lower():
        headers.add("connection", "close")
    return int(code), headers


class Response:
    """An answer whose head has arrived. Read the body once, by `aiter_bytes()` or
    `aread()`; `aclose()` (always, e.g. in a `finally`) returns a fully read keep-alive
    connection to the pool and closes any other."""

    def __init__(
        self,
        pool: Pool,
        connection: _Connection,
        method: str,
        status: int,
        headers: Headers,
        read_timeout_s: float,
    ) -> None:
        self.status_code = status
        self.headers = headers
        self._pool = pool
        self._connection: _Connection | None = connection
        self._read_timeout_s = read_timeout_s
        self._content: bytes | None = None
        self._chunk_left = 0
        self._body_done = False
        self._after_chunk = False
        self._in_trailers = False
        self._consumed = False
        self._keep_alive = "close" not in (headers.get("connection") or "").lower()
        encoding = (headers.get("content-encoding") or "identity").strip().lower()
        self._decoder = _decoder(encoding)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._framing, self._length = "none", 0
        elif "chunked" in (headers.get("transfer-encoding") or "").lower():
            self._framing, self._length = "chunked", 0
        elif (length := headers.get("content-length")) is not None:
            try:
                self._framing, self._length = "length", int(length.split(",")[0])
            except ValueError:
                raise ProtocolViolation(f"invalid Content-Length {length!r}") from None
            if self._length < 0:
                raise ProtocolViolation(f"invalid Content-Length {length!r}")
        else:
            self._framing, self._length = "close", 0
            self._keep_alive = False

    async def aread(self) -> bytes:
        if self._content is None:
            self._content = b"".join([part async for part in self.aiter_bytes()])
        return self._content

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        """The body's bytes as they arrive (de-chunked and decompressed): all that has
        arrived at each step, in one piece."""
        if self._consumed:
            raise RuntimeError("the body was already read")
        self._consumed = True
        connection = self._connection
        if connection is None:
            raise ConnectionCut("the answer was closed before its body was read")
        decoder = self._decoder
        try:
            while True:
                raw, self._body_done = self._parse(connection)
                if raw:
                    data = decoder.decompress(raw) if decoder else raw
                    if data:
                        yield data
                if self._body_done:
                    break
                if connection.eof:
                    raise ConnectionCut(self._cut_message(connection))
                await connection.more(self._read_timeout_s)
            if decoder is not None and (tail := decoder.flush()):
                yield tail
        except zlib.error as exc:
            self._keep_alive = False  # framed, perhaps, but not what it said it was
            raise ProtocolViolation(f"undecodable compressed body: {exc}") from None
        self._finish()

    def _cut_message(self, connection: _Connection) -> str:
        reason = f": {connection.error}" if connection.error else ""
        if self._framing == "length":
            return f"connection closed {self._length} bytes before the body's end{reason}"
        return f"connection closed before the body's end{reason}"

    def _parse(self, connection: _Connection) -> tuple[bytes, bool]:
        """What the buffer holds of the body, and whether the body is complete."""
        buffer = connection.buffer
        if self._framing == "none":
            return b"", True
        if self._framing == "length":
            data = connection.take(self._length)
            self._length -= len(data)
            return data, self._length == 0
        if self._framing == "close":
            data = connection.take(len(buffer))
            return data, connection.eof
        return self._parse_chunked(buffer)

    def _parse_chunked(self, buffer: bytearray) -> tuple[bytes, bool]:
        pieces: list[bytes] = []
        position, done = 0, False
        while True:
            if self._chunk_left:
                piece = buffer[position : position + self._chunk_left]
                if not piece:
                    break
                pieces.append(bytes(piece))
                position += len(piece)
                self._chunk_left -= len(piece)
                if self._chunk_left:
                    break
                self._after_chunk = True
            if self._after_chunk:
                if len(buffer) - position < 2:
                    break
                if buffer[position : position + 2] != b"\r\n":
                    raise ProtocolViolation("chunk not followed by CRLF")
                position += 2
                self._after_chunk = False
            end = buffer.find(b"\r\n", position)
            if end < 0:
                if len(buffer) - position > MAX_HEAD_BYTES:
                    raise ProtocolViolation("chunk size line or trailer too long")
                break
            line = bytes(buffer[position:end])
            position = end + 2
            if self._in_trailers:
                if not line:
                    done = True
                    break
                continue  # a trailer field, ignored
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or size_text.lstrip(_HEX_DIGITS):
                raise ProtocolViolation(f"invalid chunk size line {line[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                self._in_trailers = True
            else:
                self._chunk_left = size
        del buffer[:position]
        return b"".join(pieces), done

    def _finish(self) -> None:
        """Back to the pool if the whole body, and nothing after it, was read; else closed."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._keep_alive and self._body_done and not connection.buffer:
            self._pool._release(connection)
        else:
            self._pool._discard(connection)

    async def aclose(self) -> None:
        connection = self._connection
        if connection is not None and self._keep_alive and not self._body_done:
            self._skip_arrived_rest(connection)
        self._finish()

    def _skip_arrived_rest(self, connection: _Connection) -> None:
        """Read past what the buffer holds of the unread body, never waiting for more. A
        reader that stops at its protocol's own end marker (SSE's `data: [DONE]`) leaves the
        body's last bytes (the chunked terminator) unread; they usually come in the same
        packet, and then the connection can go back to the pool."""
        with contextlib.suppress(ProtocolViolation):
            while not self._body_done:
                raw, self._body_done = self._parse(connection)
                if not raw and not self._body_done:
                    return


def _decoder(encoding: str) -> zlib._Decompress | None:
    if encoding in ("identity", ""):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS | 32)
    raise ProtocolViolation(f"unsupported Content-Encoding {encoding!r}")


# A pooled connection belongs to the event loop that opened it, so the pool is kept per loop:
# one per process under the ASGI server, and a fresh one for each `asyncio.run`.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()


def upstream_pool() -> Pool:
    """The running event loop's pool, built on first use."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None or pool.is_closed:
        pool = _pools[loop] = Pool()
    return pool


async def upstream_pool_close() -> None:
    """Close the running loop's pool (at shutdown; tests call it between loops)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.aclose()


def with_query(url: str, params: Mapping[str, str] | None) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params, quote_via=quote)
