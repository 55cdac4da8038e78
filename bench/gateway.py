"""What the gateway adds to a request: `/v1/chat/completions` against calling the upstream directly.

A fake OpenAI upstream of the bench's own (its own process, raw asyncio, 0 ms or 50 ms before
the answer, streaming with N chunks or one JSON body) answers both the gateway and direct
calls. One web process (`web`: the product's, `orchestrator_site.serve`, uvicorn on uvloop and
httptools; `daphne` and `uvicorn-h11` (uvicorn on asyncio's loop and h11) to compare, with
`--servers web,daphne,uvicorn-h11`) is pinned to core 1, on a scratch database created next
to DATABASE_URL's (migrated, dropped afterwards), with Redis, the request log on Postgres,
routing (`model` names a policy), rate limits (high enough never to refuse), a global budget
and the request journal on; the response cache is switched off so every request reaches the
upstream. The load generator and the upstream are pinned to core 0. The load generator is a
minimal keep-alive HTTP/1.1 client (one connection per concurrent worker) so that its own cost
stays far below the server's; the upstream client of the gateway (`providers.adapters.http_client`)
is measured alone too, beside httpx.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orchestrator \
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/gateway.py [--servers web,daphne]

`--points 0:1:json,0:1:stream` measures only those points (to profile one, or to compare two
commits in alternating short runs).

`--doors openai,anthropic,ollama,gemini` sends the same points, the same policy and the same
upstream through each of the gateway's doors (`/v1/chat/completions`, `/v1/messages`,
`/api/chat`, `/v1beta/models/…:generateContent` and `:streamGenerateContent?alt=sse`), all with
the key as Bearer; every answer's text is read back in its door's protocol and must be the
upstream's whole text, in a stream that ended as the protocol ends it. The doors are
interleaved: `--rounds` rounds, each point measured directly and then through every door in an
order that rotates by round; each door gets the median of its rounds and, per round, its ratio
to the OpenAI door (the median of those). The default, `--doors openai`, is the bench above.

Each run also times a fixed Python loop on the server's core before and after, a yardstick of
the VM's speed at the time (it changes by up to 2x here, with or without steal time showing).

Keys that the run creates in the Redis database are deleted at the end.

One script of about 1,100 lines, on purpose: a benchmark a user runs and reads alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

SERVER_CORE = 1
CLIENT_CORE = 0
DELAY_PATH = re.compile(r"^/d(\d+)/")
UPSTREAM_MODELS = {0: "fast", 50: "slow"}


# --- the fake upstream ---------------------------------------------------------------------


def _chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def upstream_answer(body: bytes, chunks: int) -> bytes:
    """OpenAI's wire format: SSE with `[DONE]` (and a usage chunk when asked), or one JSON."""
    request = json.loads(body)
    model = request.get("model", "m")
    prompt_tokens = max(1, len(json.dumps(request.get("messages", []))) // 4)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": chunks,
        "total_tokens": prompt_tokens + chunks,
    }
    base = {"id": "chatcmpl-bench", "created": 1700000000, "model": model}
    if not request.get("stream"):
        payload = base | {
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "tok " * chunks},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        data = json.dumps(payload).encode()
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        return head % len(data) + data
    events = [{"role": "assistant", "content": ""}] + [{"content": "tok "}] * chunks
    parts = []
    for index, delta in enumerate(events):
        finish = "stop" if index == len(events) - 1 else None
        chunk = base | {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        parts.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    if (request.get("stream_options") or {}).get("include_usage"):
        last = base | {"object": "chat.completion.chunk", "choices": [], "usage": usage}
        parts.append(b"data: " + json.dumps(last).encode() + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    return head + _chunked(parts)


class UpstreamProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive; `/d<ms>/…` waits that long before answering."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
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
            match = DELAY_PATH.match(head.split(" ", 2)[1])
            delay_ms = int(match.group(1)) if match else 0
            answer = upstream_answer(body, self.chunks)
            assert self.transport is not None
            if delay_ms:
                asyncio.get_running_loop().call_later(delay_ms / 1000, self._send, answer)
            else:
                self.transport.write(answer)

    def _send(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


async def upstream_serve(port: int, chunks: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamProtocol(chunks), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


# --- the load generator ----------------------------------------------------------------------


@dataclass
class Sample:
    total_s: float
    first_byte_s: float


class Connection:
    """One keep-alive HTTP/1.1 connection; reads Content-Length and chunked bodies."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[Sample, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        began = time.perf_counter()
        self.writer.write(head.encode() + body)
        raw_head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw_head.split(b" ", 2)[1])
        fields = {}
        for line in raw_head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        first = None
        if "content-length" in fields:
            data = await self.reader.readexactly(int(fields["content-length"]))
            first = time.perf_counter()
        else:
            pieces = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                pieces.append((await self.reader.readexactly(size + 2))[:-2])
                first = first or time.perf_counter()
            data = b"".join(pieces)
        done = time.perf_counter()
        if fields.get("connection") == "close":
            self.writer.close()
            self.writer = None
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {data[:300]!r}")
        return Sample(done - began, (first or done) - began), data


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.samples) / self.wall_s

    def pct(self, share: float, first_byte: bool = False) -> float:
        values = sorted(s.first_byte_s if first_byte else s.total_s for s in self.samples)
        return values[min(len(values) - 1, int(share * len(values)))] * 1000


async def load(
    port: int,
    path: str,
    body_for: Callable[[int], bytes],
    *,
    concurrency: int,
    requests: int,
    headers: dict[str, str],
    streamed: bool,
    check: Callable[[bytes], None] | None = None,
) -> Run:
    """`requests` requests over `concurrency` connections, each worker one request at a time;
    `check` (a door's, `--doors`) reads each answer's text and raises unless it is complete."""
    run = Run()
    counter = iter(range(requests))

    async def worker() -> None:
        connection = Connection("127.0.0.1", port)
        for index in counter:
            sample, data = await connection.request(path, body_for(index), headers)
            if check is not None:
                check(data)
            elif streamed and not data.rstrip().endswith(b"data: [DONE]"):
                raise RuntimeError(f"stream without [DONE]: {data[-200:]!r}")
            run.samples.append(sample)
        if connection.writer is not None:
            connection.writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall_s = time.perf_counter() - began
    return run


def chat_body(model: str, index: int, *, stream: bool, offset: int = 0) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": f"Say hello to reader number {offset + index}."}],
        "max_tokens": 64,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


# --- the doors (`--doors`) ---------------------------------------------------------------------


def _prompt(offset: int, index: int) -> str:
    return f"Say hello to reader number {offset + index}."


def anthropic_body(model: str, index: int, *, stream: bool, offset: int = 0) -> bytes:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": _prompt(offset, index)}],
        "max_tokens": 64,
        "stream": stream,
    }
    return json.dumps(body).encode()


def ollama_body(model: str, index: int, *, stream: bool, offset: int = 0) -> bytes:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": _prompt(offset, index)}],
        "options": {"num_predict": 64},
        "stream": stream,
    }
    return json.dumps(body).encode()


def gemini_body(model: str, index: int, *, stream: bool, offset: int = 0) -> bytes:
    del model, stream  # both are in the path
    body = {
        "contents": [{"role": "user", "parts": [{"text": _prompt(offset, index)}]}],
        "generationConfig": {"maxOutputTokens": 64},
    }
    return json.dumps(body).encode()


def _sse_data(data: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body, whatever ends its lines."""
    return [line[5:].strip() for line in data.splitlines() if line.startswith(b"data:")]


def openai_text(data: bytes, stream: bool) -> str:
    if not stream:
        return str(json.loads(data)["choices"][0]["message"]["content"])
    events = _sse_data(data)
    if not events or events[-1] != b"[DONE]":
        raise RuntimeError(f"stream without [DONE]: {data[-200:]!r}")
    chunks = [json.loads(event) for event in events[:-1]]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def anthropic_text(data: bytes, stream: bool) -> str:
    if not stream:
        message = json.loads(data)
        if message["type"] != "message" or message["stop_reason"] != "end_turn":
            raise RuntimeError(f"not a finished message: {data[:300]!r}")
        return "".join(block["text"] for block in message["content"])
    names = [line[6:].strip() for line in data.splitlines() if line.startswith(b"event:")]
    if names[:2] != [b"message_start", b"content_block_start"] or names[-2:] != [
        b"message_delta",
        b"message_stop",
    ]:
        raise RuntimeError(f"events out of Anthropic's order: {names!r}")
    events = [json.loads(event) for event in _sse_data(data)]
    deltas = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    return "".join(deltas)


def ollama_text(data: bytes, stream: bool) -> str:
    lines = [json.loads(line) for line in data.splitlines() if line.strip()]
    if not lines or not lines[-1].get("done") or (not stream and len(lines) != 1):
        raise RuntimeError(f"NDJSON without a last done line: {data[-300:]!r}")
    return "".join((line.get("message") or {}).get("content", "") for line in lines)


def gemini_text(data: bytes, stream: bool) -> str:
    answers = [json.loads(event) for event in _sse_data(data)] if stream else [json.loads(data)]
    if not answers or answers[-1]["candidates"][0].get("finishReason") != "STOP":
        raise RuntimeError(f"no last answer with finishReason STOP: {data[-300:]!r}")
    if "usageMetadata" not in answers[-1]:
        raise RuntimeError(f"no usageMetadata on the last answer: {data[-300:]!r}")
    parts = [p for a in answers for p in a["candidates"][0]["content"]["parts"]]
    return "".join(part.get("text", "") for part in parts)


@dataclass(frozen=True)
class Door:
    """One wire protocol in front of the same pipeline: where it is, what a client sends, and
    how to read the text back out of its answer (raising unless the answer ended properly)."""

    name: str
    path: Callable[[str, bool], str]
    body: Callable[..., bytes]
    text: Callable[[bytes, bool], str]

    def check(self, stream: bool, expected: str) -> Callable[[bytes], None]:
        def checked(data: bytes) -> None:
            if (text := self.text(data, stream)) != expected:
                raise RuntimeError(f"{self.name}: text {text[:80]!r}, not {expected[:80]!r}")

        return checked


DOORS = {
    "openai": Door("openai", lambda model, stream: "/v1/chat/completions", chat_body, openai_text),
    "anthropic": Door(
        "anthropic", lambda model, stream: "/v1/messages", anthropic_body, anthropic_text
    ),
    "ollama": Door("ollama", lambda model, stream: "/api/chat", ollama_body, ollama_text),
    "gemini": Door(
        "gemini",
        lambda model, stream: (
            f"/v1beta/models/{model}:"
            + ("streamGenerateContent?alt=sse" if stream else "generateContent")
        ),
        gemini_body,
        gemini_text,
    ),
}


def doors_parse(value: str) -> list[Door]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in DOORS]
    if unknown or not names or len(set(names)) != len(names):
        sys.exit(f"--doors: comma-separated, each once, among {', '.join(DOORS)}; got {value!r}")
    return [DOORS[name] for name in names]


# --- set-up of the scratch database, the upstream and the web process -----------------------


def registry_create(upstream_url: str) -> str:
    """Providers, models, policies (one per upstream delay), a budget and an API key."""
    from gateway.apikeys import apikey_create
    from providers.models import LLMModel, Provider
    from routing.engine.taxonomy import TASK_TYPES
    from routing.models import Budget, RoutingPolicy, RoutingRule

    for delay_ms, name in UPSTREAM_MODELS.items():
        provider = Provider.objects.create(
            name=name,
            kind="openai_compatible",
            base_url=f"{upstream_url}/d{delay_ms}/v1",
            locality="cloud",
        )
        model = LLMModel.objects.create(
            provider=provider,
            name=f"{name}-model",
            tier="standard",
            input_price_per_mtok_usd=Decimal("0.15"),
            output_price_per_mtok_usd=Decimal("0.60"),
        )
        policy = RoutingPolicy.objects.create(name=f"bench-{name}", is_default=delay_ms == 0)
        for task_type in TASK_TYPES:
            RoutingRule.objects.create(policy=policy, task_type=task_type, primary=model, tiers=[])
    premium = Provider.objects.create(
        name="premium", kind="openai", base_url=f"{upstream_url}/d0/v1", locality="cloud"
    )
    LLMModel.objects.create(
        provider=premium,
        name="big",
        tier="premium",
        input_price_per_mtok_usd=Decimal("10"),
        output_price_per_mtok_usd=Decimal("30"),
        is_baseline=True,
        enabled=False,
    )
    Budget.objects.create(name="bench-global", limit_usd=Decimal("1000000"))
    return apikey_create(name="bench", rpm_limit=10_000_000, tpm_limit=1_000_000_000).plaintext


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout_s} s")


def server_command(server: str, port: int, workers: int | None = None) -> list[str]:
    app = "orchestrator_site.asgi:application"
    if server == "web":
        command = [sys.executable, "-m", "orchestrator_site.serve", "--port", str(port)]
        return command + (["--workers", str(workers)] if workers else [])
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    if server != "uvicorn-h11":
        raise SystemExit(f"unknown server {server!r}: web, daphne or uvicorn-h11")
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "asyncio",
        "--http",
        "h11",
        "--lifespan",
        "off",
        "--no-access-log",
        "--log-level",
        "warning",
        app,
    ]


@contextmanager
def process_started(
    command: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    # A file, not a pipe: an unread pipe fills up and blocks the server's event loop.
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
        try:
            wait_port(port, process)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def process_cpu_s(process: Any) -> float:
    """CPU time of a psutil process and of its worker processes (`--workers`)."""
    import psutil  # type: ignore[import-untyped]

    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a worker that just ended
            times = each.cpu_times()
            total += times.user + times.system
    return total


class Sampler:
    """Peak RSS and CPU time of one process while a measurement runs."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            rss = 0
            for process in [self.process, *self.process.children(recursive=True)]:
                with contextlib.suppress(Exception):  # a worker that just ended
                    rss += process.memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)
            self.stop.wait(0.05)

    def cpu_s(self) -> float:
        return process_cpu_s(self.process)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


# --- measurements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    delay_ms: int
    concurrency: int
    requests: int
    streamed: bool


def points(scale: float, only: str | None = None) -> list[Point]:
    def n(value: int) -> int:
        return max(20, int(value * scale))

    every = [
        Point(0, 1, n(500), False),
        Point(0, 8, n(1000), False),
        Point(0, 64, n(3000), False),
        Point(0, 1, n(500), True),
        Point(0, 64, n(3000), True),
        Point(50, 1, n(120), False),
        Point(50, 8, n(600), False),
        Point(50, 64, n(2500), False),
    ]
    if only is None:
        return every
    wanted = set(only.split(","))
    chosen = [
        p
        for p in every
        if f"{p.delay_ms}:{p.concurrency}:{'stream' if p.streamed else 'json'}" in wanted
    ]
    if len(chosen) != len(wanted):
        sys.exit(f"--points: unknown point among {only!r}")
    return chosen


def warmup_requests(scale: float) -> int:
    return max(50, int(300 * scale))


def summary(direct: Run, gateway: Run, cpu_s: float) -> dict[str, float]:
    row = {"gateway_rps": gateway.rps, "direct_rps": direct.rps}
    for share, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        row[f"added_{label}_ms"] = gateway.pct(share) - direct.pct(share)
        row[f"gateway_{label}_ms"] = gateway.pct(share)
        row[f"direct_{label}_ms"] = direct.pct(share)
        row[f"added_ttfb_{label}_ms"] = gateway.pct(share, True) - direct.pct(share, True)
    row["server_cpu_ms_per_request"] = cpu_s * 1000 / len(gateway.samples)
    row["server_cpu_share"] = cpu_s / gateway.wall_s
    return row


async def measure_server(
    server_port: int,
    upstream_port: int,
    key: str,
    sampler: Sampler,
    scale: float,
    only: str | None = None,
) -> list[dict[str, Any]]:
    auth = {"authorization": f"Bearer {key}"}
    gateway_path = "/v1/chat/completions"
    warm = await load(
        server_port,
        gateway_path,
        lambda i: chat_body("bench-fast", -i - 1, stream=False),
        concurrency=8,
        requests=warmup_requests(scale),
        headers=auth,
        streamed=False,
    )
    del warm
    results: list[dict[str, Any]] = []
    for point in points(scale, only):
        name = UPSTREAM_MODELS[point.delay_ms]
        stream = point.streamed
        direct = await load(
            upstream_port,
            f"/d{point.delay_ms}/v1/chat/completions",
            partial(chat_body, f"{name}-model", stream=stream),
            concurrency=point.concurrency,
            requests=point.requests,
            headers={},
            streamed=stream,
        )
        cpu_before = sampler.cpu_s()
        offset = len(results) * 100_000
        gateway = await load(
            server_port,
            gateway_path,
            partial(chat_body, f"bench-{name}", stream=stream, offset=offset),
            concurrency=point.concurrency,
            requests=point.requests,
            headers=auth,
            streamed=stream,
        )
        row = {"point": point.__dict__} | summary(direct, gateway, sampler.cpu_s() - cpu_before)
        results.append(row)
        print(
            f"  upstream {point.delay_ms:>2} ms c={point.concurrency:<2} "
            f"{'stream' if stream else 'json  '} added p50/p95/p99 "
            f"{row['added_p50_ms']:6.2f} {row['added_p95_ms']:6.2f} {row['added_p99_ms']:6.2f} ms"
            f"  ttfb+ p50 {row['added_ttfb_p50_ms']:6.2f}  {row['gateway_rps']:6.0f} req/s "
            f"(direct {row['direct_rps']:6.0f})  server cpu {row['server_cpu_share']:.0%}, "
            f"{row['server_cpu_ms_per_request']:.2f} ms/req",
            flush=True,
        )
    return results


def _ratio(value: float, base: float) -> float:
    return value / base if base else float("nan")


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


async def measure_doors(
    server_port: int,
    upstream_port: int,
    key: str,
    sampler: Sampler,
    scale: float,
    only: str | None,
    doors: list[Door],
    rounds: int,
    chunks: int,
) -> dict[str, Any]:
    """The same points through each door, interleaved: each round measures a point directly,
    then through every door (in an order that rotates from round to round), so that the VM's
    changes of speed fall on all doors alike; a door's figure is the median of its rounds, its
    ratio the median of the rounds' ratios to the OpenAI door."""
    auth = {"authorization": f"Bearer {key}"}
    expected = "tok " * chunks
    calls = 0

    async def through(door: Door, model: str, point: Point, requests: int) -> Run:
        nonlocal calls
        calls += 1
        return await load(
            server_port,
            door.path(model, point.streamed),
            partial(door.body, model, stream=point.streamed, offset=calls * 100_000),
            concurrency=point.concurrency,
            requests=requests,
            headers=auth,
            streamed=point.streamed,
            check=door.check(point.streamed, expected),
        )

    sent = dict.fromkeys((door.name for door in doors), 0)
    for door in doors:
        for streamed in (False, True):
            await through(door, "bench-fast", Point(0, 8, 0, streamed), warmup_requests(scale) // 2)
            sent[door.name] += warmup_requests(scale) // 2
    chosen = points(scale, only)
    measured: dict[str, list[list[dict[str, Any]]]] = {d.name: [[] for _ in chosen] for d in doors}
    for round_index in range(rounds):
        turn = round_index % len(doors)
        order = doors[turn:] + doors[:turn]
        print(f"  round {round_index + 1} of {rounds}: {', '.join(d.name for d in order)}")
        for index, point in enumerate(chosen):
            name = UPSTREAM_MODELS[point.delay_ms]
            direct = await load(
                upstream_port,
                f"/d{point.delay_ms}/v1/chat/completions",
                partial(chat_body, f"{name}-model", stream=point.streamed),
                concurrency=point.concurrency,
                requests=point.requests,
                headers={},
                streamed=point.streamed,
                check=DOORS["openai"].check(point.streamed, expected),
            )
            for door in order:
                cpu_before = sampler.cpu_s()
                run = await through(door, f"bench-{name}", point, point.requests)
                sent[door.name] += point.requests
                row = summary(direct, run, sampler.cpu_s() - cpu_before)
                measured[door.name][index].append(row)
                print(
                    f"    {door.name:<9} {point.delay_ms:>2} ms c={point.concurrency:<2} "
                    f"{'stream' if point.streamed else 'json  '} added p50/p99 "
                    f"{row['added_p50_ms']:6.2f} {row['added_p99_ms']:6.2f} ms  "
                    f"{row['gateway_rps']:6.0f} req/s  "
                    f"{row['server_cpu_ms_per_request']:.2f} ms cpu/req",
                    flush=True,
                )
    results: dict[str, Any] = {}
    for door in doors:
        rows = []
        for index, point in enumerate(chosen):
            median: dict[str, Any] = {"point": point.__dict__}
            median |= _median_row(measured[door.name][index])
            if "openai" in measured:
                paired = zip(measured[door.name][index], measured["openai"][index], strict=True)
                ratios = [
                    {k: _ratio(mine[k], base[k]) for k in DOOR_FIGURES} for mine, base in paired
                ]
                median["ratio_to_openai"] = _median_row(ratios)
            rows.append(median)
        results[door.name] = {"points": rows, "requests": sent[door.name]}
    doors_report(results)
    return results


# What the door table shows of each point, and what its ratio to the OpenAI door is taken of.
DOOR_FIGURES = ("gateway_rps", "added_p50_ms", "added_p99_ms", "server_cpu_ms_per_request")


def doors_report(results: dict[str, Any]) -> None:
    print("  medians over the rounds (x the OpenAI door's figure in the same rounds, median)")
    for door, data in results.items():
        for row in data["points"]:
            point = Point(**row["point"])
            ratio = row.get("ratio_to_openai") or {}
            figures = "  ".join(
                f"{label} {row[key]:7.2f}" + (f" ({ratio[key]:.2f}x)" if key in ratio else "")
                for key, label in zip(
                    DOOR_FIGURES, ("req/s", "p50+", "p99+", "cpu ms/req"), strict=True
                )
            )
            print(
                f"  {door:<9} {point.delay_ms:>2} ms c={point.concurrency:<2} "
                f"{'stream' if point.streamed else 'json  '} {figures}",
                flush=True,
            )


async def measure_clients(upstream_port: int, requests: int) -> list[dict[str, Any]]:
    """Upstream clients alone, streamed: the gateway's own (`providers.adapters.http_client`, the
    process's pool as the adapters use it), httpx with a keep-alive pool as large as the
    concurrency, and this bench's raw client."""
    import httpx

    from providers.adapters.http_client import Pool

    url = f"http://127.0.0.1:{upstream_port}/d0/v1/chat/completions"
    rows = []

    async def timed(concurrency: int, send: Callable[[int], Any]) -> float:
        shared = iter(range(requests))

        async def worker() -> None:
            for index in shared:
                await send(index)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - began)

    for concurrency in (1, 16, 64):
        pool = Pool()

        async def via_wire(index: int, pool: Pool = pool) -> None:
            body = chat_body("fast-model", index, stream=True)
            response = await pool.request(
                "POST", url, headers={"content-type": "application/json"}, body=body
            )
            try:
                async for _ in response.aiter_bytes():
                    pass
                if response.status_code != 200:
                    raise RuntimeError(f"upstream answered {response.status_code}")
            finally:
                await response.aclose()

        rps = await timed(concurrency, via_wire)
        await pool.aclose()
        rows.append({"client": "project (wire)", "concurrency": concurrency, "rps": rps})
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def via_httpx(index: int, client: httpx.AsyncClient = client) -> None:
                body = chat_body("fast-model", index, stream=True)
                async with client.stream("POST", url, content=body) as response:
                    async for _ in response.aiter_raw():
                        pass
                    response.raise_for_status()

            rps = await timed(concurrency, via_httpx)
        rows.append({"client": "httpx 0.28", "concurrency": concurrency, "rps": rps})
        raw = await load(
            upstream_port,
            "/d0/v1/chat/completions",
            lambda i: chat_body("fast-model", i, stream=True),
            concurrency=concurrency,
            requests=requests,
            headers={},
            streamed=True,
        )
        rows.append({"client": "bench raw client", "concurrency": concurrency, "rps": raw.rps})
    for row in rows:
        print(f"  {row['client']:<28} c={row['concurrency']:<2} {row['rps']:7.0f} req/s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers", default="web", help="comma-separated: web (the product's), daphne, uvicorn-h11"
    )
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per answer")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies request counts")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument(
        "--points",
        help="only these points, comma-separated DELAY:CONCURRENCY:json|stream (e.g. 0:1:json); "
        "the upstream clients are then not measured",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="run the web process with this many workers, on every core (shared with the load "
        "generator and the upstream) instead of pinned to one; give 1 to compare on equal terms",
    )
    parser.add_argument(
        "--doors",
        default="openai",
        help="comma-separated: openai (/v1/chat/completions), anthropic (/v1/messages), ollama "
        "(/api/chat), gemini (/v1beta/models/…:generateContent); more than the OpenAI door alone "
        "runs every point through each, interleaved over --rounds, each answer's text checked",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the doors' interleaved points (--doors)"
    )
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        asyncio.run(upstream_serve(args.serve_upstream, args.chunks))
        return

    doors = doors_parse(args.doors)
    import django

    os.environ["CACHE_KEY_PREFIX"] = "orch-bench-gateway"
    django.setup()
    import logging

    import redis
    from django.conf import settings
    from django.db import connection, connections

    logging.getLogger("httpx").setLevel(logging.WARNING)
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        sys.exit("bench/gateway.py measures Postgres and Redis: set DATABASE_URL and REDIS_URL")
    redis_client = redis.Redis.from_url(settings.REDIS_URL)
    keys_before = set(redis_client.scan_iter(count=1000))
    os.sched_setaffinity(0, {CLIENT_CORE})
    load_before = os.getloadavg()
    speed_before = core_speed_ms()
    cpu_before = cpu_times()
    scratch = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    workdir = Path(tempfile.mkdtemp(prefix="gwbench-"))
    results: dict[str, Any] = {"load_average_before": load_before, "servers": {}}
    try:
        upstream_port, log_dir = free_port(), ROOT / "var" / "bench"
        log_dir.mkdir(parents=True, exist_ok=True)
        upstream_cmd = [
            "taskset",
            "-c",
            str(CLIENT_CORE),
            sys.executable,
            __file__,
            "--serve-upstream",
            str(upstream_port),
            "--chunks",
            str(args.chunks),
        ]
        key = registry_create(f"http://127.0.0.1:{upstream_port}")
        for conn in connections.all():
            if hasattr(conn, "close_pool"):
                conn.close_pool()
        # The response cache is off through a settings module that only adds that switch.
        (workdir / "gwbench_settings.py").write_text(
            "from orchestrator_site.settings import *  # noqa: F403\n"
            "ORCHESTRATOR_RESPONSE_CACHE_ENABLED = False\n"
        )
        parts = urlsplit(os.environ["DATABASE_URL"])
        env = dict(os.environ)
        env |= {
            "DATABASE_URL": urlunsplit(parts._replace(path=f"/{scratch}")),
            "DJANGO_SETTINGS_MODULE": "gwbench_settings",
            "PYTHONPATH": f"{workdir}:{ROOT}",
            "DEBUG": "false",
            "ORCHESTRATOR_AGENT_SAMPLING": "off",
        }
        with process_started(upstream_cmd, env, upstream_port, log_dir / "gateway-upstream.log"):
            if not args.points:
                print(f"upstream client alone (0 ms upstream, {args.chunks} chunks, streamed)")
                clients = measure_clients(upstream_port, int(3000 * args.scale))
                results["clients"] = asyncio.run(clients)
            rows_before = 0
            door_rows_before: dict[str, int] = {}
            for server in args.servers.split(","):
                port = free_port()
                command = ["taskset", "-c", str(SERVER_CORE), *server_command(server, port)]
                placement = f"pinned to core {SERVER_CORE}"
                if args.workers and server == "web":
                    command = server_command(server, port, args.workers)
                    placement = f"{args.workers} workers on every core"
                log = log_dir / f"gateway-{server}.log"
                with process_started(command, env, port, log) as process:
                    print(f"{server}, {placement}, pid {process.pid}")
                    sampler = Sampler(process.pid)
                    by_door: dict[str, Any] = {}
                    try:
                        if [door.name for door in doors] == ["openai"]:
                            rows = asyncio.run(
                                measure_server(
                                    port, upstream_port, key, sampler, args.scale, args.points
                                )
                            )
                        else:
                            measuring = measure_doors(
                                port,
                                upstream_port,
                                key,
                                sampler,
                                args.scale,
                                args.points,
                                doors,
                                args.rounds,
                                args.chunks,
                            )
                            by_door = asyncio.run(measuring)
                            # The targets are /v1's: checked on its medians.
                            rows = by_door.get("openai", {}).get("points", [])
                    finally:
                        sampler.close()
                    peak_mb = sampler.peak_rss / 2**20
                    print(f"  peak RSS of the web process: {peak_mb:.0f} MiB")
                    if by_door:
                        sent = sum(data["requests"] for data in by_door.values())
                    else:
                        sent = sum(r["point"]["requests"] for r in rows)
                        sent += warmup_requests(args.scale)
                    rows_total = log_rows_count()
                    # This server's rows: the log is shared by the servers of one run.
                    logged = rows_total - rows_before
                    print(f"  request log rows: {logged} for {sent} requests")
                    rows_before = rows_total
                    results["servers"][server] = {
                        "points": rows,
                        "peak_rss_mib": peak_mb,
                        "requests": sent,
                        "log_rows": logged,
                    }
                    if by_door:
                        results["servers"][server]["doors"] = by_door
                        door_rows = log_rows_by_door()
                        for name, data in by_door.items():
                            # Each door's rows, cumulated over the servers of the run.
                            logged_door = door_rows.get(name, 0) - door_rows_before.get(name, 0)
                            data["log_rows"] = logged_door
                            print(f"  {name}: {logged_door} log rows for {data['requests']}")
                        door_rows_before = door_rows
        results["load_average_after"] = os.getloadavg()
        results["steal_share"] = steal_share(cpu_before, cpu_times())
        results["core_speed_ms"] = {"before": speed_before, "after": core_speed_ms()}
    finally:
        for conn in connections.all():
            if hasattr(conn, "close_pool"):
                conn.close_pool()
        connection.creation.destroy_test_db(scratch, verbosity=0)
        created = set(redis_client.scan_iter(count=1000)) - keys_before
        if created:
            redis_client.delete(*created)
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    print(f"load average before {load_before}, after {results['load_average_after']}")
    if results.get("steal_share") is not None:
        # Time the hypervisor gave this VM's cores to others: a slower run, not slower code.
        print(f"CPU time stolen by the host during the run: {100 * results['steal_share']:.1f} %")
    speed = results.get("core_speed_ms") or {}
    print(
        f"a fixed Python loop on core {SERVER_CORE} took {speed.get('before', 0):.0f} ms before "
        f"the run and {speed.get('after', 0):.0f} ms after (median of {SPEED_ROUNDS}; the same "
        "code runs slower or faster as the VM's speed changes)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    targets_report(results)


SPEED_ROUNDS = 5
SPEED_LOOP = (
    "import time\n"
    "times = []\n"
    "for _ in range({rounds}):\n"
    "    began = time.perf_counter()\n"
    "    total = 0\n"
    "    for i in range(3_000_000):\n"
    "        total += i\n"
    "    times.append(time.perf_counter() - began)\n"
    "print(sorted(times)[len(times) // 2] * 1000)\n"
)


def core_speed_ms() -> float:
    """How long 3 M additions in Python take on the server's core (the median of a few
    rounds): a yardstick for the VM's speed at the time of a run, since the hypervisor can
    make the same code 1.5-2x slower for a while without any steal time showing."""
    code = SPEED_LOOP.format(rounds=SPEED_ROUNDS)
    command = ["taskset", "-c", str(SERVER_CORE), sys.executable, "-c", code]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters (`/proc/stat`'s first line), where there is one."""
    try:
        with open("/proc/stat") as stat:
            return [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of CPU time the host took (steal, the 8th counter) between two readings."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return None
    spent = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(spent[:8])
    return spent[7] / total if total else None


def log_rows_count() -> int:
    """Rows in the scratch log; written after each answer, so wait until they stop growing."""
    from analytics.models import RequestLog

    count, previous = RequestLog.objects.count(), -1
    while count != previous:
        time.sleep(1.0)
        count, previous = RequestLog.objects.count(), count
    return count


def log_rows_by_door() -> dict[str, int]:
    """Rows in the scratch log by door (`entry_point`), once the log has stopped growing."""
    from django.db.models import Count

    from analytics.models import RequestLog

    log_rows_count()
    counted = RequestLog.objects.values_list("entry_point").annotate(n=Count("id"))
    return {str(entry_point): int(n) for entry_point, n in counted}


def targets_report(results: dict[str, Any]) -> None:
    missed = False
    for server, data in results["servers"].items():
        rows = {
            (r["point"]["delay_ms"], r["point"]["concurrency"], r["point"]["streamed"]): r
            for r in data["points"]
        }
        checks = (
            ("p50 added latency, c=1", (0, 1, False), "added_p50_ms", 3.0, "<="),
            ("throughput, c=64", (0, 64, False), "gateway_rps", 300.0, ">="),
            ("streaming TTFB overhead p50", (0, 1, True), "added_ttfb_p50_ms", 3.0, "<="),
        )
        for label, point, field_name, target, sense in checks:
            if point not in rows:
                continue  # not measured in this run (--points)
            value = rows[point][field_name]
            met = value <= target if sense == "<=" else value >= target
            missed |= not met
            print(
                f"{server}: {label} {value:.2f} (target {sense} {target:g}): "
                f"{'met' if met else 'MISSED'}"
            )
    if missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
