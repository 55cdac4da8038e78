"""Soak: the production web process under load with upstream faults and client hang-ups, counted
from outside — every request must end as exactly one log row, no hold may stay open, budget
spend must equal the log, and the gateway itself must answer no 5xx.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orchestrator \
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/soak.py [--workers 1,4]

For each worker count: a scratch database next to DATABASE_URL's (migrated, dropped
afterwards), a fault-injecting OpenAI upstream of the bench's own (its own process), the web
process (`orchestrator_site.serve --workers N`), and two phases:

1. Soak: `--requests` (3,000) at `--concurrency` (64), half streamed, `--disconnects` (10 %)
   of them hung up by the client 40-100 ms after sending, and `--faults` (30 %) of upstream
   answers faulty, drawn evenly from: HTTP 500, 429 and 503; a connection reset before the
   status line; a reset mid-stream; a stream that ends without `[DONE]`; a hang past the
   provider's read timeout (2 s here); malformed JSON in an event. Every task routes to
   `primary`, then `fallback` (both on the fault upstream). Then the counts: outcomes by class,
   gateway-caused 5xx (a 5xx that is not an upstream failure the gateway reports: another code,
   or not the JSON envelope), hung requests (no answer within 30 s), log rows against requests
   sent (after the journal's grace, with the sweep run), open budget holds, and budget drift
   (the budget's spend against the sum of the logged costs).
2. Throughput: `--warmup` (300) requests, then `--throughput-requests` (3,000) timed, with no
   faults and no hang-ups, half streamed, same concurrency; requests per second, and where the
   cores went: CPU seconds per request of the web process (all its workers), the bench's own
   client, the fake upstream, Postgres and Redis (every process of each, as `psutil` reads them).

Keys that the run creates in Redis live under their own CACHE_KEY_PREFIX and are deleted.

One script of about 600 lines, on purpose: a benchmark a user runs and reads alone.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

import orjson  # noqa: E402
import uvloop  # noqa: E402

from bench.gateway import free_port, process_cpu_s, process_started  # noqa: E402

KEY_PREFIX = "orch-bench-soak"
READ_TIMEOUT_S = 2.0
CLIENT_DEADLINE_S = 30.0
FAULTS = (
    "status-500",
    "status-429",
    "status-503",
    "reset-before-status",
    "reset-mid-stream",
    "stream-without-done",
    "hang",
    "malformed-json",
)
# What a gateway reports when its upstreams failed (each with the door's JSON envelope): a 5xx
# with one of these codes is the upstream's fault, told honestly; any other 5xx is the gateway's.
UPSTREAM_CODES = {"MODEL_UNAVAILABLE", "INVALID_RESPONSE", "TIMEOUT", "MODEL_ERROR"}


# --- the fault-injecting upstream -------------------------------------------------------------


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return _chunk(f"data: {data}\n\n".encode())


WORDS = 12
USAGE = {"prompt_tokens": 20, "completion_tokens": WORDS, "total_tokens": 32}


@functools.cache
def _stream_events(model: str | None) -> tuple[bytes, ...]:
    """A streamed answer's events for `model`, framed as HTTP chunks: one per word, then the
    last (finish reason and usage). Built once per model: the bench's upstream takes as little
    of the cores the web process is measured on as it can."""
    base = {"id": "chatcmpl-soak", "created": 1700000000, "model": model}
    events = []
    for index in range(WORDS):
        delta = {"content": "tok "} if index else {"role": "assistant", "content": "tok "}
        chunk = base | {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        events.append(_event(chunk))
    last = base | {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    return (*events, _event(last))


@functools.cache
def _whole_answer(model: str | None) -> bytes:
    """A whole answer for `model`, status line and headers included, built once per model."""
    data = json.dumps(
        {
            "id": "chatcmpl-soak",
            "created": 1700000000,
            "model": model,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "tok " * WORDS},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    ).encode()
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(data)}"
    return head.encode() + b"\r\n\r\n" + data


class FaultyUpstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive OpenAI chat completions (SSE when asked to stream); a share of the
    answers faulty. `GET /stats` answers the faults served so far."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            at = head.lower().find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : line_end if line_end >= 0 else end])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith(b"GET /stats"):
                self._json(200, dict(self.state["served"]))
                continue
            request = orjson.loads(body)
            fault = self._fault()
            if fault == "none" and not request.get("stream"):
                # A whole answer goes out at once, without a task of its own.
                self._write(_whole_answer(request.get("model")))
                continue
            asyncio.get_running_loop().create_task(self._answer(request, fault))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        reason = {200: "OK", 429: "Too Many Requests", 500: "Error", 503: "Unavailable"}[status]
        self._write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\n\r\n".encode()
            + data
        )

    def _fault(self) -> str:
        rng: random.Random = self.state["rng"]
        fault = rng.choice(FAULTS) if rng.random() < self.state["faults"] else "none"
        self.state["served"][fault] += 1
        return fault

    async def _answer(self, request: dict[str, Any], fault: str) -> None:
        if fault.startswith("status-"):
            status = int(fault.removeprefix("status-"))
            self._json(status, {"error": {"message": f"injected {status}", "type": "server"}})
            return
        if fault == "reset-before-status":
            self._reset()
            return
        if fault == "hang":
            await asyncio.sleep(READ_TIMEOUT_S * 3)
            self._reset()
            return
        model = request.get("model")
        if not request.get("stream"):
            self._write(_whole_answer(model))
            return
        self._write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        events = _stream_events(model)
        for index, event in enumerate(events[:WORDS]):
            if fault == "reset-mid-stream" and index == WORDS // 2:
                self._reset()
                return
            if fault == "malformed-json" and index == WORDS // 2:
                self._write(_event('{"choices": [{"delta": {"content": '))
                continue
            self._write(event)
            if index % 4 == 3:
                await asyncio.sleep(0.005)
        self._write(events[WORDS])
        if fault != "stream-without-done":
            self._write(_event("[DONE]"))
        self._write(b"0\r\n\r\n")

    def _reset(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


async def upstream_serve(port: int, faults: float, seed: int) -> None:
    state: dict[str, Any] = {"rng": random.Random(seed), "faults": faults, "served": Counter()}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FaultyUpstream(state), "127.0.0.1", port, backlog=2048
    )
    async with server:
        await server.serve_forever()


# --- the load --------------------------------------------------------------------------------


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    gateway_5xx: list[str] = field(default_factory=list)
    hung: int = 0
    sent: int = 0
    wall_s: float = 0.0


class AnswerReader(asyncio.Protocol):
    """One keep-alive client connection: `ask(request)` writes a request and resolves with
    (status, header fields, body) once the whole answer has arrived (Content-Length or
    chunked). A protocol, not a StreamReader, so the client costs the cores it shares with the
    web process as little as it can."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def ask(self, request: bytes) -> asyncio.Future[tuple[int, dict[str, str], bytes]]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.answer

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.answer is None or self.answer.done():
            return
        parsed = _answer_parse(self.buffer)
        if parsed is not None:
            answer, used = parsed
            del self.buffer[:used]
            self.answer.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError("the gateway closed the connection"))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _answer_parse(buffer: bytearray) -> tuple[tuple[int, dict[str, str], bytes], int] | None:
    """A whole answer at the start of `buffer` and the bytes it used, or None while partial."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    raw_head = bytes(buffer[:end])
    status = int(raw_head.split(b" ", 2)[1])
    fields = {}
    for line in raw_head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    at = end + 4
    if "content-length" in fields:
        length = int(fields["content-length"])
        if len(buffer) < at + length:
            return None
        return (status, fields, bytes(buffer[at : at + length])), at + length
    pieces: list[bytes] = []
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            if len(buffer) < at + 2:
                return None
            return (status, fields, b"".join(pieces)), at + 2
        if len(buffer) < at + size + 2:
            return None
        pieces.append(bytes(buffer[at : at + size]))
        at += size + 2


def classify(status: int, fields: dict[str, str], data: bytes, stream: bool) -> tuple[str, bool]:
    """(outcome class, whether the gateway itself failed)."""
    if status == 200 and stream:
        text = data.decode("utf-8", "replace")
        if '"error"' in text:
            return "200 stream, error event", False
        if text.rstrip().endswith("data: [DONE]"):
            return "200 stream, complete", False
        return "200 stream, cut without [DONE]", True
    if status == 200:
        return "200", False
    if "json" not in fields.get("content-type", ""):
        return f"{status} not JSON", True
    error = json.loads(data).get("error") or {}
    code = str(error.get("code"))
    return f"{status} {code}", status >= 500 and code not in UPSTREAM_CODES | {
        "context_length_exceeded"
    }


def body_for(index: int, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": "auto",
        "messages": [{"role": "user", "content": f"Say hello to reader number {index}."}],
        "max_tokens": 64,
        "stream": stream,
    }
    return json.dumps(body).encode()


async def load(
    port: int,
    key: str,
    *,
    requests: int,
    concurrency: int,
    disconnects: float,
    seed: int,
) -> Tally:
    tally = Tally()
    rng = random.Random(seed)
    plan = [
        (i, rng.random() < 0.5, rng.uniform(0.04, 0.1) if rng.random() < disconnects else None)
        for i in range(requests)
    ]
    queue = iter(plan)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
    )

    async def worker() -> None:
        loop = asyncio.get_running_loop()
        connection: AnswerReader | None = None
        for index, stream, hang_up_after in queue:
            if connection is None:
                _, connection = await loop.create_connection(AnswerReader, "127.0.0.1", port)
            body = body_for(index, stream)
            answer = connection.ask(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
            tally.sent += 1
            if hang_up_after is not None:
                await asyncio.sleep(hang_up_after)
                connection.abort()
                connection = None
                tally.outcomes["client hung up"] += 1
                continue
            try:
                status, fields, data = await asyncio.wait_for(answer, CLIENT_DEADLINE_S)
            except TimeoutError:
                tally.hung += 1
                tally.outcomes["hung"] += 1
                connection.abort()
                connection = None
                continue
            except ConnectionError as exc:
                tally.outcomes["connection dropped by the gateway"] += 1
                tally.gateway_5xx.append(f"{type(exc).__name__}")
                connection.abort()
                connection = None
                continue
            outcome, gateway_failed = classify(status, fields, data, stream)
            tally.outcomes[outcome] += 1
            if gateway_failed:
                tally.gateway_5xx.append(f"{outcome}: {data[:200]!r}")
            if fields.get("connection", "").lower() == "close":
                connection.abort()
                connection = None
        if connection is not None and connection.transport is not None:
            connection.transport.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.wall_s = time.perf_counter() - began
    return tally


# --- set-up and the counts -------------------------------------------------------------------


def registry_create(upstream_url: str) -> str:
    from gateway.apikeys import apikey_create
    from providers.models import LLMModel, Provider
    from routing.engine.taxonomy import TASK_TYPES
    from routing.models import Budget, RoutingPolicy, RoutingRule, RuleFallback

    models = {}
    for name in ("primary", "fallback"):
        provider = Provider.objects.create(
            name=name,
            kind="openai_compatible",
            base_url=f"{upstream_url}/{name}/v1",
            locality="cloud",
            read_timeout_s=READ_TIMEOUT_S,
        )
        models[name] = LLMModel.objects.create(
            provider=provider,
            name=f"{name}-model",
            tier="standard",
            input_price_per_mtok_usd=Decimal("0.15"),
            output_price_per_mtok_usd=Decimal("0.60"),
        )
    policy = RoutingPolicy.objects.create(name="soak", is_default=True)
    for task_type in TASK_TYPES:
        rule = RoutingRule.objects.create(
            policy=policy, task_type=task_type, primary=models["primary"], tiers=[]
        )
        RuleFallback.objects.create(rule=rule, model=models["fallback"], position=1)
    Budget.objects.create(name="soak-global", limit_usd=Decimal("1000000"))
    return apikey_create(name="soak", rpm_limit=10_000_000, tpm_limit=1_000_000_000).plaintext


def settled_rows(expected: int, timeout_s: float) -> int:
    """Rows in the scratch log once they stop growing (or reach `expected`)."""
    from analytics.models import RequestLog

    deadline = time.monotonic() + timeout_s
    count, previous, stable_since = RequestLog.objects.count(), -1, time.monotonic()
    while time.monotonic() < deadline:
        if count >= expected and count == previous:
            break
        if count != previous:
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since > 5:
            break
        time.sleep(0.5)
        count, previous = RequestLog.objects.count(), count
    return count


def counts(sent: int) -> dict[str, Any]:
    from django.db.models import Sum

    from analytics.models import RequestLog
    from routing.models import BudgetPeriod, BudgetReservation
    from routing.pipeline import journal

    rows_before_sweep = settled_rows(sent, timeout_s=60)
    # What the journal still holds is what a crash would have left to the sweep: run it now,
    # as if its grace period had passed, and count again.
    swept = journal.journal_sweep(now=time.time() + journal.grace_s() + 1)
    rows = RequestLog.objects.count()
    distinct = RequestLog.objects.values("request_id").distinct().count()
    logged_cost = RequestLog.objects.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
    spent = BudgetPeriod.objects.aggregate(total=Sum("spent_usd"))["total"] or Decimal(0)
    held = BudgetReservation.objects.filter(state=BudgetReservation.State.HELD).count()
    by_status = Counter(RequestLog.objects.values_list("status", flat=True))
    # Why requests failed: the attempts of each failed row, by the outcome of each attempt.
    attempts: Counter[str] = Counter()
    for trace in RequestLog.objects.exclude(status="success").values_list(
        "decision_trace", flat=True
    ):
        for attempt in (trace or {}).get("attempts", []):
            attempts[str(attempt.get("outcome") or attempt)[:80]] += 1
    return {
        "rows_before_sweep": rows_before_sweep,
        "rows_written_by_sweep": swept,
        "rows": rows,
        "rows_lost": max(0, sent - distinct),
        "rows_extra": rows - sent if rows > sent else 0,
        "rows_by_status": dict(by_status),
        "attempts_of_rows_not_successful": dict(attempts.most_common(12)),
        "open_holds": held,
        "budget_spent_usd": f"{spent:f}",
        "logged_cost_usd": f"{logged_cost:f}",
        "budget_drift_usd": f"{spent - logged_cost:f}",
    }


def scratch_env(scratch: str, workdir: Path) -> dict[str, str]:
    parts = urlsplit(os.environ["DATABASE_URL"])
    env = dict(os.environ)
    env |= {
        "DATABASE_URL": urlunsplit(parts._replace(path=f"/{scratch}")),
        "DJANGO_SETTINGS_MODULE": "soak_settings",
        "PYTHONPATH": f"{workdir}:{ROOT}",
        "DEBUG": "false",
        "ORCHESTRATOR_AGENT_SAMPLING": "off",
        "CACHE_KEY_PREFIX": KEY_PREFIX,
    }
    return env


class CpuSplit:
    """CPU seconds spent from now on by the web process (its workers included), this bench's
    client, the fake upstream, Postgres and Redis (every process of each, as psutil reads
    them: the whole machine's, so another program's Postgres work counts too)."""

    def __init__(self, *, web: int, upstream: int) -> None:
        import psutil  # type: ignore[import-untyped]

        # Read at the start and the end only: no sampling thread in the client's process.
        self.web, self.upstream = psutil.Process(web), psutil.Process(upstream)
        self.before = self._now()

    def _now(self) -> dict[str, float]:
        import psutil

        services = {"postgres": 0.0, "redis": 0.0}
        for process in psutil.process_iter(["name", "cpu_times"]):
            name, times = process.info["name"] or "", process.info["cpu_times"]
            for service in services:
                if times is not None and name.startswith(service):
                    services[service] += times.user + times.system
        client = os.times()
        return {
            "web": process_cpu_s(self.web),
            "bench client": client.user + client.system,
            "upstream": process_cpu_s(self.upstream),
            **services,
        }

    def per_request_ms(self, requests: int) -> dict[str, float]:
        after = self._now()
        split = {
            name: round((after[name] - self.before[name]) * 1000 / max(1, requests), 3)
            for name in after
        }
        split["total"] = round(sum(split.values()), 3)
        return split


class DatabaseWork:
    """What Postgres did for the scratch database from now on, per request: transactions
    committed, connections opened, rows inserted, updated (and of those, updated in place:
    HOT) and fetched, and each table's writes and reads, from `pg_stat_database` and
    `pg_stat_user_tables` (backends report their counts when idle, at most once a second, so
    `per_request` waits for them); the log row's size; and the Redis commands run, by command
    (`INFO commandstats`, the whole server's)."""

    def __init__(self) -> None:
        self.before = self._now()

    @staticmethod
    def _now() -> dict[str, int]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched,"
                " sessions FROM pg_stat_database WHERE datname = current_database()"
            )
            commit, rollback, inserted, updated, fetched, sessions = cursor.fetchone()
            cursor.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, idx_tup_fetch,"
                " seq_tup_read FROM pg_stat_user_tables"
            )
            tables = {
                f"{name} {kind}": value or 0
                for name, ins, upd, hot, fetched, scanned in cursor.fetchall()
                for kind, value in (
                    ("ins", ins),
                    ("upd", upd),
                    ("hot", hot),
                    ("fetched by index", fetched),
                    ("read by scans", scanned),
                )
            }
        return {
            **redis_commands(),
            "commits": commit,
            "rollbacks": rollback,
            "connections opened": sessions,
            "rows inserted": inserted,
            "rows updated": updated,
            "rows fetched": fetched,
            **tables,
        }

    def per_request(self, requests: int) -> dict[str, float]:
        time.sleep(2.5)  # every backend's counts reported
        after = self._now()
        work = {
            name: round((after[name] - self.before.get(name, 0)) / max(1, requests), 2)
            for name in after
        }
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT avg(pg_column_size(l.*)), avg(pg_column_size(decision_trace)),"
                " avg(octet_length(decision_trace::text)) FROM analytics_requestlog AS l"
            )
            row, trace, trace_text = cursor.fetchone()
        work |= {
            "log row bytes": round(float(row or 0)),
            "decision trace bytes stored": round(float(trace or 0)),
            "decision trace bytes as text": round(float(trace_text or 0)),
        }
        return {name: value for name, value in work.items() if value}


