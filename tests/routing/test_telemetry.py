"""The telemetry socket: one publisher per process, real Postgres, Redis and psutil readings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from analytics.models import RequestLog
from core.consumers import CLOSE_UNAUTHENTICATED
from orchestrator_site.asgi import application
from providers.models import LLMModel, Provider
from routing import sampling, telemetry
from routing.guards.breaker import BreakerConfig, CircuitBreakers
from routing.models import Budget, BudgetPeriod

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
HOST = (b"host", b"127.0.0.1:8000")
TIMEOUT_S = 10


@pytest.fixture(autouse=True)
def _fast_telemetry(settings: Any) -> Iterator[None]:
    settings.ORCHESTRATOR_TELEMETRY_INTERVAL_S = 0.2
    keys = [telemetry.LEASE_KEY, telemetry.HISTORY_KEY, telemetry.STREAMS_KEY]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def _session(username: str) -> str:
    user = get_user_model().objects.create_user(username, password="pw-123-secret")
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def connect(username: str) -> WebsocketCommunicator:
    session = await database_sync_to_async(_session)(username)
    socket = WebsocketCommunicator(
        application,
        "/ws/telemetry/",
        headers=[HOST, ORIGIN, (b"cookie", f"sessionid={session}".encode())],
    )
    connected, _ = await socket.connect()
    assert connected
    return socket


async def next_sample(socket: WebsocketCommunicator) -> dict[str, Any]:
    while True:
        frame = await socket.receive_json_from(timeout=TIMEOUT_S)
        if frame["type"] == "telemetry.sample":
            return frame


def _world() -> LLMModel:
    now = timezone.now()
    for status, latency, tokens in (("success", 100, 30), ("success", 300, 60), ("error", 0, 0)):
        RequestLog.objects.create(
            created_at=now - timedelta(seconds=5),
            entry_point="chat",
            status=status,
            cost_state="reported",
            latency_ms=latency,
            output_tokens=tokens,
        )
    # Outside the one-minute window: not counted.
    RequestLog.objects.create(
        created_at=now - timedelta(minutes=5), entry_point="chat", status="error", cost_state="none"
    )
    provider = Provider.objects.create(
        name="openai", kind="openai", base_url="http://127.0.0.1:9/v1", locality="cloud"
    )
    model = LLMModel.objects.create(provider=provider, name="mini")
    budget = Budget.objects.create(name="monthly", limit_usd=Decimal("10"))
    BudgetPeriod.objects.create(
        budget=budget,
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
        limit_usd=Decimal("10"),
        spent_usd=Decimal("2.5"),
    )
    cache.set(
        sampling.SNAPSHOT_KEY,
        {
            "taken_at": now.isoformat(),
            "agents": [
                _entry("resources", "", "AVAILABLE", {}, now),
                _entry("connectivity", "", "OPTIMAL", {}, now),
                _entry(
                    "connectivity",
                    "openai",
                    "OPTIMAL",
                    {"latency_ms": 42.0, "packet_loss_pct": 0.0},
                    now,
                ),
            ],
        },
        timeout=None,
    )
    return model


def _entry(
    agent: str, target: str, state: str, metrics: dict[str, Any], now: Any
) -> dict[str, Any]:
    return {
        "agent": agent,
        "target": target,
        "state": state,
        "ok": True,
        "reason": f"{agent} {state}",
        "metrics": metrics,
        "sampled_at": now.isoformat(),
    }


async def test_sample_carries_machine_agents_traffic_models_and_budgets() -> None:
    await database_sync_to_async(_world)()
    # Counted before the socket opens: the first sample may be taken as soon as it does.
    async with telemetry.stream_tracked():
        socket = await connect("ana")
        history = await socket.receive_json_from(timeout=TIMEOUT_S)
        sample = await next_sample(socket)

    # Nothing sampled yet: the last 15 minutes are rebuilt from the log, a point every 10 s.
    assert history["type"] == "telemetry.history"
    assert len(history["points"]) == 90
    assert history["points"][-1]["requests_per_s"] == 0.05
    assert history["points"][-1]["active_streams"] is None
    host = sample["host"]
    assert 0.0 <= host["cpu_pct"] <= 100.0
    assert 0.0 < host["memory_pct"] < 100.0
    assert host["load_1m"] >= 0.0
    assert isinstance(host["gpus"], list)
    assert sample["resource_state"] == "AVAILABLE"
    assert sample["connectivity"] == [
        {"provider": "openai", "state": "OPTIMAL", "latency_ms": 42.0, "packet_loss_pct": 0.0}
    ]
    assert [(a["agent"], a["target"], a["state"]) for a in sample["agents"]] == [
        ("resources", "", "AVAILABLE"),
        ("connectivity", "", "OPTIMAL"),
        ("connectivity", "openai", "OPTIMAL"),
    ]
    assert sample["traffic"] == {
        "window_s": 60,
        "requests": 3,
        "requests_per_s": 0.05,
        "p50_latency_ms": 100,
        "p95_latency_ms": 300,
        "tokens_per_s": 1.5,
        "error_rate": 0.3333,
        "active_streams": 1,
    }
    assert sample["models"] == [
        {
            "ref": "openai:mini",
            "locality": "cloud",
            "enabled": True,
            "health": "unknown",
            "health_latency_ms": None,
            "breaker": "closed",
            "breaker_failures": 0,
        }
    ]
    assert sample["budgets"] == [
        {
            "name": "monthly",
            "scope": "global",
            "limit_usd": "10.00000000",
            "spent_usd": "2.50000000",
            "reserved_usd": "0.00000000",
            "used_pct": 25.0,
        }
    ]
    await socket.disconnect()


async def test_breaker_state_and_stream_count_follow_the_world() -> None:
    await database_sync_to_async(_world)()
    socket = await connect("ana")
    first = await next_sample(socket)

    config = BreakerConfig.for_model()
    breakers = CircuitBreakers()
    # Failures are counted per clock-aligned window (60 s): the failures and the sample that
    # shows them must fall in one window, so a run a moment before a boundary waits for it.
    to_boundary = config.window_s - time.time() % config.window_s
    if to_boundary < 5:
        await asyncio.sleep(to_boundary + 0.1)
    for _ in range(config.failure_threshold):
        permit = await database_sync_to_async(breakers.allow)("openai:mini", config)
        await database_sync_to_async(breakers.record_failure)(permit, config)
    sample = await next_sample(socket)
    while sample["models"][0]["breaker"] == "closed":
        sample = await next_sample(socket)

    assert first["models"][0]["breaker"] == "closed"
    assert first["traffic"]["active_streams"] == 0
    assert sample["models"][0]["breaker"] == "open"
    assert sample["models"][0]["breaker_failures"] == config.failure_threshold
    await socket.disconnect()


async def test_one_publisher_serves_every_socket_and_history_builds_up() -> None:
    first = await connect("ana")
    second = await connect("bob")
    await first.receive_json_from(timeout=TIMEOUT_S)
    await second.receive_json_from(timeout=TIMEOUT_S)

    started = time.monotonic()
    seen: list[str] = []
    while time.monotonic() - started < 1.5:
        seen.append((await next_sample(first))["at"])
    from_second = [(await next_sample(second))["at"] for _ in range(2)]

    # A loop per socket would double the rate: at 0.2 s, 1.5 s holds at most 9 samples.
    assert len(seen) == len(set(seen)) <= 9
    # Both sockets are in the one group: the second received the very same samples (from the
    # first one published after it joined, which on a loaded machine may be the second one).
    assert from_second[0] in seen[:2]
    joined = seen.index(from_second[0])
    assert from_second == seen[joined : joined + 2]
    assert not telemetry.publisher.task.done()  # type: ignore[union-attr]
    third = await connect("eve")
    history = await third.receive_json_from(timeout=TIMEOUT_S)
    assert history["type"] == "telemetry.history"
    assert len(history["points"]) >= len(seen)
    assert set(history["points"][-1]) == {
        "at",
        "cpu_pct",
        "memory_pct",
        "load_1m",
        "gpu_pct",
        "requests_per_s",
        "p50_latency_ms",
        "p95_latency_ms",
        "tokens_per_s",
        "error_rate",
        "active_streams",
    }
    for socket in (first, second, third):
        await socket.disconnect()
    await asyncio.sleep(0.5)
    assert telemetry.publisher.subscribers == 0
    assert telemetry.publisher.task.done()  # type: ignore[union-attr]


async def test_anonymous_telemetry_socket_is_closed_with_4401() -> None:
    socket = WebsocketCommunicator(application, "/ws/telemetry/", headers=[HOST, ORIGIN])

    connected, _ = await socket.connect()

    assert connected
    assert (await socket.receive_json_from())["code"] == "AUTHENTICATION_FAILED"
    assert await socket.receive_output() == {
        "type": "websocket.close",
        "code": CLOSE_UNAUTHENTICATED,
    }
    await socket.disconnect()


async def test_streams_opening_and_closing_at_once_are_counted_exactly() -> None:
    """The gauge is one atomic step per change, shared by every process: 200 streams that open
    together, then close together, leave exactly 200, then exactly 0, and the gauge keeps its
    own lifetime (a read-then-write would lose changes and reset it)."""
    from core.redis.pool import redis_client

    opened: list[int] = []
    all_open = asyncio.Event()

    async def opened_then_closed(gate: asyncio.Event) -> None:
        async with telemetry.stream_tracked():
            opened.append(1)
            if len(opened) == 200:
                all_open.set()
            await gate.wait()

    gate = asyncio.Event()
    streams = [asyncio.create_task(opened_then_closed(gate)) for _ in range(200)]
    await asyncio.wait_for(all_open.wait(), timeout=10)
    assert await cache.aget(telemetry.STREAMS_KEY) == 200
    client = redis_client(cache)
    assert client is not None
    ttl_s = client.ttl(cache.make_key(telemetry.STREAMS_KEY))

    gate.set()
    await asyncio.gather(*streams)

    assert await cache.aget(telemetry.STREAMS_KEY) == 0
    assert telemetry.STREAMS_TTL_S - 5 <= ttl_s <= telemetry.STREAMS_TTL_S
