"""Connectivity agent: latency, packet loss and bandwidth to each enabled cloud provider.

Each check sends a few bounded GET probes to a provider's base URL on fresh connections. Any
HTTP answer (401 and 404 included) counts as reachable; a timeout or connection error is a
lost probe. Bandwidth is measured only when a response is large enough to time its transfer.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from routing.agents.base import AgentCheck

OPTIMAL, DEGRADED, DISCONNECTED = "OPTIMAL", "DEGRADED", "DISCONNECTED"
NO_TARGETS = "no_targets"
RANK = {DISCONNECTED: 0, DEGRADED: 1, OPTIMAL: 2}
MIN_BANDWIDTH_BYTES = 32 * 1024


@dataclass(frozen=True, slots=True)
class ConnectivityThresholds:
    latency_ms: float = 200.0
    packet_loss_pct: float = 10.0
    bandwidth_mbps: float = 5.0
    attempts: int = 3
    timeout_s: float = 2.0
    # Leaving DEGRADED needs latency this share below (and bandwidth above) the threshold.
    release_share: float = 0.2


@dataclass(frozen=True, slots=True)
class ProbeResult:
    attempts: int
    latencies_ms: tuple[float, ...]
    bandwidth_mbps: float | None
    last_error: str = ""

    @property
    def packet_loss_pct(self) -> float:
        return 100.0 * (self.attempts - len(self.latencies_ms)) / self.attempts

    @property
    def latency_ms(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None


async def probe_url(
    client: httpx.AsyncClient,
    url: str,
    *,
    attempts: int,
    timer: Callable[[], float] = time.perf_counter,
) -> ProbeResult:
    latencies: list[float] = []
    best_bandwidth: float | None = None
    last_error = ""
    for _ in range(attempts):
        started = timer()
        try:
            async with client.stream("GET", url) as response:
                first_byte = timer()
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                finished = timer()
        except httpx.HTTPError as error:
            last_error = f"{type(error).__name__}: {error}"[:200]
            continue
        latencies.append(round((first_byte - started) * 1000, 2))
        transfer_s = finished - first_byte
        if received >= MIN_BANDWIDTH_BYTES and transfer_s > 0:
            mbps = received * 8 / transfer_s / 1e6
            best_bandwidth = mbps if best_bandwidth is None else max(best_bandwidth, mbps)
    bandwidth = round(best_bandwidth, 3) if best_bandwidth is not None else None
    return ProbeResult(attempts, tuple(latencies), bandwidth, last_error)


def connectivity_state(
    result: ProbeResult, thresholds: ConnectivityThresholds, previous: str | None
) -> tuple[str, str]:
    if not result.latencies_ms:
        return DISCONNECTED, f"all {result.attempts} probes failed ({result.last_error})"
    # A state already DEGRADED holds until readings clear the thresholds by the release share.
    holding = previous == DEGRADED
    latency_limit = thresholds.latency_ms * ((1 - thresholds.release_share) if holding else 1)
    bandwidth_limit = thresholds.bandwidth_mbps * ((1 + thresholds.release_share) if holding else 1)
    latency = result.latency_ms or 0.0
    if result.packet_loss_pct > thresholds.packet_loss_pct:
        return DEGRADED, f"packet loss {result.packet_loss_pct:.0f}%"
    if latency > latency_limit:
        return DEGRADED, f"latency {latency:g} ms (limit {latency_limit:g})"
    if result.bandwidth_mbps is not None and result.bandwidth_mbps < bandwidth_limit:
        return DEGRADED, f"bandwidth {result.bandwidth_mbps:g} Mbps (limit {bandwidth_limit:g})"
    return OPTIMAL, f"latency {latency:g} ms"


class ConnectivityAgent:
    """Targets are (provider name, base URL) of the enabled cloud providers."""

    name = "connectivity"

    def __init__(
        self,
        targets: list[tuple[str, str]],
        thresholds: ConnectivityThresholds | None = None,
    ) -> None:
        self.targets = targets
        self.thresholds = thresholds or ConnectivityThresholds()

    def initialize(self) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def check(self, *, previous: dict[str, str] | None = None, **_: Any) -> list[AgentCheck]:
        return asyncio.run(self.acheck(previous=previous))

    async def acheck(self, *, previous: dict[str, str] | None = None) -> list[AgentCheck]:
        previous = previous or {}
        t = self.thresholds
        # Fresh connections per check: a probe must pay for connecting to measure reachability.
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(t.timeout_s),
            limits=httpx.Limits(
                max_connections=len(self.targets) or 1, max_keepalive_connections=0
            ),
            follow_redirects=False,
        ) as client:
            results = await asyncio.gather(
                *(probe_url(client, url, attempts=t.attempts) for _, url in self.targets)
            )
        checks = []
        for (name, url), result in zip(self.targets, results, strict=True):
            state, reason = connectivity_state(result, t, previous.get(name))
            metrics = {
                "url": url,
                "latency_ms": result.latency_ms,
                "packet_loss_pct": round(result.packet_loss_pct, 1),
                "bandwidth_mbps": result.bandwidth_mbps,
            }
            checks.append(AgentCheck(state, name, state != DISCONNECTED, reason, metrics))
        if not checks:
            return [AgentCheck(NO_TARGETS, reason="no enabled cloud provider")]
        best = max(checks, key=lambda c: RANK[c.state])
        # No cloud provider reachable: run the request here (a recommendation; the default
        # policy's state rule makes it local only).
        overall = AgentCheck(
            best.state,
            reason=f"best provider {best.target}: {best.reason}",
            metrics={c.target: c.state for c in checks},
            recommend="local" if best.state == DISCONNECTED else "",
        )
        return [overall, *checks]