def run_one(workers: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from django.db import connection, connections

    from analytics.models import RequestLog
    from providers.models import Provider
    from routing.models import Budget, BudgetReservation, RoutingPolicy

    scratch = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    result: dict[str, Any] = {"workers": workers}
    log_dir = ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        env = scratch_env(scratch, workdir)
        for phase, faults, disconnects, requests in (
            ("soak", args.faults, args.disconnects, args.requests),
            ("throughput", 0.0, 0.0, args.throughput_requests),
        ):
            if phase not in args.phases.split(","):
                continue
            # Each phase starts from an empty log, no budget and no registry, and no guard
            # state in Redis (breakers, rate limits, the journal).
            redis_clear()
            RequestLog.objects.all().delete()
            BudgetReservation.objects.all().delete()
            Budget.objects.all().delete()
            RoutingPolicy.objects.all().delete()
            Provider.objects.all().delete()
            upstream_port, port = free_port(), free_port()
            key = registry_create(f"http://127.0.0.1:{upstream_port}")
            for conn in connections.all():
                if hasattr(conn, "close_pool"):
                    conn.close_pool()
            upstream_cmd = [
                sys.executable,
                __file__,
                "--serve-upstream",
                str(upstream_port),
                "--faults",
                str(faults),
                "--seed",
                str(args.seed),
            ]
            serve = [sys.executable, "-m", "orchestrator_site.serve", "--port", str(port)]
            if workers > 1:
                serve += ["--workers", str(workers)]
            with (
                process_started(
                    upstream_cmd, env, upstream_port, log_dir / "soak-upstream.log"
                ) as upstream,
                process_started(serve, env, port, log_dir / f"soak-web-{workers}.log") as web,
            ):
                time.sleep(1.0 + workers)  # every worker process up
                warm = 0
                if phase == "throughput" and args.warmup:
                    warm = uvloop.run(
                        load(
                            port,
                            key,
                            requests=args.warmup,
                            concurrency=args.concurrency,
                            disconnects=0.0,
                            seed=args.seed + 1,
                        )
                    ).sent
                cpu, database = CpuSplit(web=web.pid, upstream=upstream.pid), DatabaseWork()
                tally = uvloop.run(
                    load(
                        port,
                        key,
                        requests=requests,
                        concurrency=args.concurrency,
                        disconnects=disconnects,
                        seed=args.seed,
                    )
                )
                phase_result: dict[str, Any] = {
                    "requests": tally.sent,
                    "wall_s": round(tally.wall_s, 2),
                    "requests_per_s": round(tally.sent / tally.wall_s, 1),
                    "cpu_ms_per_request": cpu.per_request_ms(tally.sent),
                    "postgres_per_request": database.per_request(tally.sent),
                    "outcomes": dict(tally.outcomes.most_common()),
                    "gateway_caused_5xx": len(tally.gateway_5xx),
                    "gateway_caused_5xx_examples": tally.gateway_5xx[:5],
                    "hung": tally.hung,
                }
                if warm:
                    phase_result["warmup_requests"] = warm
                if faults:
                    phase_result["upstream_served"] = upstream_stats(upstream_port)
                phase_result |= counts(tally.sent + warm)
            result[phase] = phase_result
            print(f"  {workers} worker(s), {phase}: {json.dumps(phase_result, indent=2)}")
    finally:
        for conn in connections.all():
            if hasattr(conn, "close_pool"):
                conn.close_pool()
        connection.creation.destroy_test_db(scratch, verbosity=0)
    return result


def bench_redis() -> Any:
    """A client of the Redis the web process uses (REDIS_URL)."""
    import redis
    from django.conf import settings

    assert settings.REDIS_URL
    return redis.Redis.from_url(settings.REDIS_URL)


def redis_commands() -> dict[str, int]:
    stats = bench_redis().info("commandstats")
    return {f"redis {name.removeprefix('cmdstat_')}": int(v["calls"]) for name, v in stats.items()}


def redis_clear() -> None:
    client = bench_redis()
    for key in client.scan_iter(f"*{KEY_PREFIX}*", count=1000):
        client.delete(key)


def upstream_stats(port: int) -> dict[str, int]:
    import httpx

    return dict(httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,4", help="worker counts to run, comma-separated")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--throughput-requests", type=int, default=3000)
    parser.add_argument("--phases", default="soak,throughput", help="which phases to run")
    parser.add_argument("--warmup", type=int, default=300, help="untimed, before the throughput")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--faults", type=float, default=0.3)
    parser.add_argument("--disconnects", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--breaker-threshold", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        uvloop.run(upstream_serve(args.serve_upstream, args.faults, args.seed))
        return

    import django

    os.environ["CACHE_KEY_PREFIX"] = KEY_PREFIX
    django.setup()
    import logging

    from django.conf import settings
    from django.db import connection

    logging.getLogger("httpx").setLevel(logging.WARNING)
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        sys.exit("bench/soak.py runs on Postgres and Redis: set DATABASE_URL and REDIS_URL")
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    # The breaker's threshold is raised so that every request meets the faults and the
    # fallback: at its default (5 failures a minute) both circuits would be open most of the
    # run and most requests refused at once, which tests the breaker, not the rest.
    (workdir / "soak_settings.py").write_text(
        "from orchestrator_site.settings import *  # noqa: F403\n"
        "ORCHESTRATOR_RESPONSE_CACHE_ENABLED = False\n"
        f"ORCHESTRATOR_BREAKER_FAILURE_THRESHOLD = {args.breaker_threshold}\n"
    )
    results: dict[str, Any] = {"load_average_before": os.getloadavg(), "runs": []}
    try:
        for workers in (int(w) for w in args.workers.split(",")):
            print(f"{workers} worker(s)")
            results["runs"].append(run_one(workers, args, workdir))
    finally:
        redis_clear()
    runs = results["runs"]
    for run in runs:
        if "throughput" in run:
            phase = run["throughput"]
            print(
                f"throughput, {run['workers']} worker(s): {phase['requests_per_s']} req/s, "
                f"CPU ms per request {json.dumps(phase['cpu_ms_per_request'])}"
            )
    # Worker counts may repeat (`--workers 1,4,4,1`, to even out a machine whose speed drifts):
    # the ratio is of the medians.
    rates: dict[int, list[float]] = {}
    for run in runs:
        if "throughput" in run:
            rates.setdefault(run["workers"], []).append(run["throughput"]["requests_per_s"])
    # Under a machine whose speed drifts, the ratio within each pair of neighbouring runs
    # (1,4 then 4,1 ...) is the steadier figure.
    pairs = [
        (a, b)
        for a, b in zip(runs[::2], runs[1::2], strict=False)
        if "throughput" in a and "throughput" in b and a["workers"] != b["workers"]
    ]
    if pairs:
        low = min(runs[0]["workers"], runs[1]["workers"])
        ratios = []
        for a, b in pairs:
            one, many = (a, b) if a["workers"] == low else (b, a)
            ratios.append(
                many["throughput"]["requests_per_s"] / one["throughput"]["requests_per_s"]
            )
        results["pair_ratios"] = [round(r, 3) for r in ratios]
        print(
            f"throughput ratio within neighbouring pairs: "
            f"{', '.join(f'{r:.2f}x' for r in ratios)}; median {statistics.median(ratios):.2f}x"
        )
    if len(rates) > 1:
        (base_workers, base_rates), *others = rates.items()
        base = statistics.median(base_rates)
        for workers, each in others:
            ratio = statistics.median(each) / base
            results.setdefault("throughput_ratios", {})[f"{workers}/{base_workers}"] = ratio
            print(
                f"throughput, {workers} workers / {base_workers}: {ratio:.2f}x (medians of "
                f"{len(each)} and {len(base_rates)} runs)"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
