"""The upstream HTTP/1.1 client against raw servers on 127.0.0.1: keep-alive, framing,
stale connections, limits, timeouts, TLS and proxies, byte for byte."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from providers.adapters.http_client import (
    ConnectFailed,
    ConnectionCut,
    Pool,
    ProtocolViolation,
    Timeouts,
    WireTimeout,
    with_query,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """Runs `handler(reader, writer, connection_number)` for each TCP connection and keeps
    every request head it reads through `read_request`."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                return await reader.readexactly(int(line.split(b":")[1]))
        return b""


def answer(body: bytes, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"content-length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    pool = Pool()
    yield pool
    await pool.aclose()


async def get(client: Pool, url: str, **timeouts: float) -> tuple[int, bytes]:
    response = await client.request("GET", url, headers={}, timeouts=Timeouts(**timeouts))
    try:
        return response.status_code, await response.aread()
    finally:
        await response.aclose()


async def test_keep_alive_reuses_one_connection_and_sends_an_exact_head(pool):
    async def handler(reader, writer, number):
        while True:
            body = await server.read_request(reader)
            writer.write(answer(b"got " + body))

    async with RawServer(handler) as server:
        for index in range(3):
            response = await pool.request(
                "POST",
                f"{server.url}/v1/chat?x=1",
                headers={"authorization": "Bearer k", "content-type": "application/json"},
                body=b'{"n":%d}' % index,
            )
            assert (response.status_code, await response.aread()) == (200, b'got {"n":%d}' % index)
            await response.aclose()

    assert server.connections == 1
    assert pool.idle_connections() == 1
    assert server.heads[0] == (
        b"POST /v1/chat?x=1 HTTP/1.1\r\n"
        b"host: 127.0.0.1:%d\r\n"
        b"authorization: Bearer k\r\n"
        b"content-type: application/json\r\n"
        b"user-agent: llm-orchestrator\r\n"
        b"accept-encoding: gzip, deflate\r\n"
        b"content-length: 7\r\n\r\n" % server.port
    )


async def test_chunked_body_with_extensions_and_trailers_then_reuse(pool):
    async def handler(reader, writer, number):
        while True:
            await server.read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: t\r\n\r\n"
            )

    async with RawServer(handler) as server:
        response = await pool.request("GET", server.url, headers={})
        pieces = [piece async for piece in response.aiter_bytes()]
        await response.aclose()
        assert b"".join(pieces) == b"hello world"
        assert await get(pool, server.url) == (200, b"hello world")

    assert server.connections == 1


async def test_streamed_chunks_arrive_before_the_body_ends(pool):
    release = asyncio.Event()

    async def handler(reader, writer, number):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\none\r\n")
        await release.wait()
        writer.write(b"3\r\ntwo\r\n0\r\n\r\n")

    async with RawServer(handler) as server:
        response = await pool.request("POST", server.url, headers={}, body=b"{}")
        stream = response.aiter_bytes()
        assert await anext(stream) == b"one"
        release.set()
        assert [piece async for piece in stream] == [b"two"]
        await response.aclose()


async def test_body_until_close_is_read_whole_and_the_connection_not_kept(pool):
    async def handler(reader, writer, number):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with RawServer(handler) as server:
        assert await get(pool, server.url) == (200, b"all of it")

    assert pool.idle_connections() == 0


async def test_gzip_answer_is_decompressed(pool):
    packed = gzip.compress(b'{"ok": true}')

    async def handler(reader, writer, number):
        await server.read_request(reader)
        writer.write(answer(packed, "content-encoding: gzip"))

    async with RawServer(handler) as server:
        assert await get(pool, server.url) == (200, b'{"ok": true}')


async def test_connection_close_header_is_obeyed(pool):
    async def handler(reader, writer, number):
        while True:
            await server.read_request(reader)
            writer.write(answer(b"x", "connection: close"))

    async with RawServer(handler) as server:
        await get(pool, server.url)
        await get(pool, server.url)

    assert server.connections == 2


async def test_idle_connection_closed_by_the_server_is_replaced(pool):
    async def handler(reader, writer, number):
        await server.read_request(reader)
        writer.write(answer(b"conn %d" % number))
        await writer.drain()
        # A keep-alive timeout on the server's side: close without saying so.

    async with RawServer(handler) as server:
        assert await get(pool, server.url) == (200, b"conn 1")
        await asyncio.sleep(0.05)
        assert await get(pool, server.url) == (200, b"conn 2")

    assert server.connections == 2


