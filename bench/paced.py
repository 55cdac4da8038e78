"""Streams at a real token pace: what one forwarded chunk costs the web process, the delay it
adds, the memory an open stream holds, and how many paced streams one core carries.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orchestrator \
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/paced.py \
        [--chunks 200] [--interval-ms 20] [--streams 25,50,100,200,400] [--paths sse,ws]
        [--max-chunk-cpu-ms X]

A fake OpenAI upstream of the bench's own (its own process, pinned to core 0) answers every
streamed request with `--chunks` content chunks `--interval-ms` apart, then a usage chunk and
`[DONE]`. Each chunk carries the monotonic time (ns) the upstream sent it, so the client can
tell the delay the gateway added to each chunk (upstream send to client receive, over
loopback). The web process (`orchestrator_site.serve`, one worker) is pinned to core 1 on a
scratch database with Redis, routing, the budget guard and the journal on, and the response
cache off. For each level of `--streams`, that many `/v1/chat/completions` streams are opened
at once (staggered over one chunk interval, as real traffic is) and read to the end, on each
path of `--paths`: `sse` is `/v1/chat/completions` with `stream: true` (an API key), `ws` the
browser chat's websocket (`/ws/chat/`, a signed-in user's session cookie, one socket per
stream, each asking one new conversation's first turn; its `chat.delta` frames are timed).
Reported, per path and level:

- CPU of the web process per forwarded chunk (its CPU time over the level, less its idle CPU
  measured over as long a quiet period, divided by the chunks forwarded),
- the added delay per chunk, p50 / p99,
- memory per open stream: the web process's RSS with every stream open, less its RSS before,
  divided by the streams,
- the largest level whose added delay p99 is within `--max-delay-p99-ms` (5 ms): the number of
  concurrent paced streams one core carries.

`--max-chunk-cpu-ms` makes the run exit non-zero when a level's per-chunk CPU is above it (a
regression guard).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

from bench.gateway import CLIENT_CORE, SERVER_CORE, free_port, process_started  # noqa: E402

KEY_PREFIX = "orch-bench-paced"


# --- the paced upstream ------------------------------------------------------------------------


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class PacedUpstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive; every request is answered as a stream of `chunks` content chunks,
    `interval_s` apart, each holding the monotonic time it was sent (`t<ns> `)."""

    def __init__(self, chunks: int, interval_s: float) -> None:
        self.chunks, self.interval_s = chunks, interval_s
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            asyncio.get_running_loop().create_task(self._stream(json.loads(body)))

    def _write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    async def _stream(self, request: dict[str, Any]) -> None:
        base = b'{"id":"chatcmpl-paced","object":"chat.completion.chunk","created":1700000000,'
        base += b'"model":"%s","choices":[{"index":0,"delta":' % request["model"].encode()
        self._write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for index in range(self.chunks):
            role = b'"role":"assistant",' if index == 0 else b""
            delta = b'{%s"content":"t%d "}' % (role, time.monotonic_ns())
            if not self._write(_chunk(b"data: " + base + delta + b',"finish_reason":null}]}\n\n')):
                return
            await asyncio.sleep(self.interval_s)
        usage = b'{"prompt_tokens":12,"completion_tokens":%d,"total_tokens":%d}' % (
            self.chunks * 2,
            self.chunks * 2 + 12,
        )
        last = base + b'{},"finish_reason":"stop"}],"usage":' + usage + b"}"
        self._write(_chunk(b"data: " + last + b"\n\n") + _chunk(b"data: [DONE]\n\n"))
        self._write(b"0\r\n\r\n")


