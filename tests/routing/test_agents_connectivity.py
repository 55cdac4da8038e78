"""Connectivity probes against real local servers that answer, delay, throttle or drop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from routing.agents.connectivity import (
    ConnectivityAgent,
    ConnectivityThresholds,
    ProbeResult,
    connectivity_state,
)

FAST = ConnectivityThresholds(attempts=3, timeout_s=1.0)


async def _serve(delay_s: float = 0.0, body: bytes = b"{}", chunk_delay_s: float = 0.0):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(delay_s)
        writer.write(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        for start in range(0, len(body), 16 * 1024):
            writer.write(body[start : start + 16 * 1024])
            await writer.drain()
            await asyncio.sleep(chunk_delay_s)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1"


@pytest.fixture
async def fast_server() -> AsyncIterator[str]:
    server, url = await _serve()
    async with server:
        yield url


@pytest.fixture
async def slow_server() -> AsyncIterator[str]:
    server, url = await _serve(delay_s=0.3)
    async with server:
        yield url


@pytest.fixture
async def throttled_server() -> AsyncIterator[str]:
    # 64 KiB in 4 chunks with 100 ms between them: about 1.7 Mbps, well under 5.
    server, url = await _serve(body=b"x" * 64 * 1024, chunk_delay_s=0.1)
    async with server:
        yield url


@pytest.fixture
def dropping_url() -> str:
    """A port that accepts nothing: connections are refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
async def blackhole_url() -> AsyncIterator[str]:
    """Accepts the connection and never answers: every probe times out."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


async def test_fast_provider_is_optimal_even_when_it_answers_401(fast_server):
    checks = await ConnectivityAgent([("openai", fast_server)], FAST).acheck()

    overall, target = checks
    assert (target.target, target.state) == ("openai", "OPTIMAL")
    assert target.metrics["packet_loss_pct"] == 0.0
    assert target.metrics["latency_ms"] < 200
    assert target.metrics["bandwidth_mbps"] is None
    assert (overall.target, overall.state) == ("", "OPTIMAL")
    assert overall.metrics == {"openai": "OPTIMAL"}


async def test_slow_provider_is_degraded_by_latency(slow_server):
    agent = ConnectivityAgent([("anthropic", slow_server)], FAST)

    _, target = await agent.acheck()

    assert target.state == "DEGRADED"
    assert target.reason.startswith("latency ")
    assert target.metrics["latency_ms"] >= 300


async def test_throttled_provider_is_degraded_by_bandwidth(throttled_server):
    _, target = await ConnectivityAgent([("gemini", throttled_server)], FAST).acheck()

    assert target.state == "DEGRADED"
    assert target.metrics["bandwidth_mbps"] < 5
    assert target.reason.startswith("bandwidth ")


async def test_refused_provider_is_disconnected(dropping_url):
    overall, target = await ConnectivityAgent([("openai", dropping_url)], FAST).acheck()

    assert (target.state, target.proceed) == ("DISCONNECTED", False)
    assert target.metrics["packet_loss_pct"] == 100.0
    assert target.reason.startswith("all 3 probes failed (ConnectError")
    assert overall.state == "DISCONNECTED"


async def test_silent_provider_times_out_within_bounds(blackhole_url):
    agent = ConnectivityAgent(
        [("openai", blackhole_url)], ConnectivityThresholds(attempts=2, timeout_s=0.2)
    )

    started = asyncio.get_running_loop().time()
    _, target = await agent.acheck()

    assert target.state == "DISCONNECTED"
    assert "ReadTimeout" in target.reason
    assert asyncio.get_running_loop().time() - started < 1.5


async def test_overall_is_the_best_provider(fast_server, dropping_url):
    overall, *targets = await ConnectivityAgent(
        [("anthropic", dropping_url), ("openai", fast_server)], FAST
    ).acheck()

    assert [(t.target, t.state) for t in targets] == [
        ("anthropic", "DISCONNECTED"),
        ("openai", "OPTIMAL"),
    ]
    assert overall.state == "OPTIMAL"


async def test_no_cloud_provider_reports_no_targets():
    (overall,) = await ConnectivityAgent([], FAST).acheck()

    assert overall.state == "no_targets"


def test_sync_check_runs_the_probes(fast_server_sync):
    overall, target = ConnectivityAgent([("openai", fast_server_sync)], FAST).check()

    assert (overall.state, target.state) == ("OPTIMAL", "OPTIMAL")


@pytest.fixture
def fast_server_sync():
    import threading

    ready: dict[str, str] = {}
    loop = asyncio.new_event_loop()

    async def main(started: threading.Event) -> None:
        server, url = await _serve()
        ready["url"] = url
        started.set()
        async with server:
            await asyncio.sleep(10)

    started = threading.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(started),), daemon=True)
    thread.start()
    started.wait(5)
    yield ready["url"]


@pytest.mark.parametrize(
    ("latencies", "bandwidth", "previous", "state"),
    [
        ((250.0, 150.0, 170.0), None, None, "OPTIMAL"),  # median 170 ms
        ((170.0, 170.0, 170.0), None, "DEGRADED", "DEGRADED"),  # must fall under 160 to recover
        ((150.0, 150.0, 150.0), None, "DEGRADED", "OPTIMAL"),
        ((50.0, 50.0), None, "OPTIMAL", "DEGRADED"),  # 1 of 3 lost: 33 % > 10 %
        ((50.0, 50.0, 50.0), 5.5, "DEGRADED", "DEGRADED"),  # needs 6 Mbps to recover
        ((50.0, 50.0, 50.0), 6.5, "DEGRADED", "OPTIMAL"),
        ((), None, "OPTIMAL", "DISCONNECTED"),
    ],
)
def test_connectivity_state_and_hysteresis(latencies, bandwidth, previous, state):
    result = ProbeResult(3, latencies, bandwidth, "ConnectError: refused")

    assert connectivity_state(result, ConnectivityThresholds(), previous)[0] == state