async def test_reused_connection_dropped_before_answering_is_retried_once(pool):
    async def handler(reader, writer, number):
        await server.read_request(reader)
        writer.write(answer(b"conn %d" % number))
        await writer.drain()
        if number == 1:
            await server.read_request(reader)  # read the second request, then hang up

    async with RawServer(handler) as server:
        assert await get(pool, server.url) == (200, b"conn 1")
        assert await get(pool, server.url) == (200, b"conn 2")

    assert server.connections == 2
    assert len(server.heads) == 3


async def test_fresh_connection_dropped_before_answering_is_cut(pool):
    async def handler(reader, writer, number):
        await server.read_request(reader)

    async with RawServer(handler) as server:
        with pytest.raises(ConnectionCut, match="before the answer began"):
            await get(pool, server.url)

    assert server.connections == 1


async def test_body_shorter_than_its_length_is_cut(pool):
    async def handler(reader, writer, number):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")

    async with RawServer(handler) as server:
        with pytest.raises(ConnectionCut, match="5 bytes before the body's end"):
            await get(pool, server.url)

    assert pool.idle_connections() == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"SPDY/3 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 2xx OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 0\r\n\r\n", "br"),
    ],
)
async def test_malformed_answers_are_protocol_violations(pool, raw, message):
    async def handler(reader, writer, number):
        await server.read_request(reader)
        writer.write(raw)
        await reader.read()

    async with RawServer(handler) as server:
        with pytest.raises(ProtocolViolation, match=message):
            await get(pool, server.url)

    assert pool.idle_connections() == 0


async def test_interim_100_continue_is_skipped(pool):
    async def handler(reader, writer, number):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"real"))

    async with RawServer(handler) as server:
        assert await get(pool, server.url) == (200, b"real")


async def test_read_timeout_is_between_reads(pool):
    async def handler(reader, writer, number):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(4):
            await asyncio.sleep(0.1)
            writer.write(b"1\r\nx\r\n")
        await asyncio.sleep(1)

    async with RawServer(handler) as server:
        response = await pool.request("GET", server.url, headers={}, timeouts=Timeouts(read=0.3))
        got = b""
        with pytest.raises(WireTimeout, match=r"read timeout after 0\.3 s"):
            async for piece in response.aiter_bytes():
                got += piece
        await response.aclose()

    # The whole answer took longer than 0.3 s, each gap did not, until the silence.
    assert got == b"xxxx"
    assert pool.idle_connections() == 0