async def upstream_serve(port: int, chunks: int, interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: PacedUpstream(chunks, interval_s), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


# --- the clients -------------------------------------------------------------------------------


async def one_stream(port: int, key: str, index: int, delays_ms: list[float]) -> int:
    """Open one stream, read it to the end; returns the content chunks received."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    body = json.dumps(
        {
            "model": "auto",
            "messages": [{"role": "user", "content": f"Tell story number {index}."}],
            "stream": True,
        }
    ).encode()
    writer.write(
        (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"stream {index}: {head[:200]!r}")
    received = 0
    pending = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            break
        pending += (await reader.readexactly(size + 2))[:-2]
        now = time.monotonic_ns()
        # One HTTP chunk may hold several events when the gateway coalesces; each is timed.
        while (cut := pending.find(b"\n\n")) >= 0:
            event, pending = pending[:cut], pending[cut + 2 :]
            start = event.find(b'"content":"')
            if start >= 0:
                text = event[start + 11 : event.index(b'"', start + 11)].decode()
                received += _delays_note(text, now, delays_ms)
    writer.close()
    return received


def _delays_note(text: str, now: int, delays_ms: list[float]) -> int:
    """Times every `t<ns> ` token in `text` (a frame may carry several); returns how many."""
    found = 0
    for word in text.split():
        if word.startswith("t") and word[1:].isdigit():
            delays_ms.append((now - int(word[1:])) / 1e6)
            found += 1
    return found


async def one_chat(port: int, cookie: str, index: int, delays_ms: list[float]) -> int:
    """Ask one new conversation's first turn on the chat websocket and read the answer to its
    `chat.done`; returns the content chunks received."""
    from websockets.asyncio.client import connect

    origin = f"http://127.0.0.1:{port}"
    async with connect(
        f"ws://127.0.0.1:{port}/ws/chat/",
        origin=origin,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        max_size=2**22,
        compression=None,
    ) as socket:
        await socket.send(
            json.dumps(
                {
                    "type": "chat.request",
                    "conversation_id": None,
                    "content": f"Tell story number {index}.",
                    "model": "auto",
                    "cache": False,
                }
            )
        )
        received = 0
        async for raw in socket:
            now = time.monotonic_ns()
            frame = json.loads(raw)
            kind = frame["type"]
            if kind == "chat.delta":
                received += _delays_note(frame["text"], now, delays_ms)
            elif kind == "chat.done":
                return received
            elif kind == "chat.error":
                raise RuntimeError(f"chat {index}: {frame}")
    raise RuntimeError(f"chat {index}: the socket closed before chat.done")


async def level(
    port: int, credential: str, streams: int, interval_s: float, sampler: Any, path: str = "sse"
) -> dict[str, Any]:
    delays: list[float] = []
    rss_before = sampler.process.memory_info().rss
    sampler.peak_rss = rss_before
    cpu_before = sampler.cpu_s()
    began = time.perf_counter()

    async def staggered(index: int) -> int:
        await asyncio.sleep(interval_s * index / streams)
        if path == "ws":
            return await one_chat(port, credential, index, delays)
        return await one_stream(port, credential, index, delays)

    received = await asyncio.gather(*(staggered(i) for i in range(streams)))
    wall_s = time.perf_counter() - began
    cpu_s = sampler.cpu_s() - cpu_before
    chunks = sum(received)
    delays.sort()
    return {
        "path": path,
        "streams": streams,
        "chunks": chunks,
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 3),
        "cpu_ms_per_chunk": round(cpu_s * 1000 / max(1, chunks), 4),
        "added_delay_p50_ms": round(statistics.median(delays), 2) if delays else None,
        "added_delay_p99_ms": (
            round(delays[min(len(delays) - 1, int(0.99 * len(delays)))], 2) if delays else None
        ),
        "rss_per_open_stream_kib": round((sampler.peak_rss - rss_before) / 1024 / streams, 1),
    }


# --- set-up ------------------------------------------------------------------------------------


def registry_create(upstream_url: str) -> str:
    from decimal import Decimal

    from gateway.apikeys import apikey_create
    from providers.models import LLMModel, Provider
    from routing.engine.taxonomy import TASK_TYPES
    from routing.models import Budget, RoutingPolicy, RoutingRule

    provider = Provider.objects.create(
        name="paced", kind="openai_compatible", base_url=f"{upstream_url}/v1", locality="cloud"
    )
    model = LLMModel.objects.create(
        provider=provider,
        name="paced-model",
        tier="standard",
        input_price_per_mtok_usd=Decimal("0.15"),
        output_price_per_mtok_usd=Decimal("0.60"),
    )
    policy = RoutingPolicy.objects.create(name="paced", is_default=True)
    for task_type in TASK_TYPES:
        RoutingRule.objects.create(policy=policy, task_type=task_type, primary=model, tiers=[])
    Budget.objects.create(name="paced-global", limit_usd=Decimal("1000000"))
    return apikey_create(name="paced", rpm_limit=10_000_000, tpm_limit=1_000_000_000).plaintext


def session_cookie() -> str:
    """A signed-in user's session, as the chat page's websocket sends it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    user = User.objects.create_user("paced", password="paced-bench-password")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--streams", default="25,50,100,200,400")
    parser.add_argument(
        "--paths", default="sse,ws", help="sse (/v1 streams), ws (the chat websocket) or both"
    )
    parser.add_argument("--max-delay-p99-ms", type=float, default=5.0)
    parser.add_argument("--max-chunk-cpu-ms", type=float, help="exit non-zero above this")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    interval_s = args.interval_ms / 1000
    if args.serve_upstream:
        asyncio.run(upstream_serve(args.serve_upstream, args.chunks, interval_s))
        return

    import django

    os.environ["CACHE_KEY_PREFIX"] = KEY_PREFIX
    django.setup()
    import logging

    import redis
    from django.conf import settings
    from django.db import connection, connections

    from bench.gateway import Sampler

    logging.getLogger("httpx").setLevel(logging.WARNING)
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        sys.exit("bench/paced.py runs on Postgres and Redis: set DATABASE_URL and REDIS_URL")
    os.sched_setaffinity(0, {CLIENT_CORE})
    scratch = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    workdir = Path(tempfile.mkdtemp(prefix="paced-"))
    (workdir / "paced_settings.py").write_text(
        "from orchestrator_site.settings import *  # noqa: F403\n"
        "ORCHESTRATOR_RESPONSE_CACHE_ENABLED = False\n"
    )
    log_dir = ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "chunks": args.chunks,
        "interval_ms": args.interval_ms,
        "load_average_before": os.getloadavg(),
        "levels": [],
    }
    failed = False
    try:
        upstream_port, port = free_port(), free_port()
        key = registry_create(f"http://127.0.0.1:{upstream_port}")
        credentials = {"sse": key, "ws": session_cookie()}
        paths = [p.strip() for p in args.paths.split(",") if p.strip()]
        if unknown := set(paths) - set(credentials):
            sys.exit(f"--paths: unknown path(s) {', '.join(sorted(unknown))}; use sse and/or ws")
        for conn in connections.all():
            if hasattr(conn, "close_pool"):
                conn.close_pool()
        parts = urlsplit(os.environ["DATABASE_URL"])
        env = dict(os.environ) | {
            "DATABASE_URL": urlunsplit(parts._replace(path=f"/{scratch}")),
            "DJANGO_SETTINGS_MODULE": "paced_settings",
            "PYTHONPATH": f"{workdir}:{ROOT}",
            "DEBUG": "false",
            "ORCHESTRATOR_AGENT_SAMPLING": "off",
            "CACHE_KEY_PREFIX": KEY_PREFIX,
        }
        upstream_cmd = [
            *("taskset", "-c", str(CLIENT_CORE), sys.executable, __file__),
            *("--serve-upstream", str(upstream_port), "--chunks", str(args.chunks)),
            *("--interval-ms", str(args.interval_ms)),
        ]
        serve = [
            *("taskset", "-c", str(SERVER_CORE), sys.executable, "-m"),
            *("orchestrator_site.serve", "--port", str(port)),
        ]
        with (
            process_started(upstream_cmd, env, upstream_port, log_dir / "paced-upstream.log"),
            process_started(serve, env, port, log_dir / "paced-web.log") as web,
        ):
            sampler = Sampler(web.pid)
            try:
                for path in paths:  # warm-up
                    asyncio.run(level(port, credentials[path], 5, interval_s, sampler, path))
                idle_began, idle_cpu = time.perf_counter(), sampler.cpu_s()
                time.sleep(2.0)
                idle_cpu_per_s = (sampler.cpu_s() - idle_cpu) / (time.perf_counter() - idle_began)
                results["idle_cpu_share"] = round(idle_cpu_per_s, 4)
                for path in paths:
                    for streams in (int(s) for s in args.streams.split(",")):
                        row = asyncio.run(
                            level(port, credentials[path], streams, interval_s, sampler, path)
                        )
                        # The process's own background work is not the chunks' cost.
                        busy_s = row["cpu_s"] - idle_cpu_per_s * row["wall_s"]
                        row["cpu_ms_per_chunk"] = round(busy_s * 1000 / max(1, row["chunks"]), 4)
                        row["server_cpu_share"] = round(row["cpu_s"] / row["wall_s"], 3)
                        results["levels"].append(row)
                        print(json.dumps(row))
                        if (
                            args.max_chunk_cpu_ms
                            and row["cpu_ms_per_chunk"] > args.max_chunk_cpu_ms
                        ):
                            failed = True
            finally:
                sampler.close()
        results["most_streams_within_delay_target"] = {}
        for path in paths:
            within = [
                r["streams"]
                for r in results["levels"]
                if r["path"] == path
                and r["added_delay_p99_ms"] is not None
                and r["added_delay_p99_ms"] <= args.max_delay_p99_ms
            ]
            most = max(within) if within else 0
            results["most_streams_within_delay_target"][path] = most
            print(
                f"{path}: most concurrent paced streams with added delay p99 <= "
                f"{args.max_delay_p99_ms} ms on one core: {most}"
            )
    finally:
        for conn in connections.all():
            if hasattr(conn, "close_pool"):
                conn.close_pool()
        connection.creation.destroy_test_db(scratch, verbosity=0)
        client = redis.Redis.from_url(settings.REDIS_URL)
        for redis_key in client.scan_iter(f"*{KEY_PREFIX}*", count=1000):
            client.delete(redis_key)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if failed:
        sys.exit(f"per-chunk CPU above {args.max_chunk_cpu_ms} ms")


if __name__ == "__main__":
    main()