async def test_pool_limit_makes_requests_wait_then_times_out(pool):
    pool.max_connections = 1

    async def handler(reader, writer, number):
        while True:
            await server.read_request(reader)
            writer.write(answer(b"ok"))

    async with RawServer(handler) as server:
        held = await pool.request("GET", server.url, headers={})
        with pytest.raises(WireTimeout, match="pool timeout"):
            await get(pool, server.url, pool=0.1)
        waiting = asyncio.ensure_future(get(pool, server.url, pool=5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await held.aread()
        await held.aclose()
        assert await waiting == (200, b"ok")

    assert server.connections == 1


async def test_abandoned_body_closes_its_connection(pool):
    async def handler(reader, writer, number):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
        await reader.read()

    async with RawServer(handler) as server:
        response = await pool.request("GET", server.url, headers={})
        assert await anext(response.aiter_bytes()) == b"x" * 10
        await response.aclose()

    assert pool.idle_connections() == 0


async def test_refused_connection_and_bad_urls_fail_to_connect(pool):
    async with RawServer(lambda r, w, n: asyncio.sleep(0)) as server:
        port = server.port
    with pytest.raises(ConnectFailed, match=f"cannot connect to 127.0.0.1:{port}"):
        await get(pool, f"http://127.0.0.1:{port}/")
    with pytest.raises(ConnectFailed, match="only http:// and https://"):
        await get(pool, "ftp://example.test/")


async def test_header_with_a_line_break_is_refused_before_sending(pool):
    with pytest.raises(ProtocolViolation, match="line break"):
        await pool.request("GET", "http://127.0.0.1:9/", headers={"x-a": "1\r\nx-b: 2"})


def test_query_parameters_are_percent_encoded():
    assert (
        with_query("http://h/p", {"alt": "sse", "q": "a b/c"}) == "http://h/p?alt=sse&q=a%20b%2Fc"
    )
    assert with_query("http://h/p?x=1", {"y": "2"}) == "http://h/p?x=1&y=2"
    assert with_query("http://h/p", None) == "http://h/p"


# --- TLS and proxies --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


async def echo_path(reader, writer, server: RawServer) -> None:
    while True:
        await server.read_request(reader)
        path = server.heads[-1].split(b" ")[1]
        writer.write(answer(b"tls " + path))


async def test_https_verifies_against_ssl_cert_file(monkeypatch, certificate):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    pool = Pool()

    async with RawServer(
        lambda r, w, n: echo_path(r, w, server), server_tls(certificate)
    ) as server:
        assert await get(pool, f"{server.url}/a") == (200, b"tls /a")
        assert await get(pool, f"{server.url}/b") == (200, b"tls /b")
    await pool.aclose()

    assert server.connections == 1


async def test_https_with_an_untrusted_certificate_fails_to_connect(monkeypatch, certificate):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    pool = Pool()

    async with RawServer(
        lambda r, w, n: echo_path(r, w, server), server_tls(certificate)
    ) as server:
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await get(pool, f"{server.url}/a")
    await pool.aclose()


class Proxy:
    """An HTTP proxy that tunnels CONNECT and forwards absolute-form requests, recording
    the first line and the proxy-authorization of each."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.seen: list[tuple[bytes, bytes | None]] = []

    async def handle(self, reader, writer, number) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        auth = next(
            (line.split(b": ", 1)[1] for line in lines if line.startswith(b"proxy-authorization")),
            None,
        )
        self.seen.append((lines[0], auth))
        method, target, _ = lines[0].split(b" ")
        if self.refuse:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
            return
        if method == b"CONNECT":
            host, port = target.rsplit(b":", 1)
            up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            port = int(target.split(b"/")[2].split(b":")[1])
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            up_writer.write(head)

        async def pipe(source, sink) -> None:
            while data := await source.read(65536):
                sink.write(data)
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_https_through_a_connect_proxy_with_credentials(monkeypatch, certificate):
    proxy = Proxy()
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async with (
        RawServer(lambda r, w, n: echo_path(r, w, target), server_tls(certificate)) as target,
        RawServer(proxy.handle) as proxy_server,
    ):
        monkeypatch.setenv("https_proxy", f"http://user:p%40ss@127.0.0.1:{proxy_server.port}")
        pool = Pool()
        assert await get(pool, f"{target.url}/x") == (200, b"tls /x")
        assert await get(pool, f"{target.url}/y") == (200, b"tls /y")
        await pool.aclose()

    assert proxy.seen == [(b"CONNECT 127.0.0.1:%d HTTP/1.1" % target.port, b"Basic dXNlcjpwQHNz")]
    assert target.heads[0].startswith(b"GET /x HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n" % target.port)


async def test_http_through_a_proxy_uses_absolute_form_and_no_proxy_bypasses(monkeypatch):
    proxy = Proxy()

    async def handler(reader, writer, number):
        while True:
            await target.read_request(reader)
            writer.write(answer(b"plain"))

    async with RawServer(handler) as target, RawServer(proxy.handle) as proxy_server:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy_server.port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        pool = Pool()
        assert await get(pool, f"{target.url}/p?q=1") == (200, b"plain")
        await pool.aclose()

        monkeypatch.setenv("no_proxy", "127.0.0.1")
        bypassing = Pool()
        assert await get(bypassing, f"{target.url}/direct") == (200, b"plain")
        await bypassing.aclose()

    assert proxy.seen == [(b"GET http://127.0.0.1:%d/p?q=1 HTTP/1.1" % target.port, None)]
    assert target.heads[1].startswith(b"GET /direct HTTP/1.1\r\n")


async def test_proxy_refusing_the_tunnel_fails_to_connect(monkeypatch):
    proxy = Proxy(refuse=True)
    async with RawServer(proxy.handle) as proxy_server:
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy_server.port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        pool = Pool()
        with pytest.raises(
            ConnectFailed, match=r"refused the tunnel to api.example.test:443 \(HTTP 407\)"
        ):
            await get(pool, "https://api.example.test/v1/models")
        await pool.aclose()


async def test_reader_stopping_at_its_end_marker_leaves_the_connection_reusable(pool):
    # SSE readers stop at `data: [DONE]`; the chunked terminator after it is already there.
    async def handler(reader, writer, number):
        while True:
            await server.read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
            )

    async with RawServer(handler) as server:
        for _ in range(2):
            response = await pool.request("POST", server.url, headers={}, body=b"{}")
            assert await anext(response.aiter_bytes()) == b"data: [DONE]\n\n"
            await response.aclose()

    assert server.connections == 1
    assert pool.idle_connections() == 1


async def test_idle_connections_past_their_expiry_are_closed_not_reused():
    pool = Pool(keepalive_expiry_s=0.1)

    async def handler(reader, writer, number):
        while True:
            await server.read_request(reader)
            writer.write(answer(b"conn %d" % number))

    async with RawServer(handler) as server:
        assert await get(pool, server.url) == (200, b"conn 1")
        assert await get(pool, server.url) == (200, b"conn 1")  # fresh: reused
        await asyncio.sleep(0.15)
        assert await get(pool, server.url) == (200, b"conn 2")  # expired: a new one

    assert server.connections == 2
    assert pool.idle_connections() == 1
    await pool.aclose()
