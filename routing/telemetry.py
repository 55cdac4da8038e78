"""Live telemetry: one sample a second, pushed to every open telemetry page.

`telemetry_sample` gathers what the page shows (machine, agents, traffic of the last minute,
models, budgets). One publisher loop per process sends it to a channel-layer group; when
several processes have pages open, a short cache lease lets only one of them publish, so a
page receives one sample a second however many processes serve it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from analytics.models import RequestLog
from analytics.money import usd_json
from analytics.traffic import (
    ERROR_STATUSES,
    TRAFFIC_WINDOW_S,
    percentile,
    traffic_rows,
    traffic_summary,
)
from core.dependencies import REDIS_AWAY
from core.redis.exchange import acounter_add
from core.threads import in_thread
from providers.models import LLMModel
from routing.agents.resources import read_resources
from routing.guards.breaker import BreakerConfig, CircuitBreakers
from routing.models import AgentSample, BudgetPeriod
from routing.sampling import agents_snapshot_current, background_sampling_ensure

logger = logging.getLogger(__name__)
GROUP = "telemetry"
HISTORY_POINTS = 15 * 60
STREAMS_KEY = "telemetry:active-streams"
STREAMS_TTL_S = 6 * 3600
LEASE_KEY = "telemetry:publisher"
HISTORY_KEY = "telemetry:history"
BACKFILL_STEP_S = 10
# A page's first paint must stay quick however busy the last quarter hour was.
BACKFILL_MAX_ROWS = 200_000


def interval_s() -> float:
    return float(getattr(settings, "ORCHESTRATOR_TELEMETRY_INTERVAL_S", 1.0))


def models_summary() -> list[dict[str, Any]]:
    models = list(LLMModel.objects.select_related("provider").order_by("provider__name", "name"))
    refs = [str(m) for m in models]
    config = BreakerConfig.for_model()
    views = CircuitBreakers().views(dict.fromkeys(refs, config)) if refs else []
    return [
        {
            "ref": ref,
            "locality": model.provider.locality,
            "enabled": model.enabled and model.provider.enabled,
            "health": model.provider.health_status,
            "health_latency_ms": model.provider.health_latency_ms,
            "breaker": str(view.state),
            "breaker_failures": view.failures,
        }
        for ref, model, view in zip(refs, models, views, strict=True)
    ]


def budgets_summary(*, now: datetime) -> list[dict[str, Any]]:
    periods = BudgetPeriod.objects.filter(
        Q(budget__enabled=True), starts_at__lte=now, ends_at__gt=now
    ).select_related("budget")
    return [
        {
            "name": p.budget.name,
            "scope": p.budget.scope,
            "limit_usd": usd_json(p.limit_usd),
            "spent_usd": usd_json(p.spent_usd),
            "reserved_usd": usd_json(p.reserved_usd),
            "used_pct": round(float(100 * p.spent_usd / p.limit_usd), 1) if p.limit_usd else None,
        }
        for p in periods
    ]


def telemetry_sample(*, now: datetime | None = None) -> dict[str, Any]:
    """Everything the telemetry page shows, as plain JSON. Blocking: call it from a thread."""
    now = now or timezone.now()
    readings = read_resources()
    snapshot = agents_snapshot_current(now=now)
    agents = [
        {"agent": s.agent, "target": s.target, "state": s.state, "reason": s.reason}
        for s in snapshot.states
    ]
    connectivity = [
        {
            "provider": s.target,
            "state": s.state,
            "latency_ms": s.metrics.get("latency_ms"),
            "packet_loss_pct": s.metrics.get("packet_loss_pct"),
        }
        for s in snapshot.states
        if s.agent == "connectivity" and s.target
    ]
    host = asdict(readings)
    host["gpus"] = [asdict(g) for g in readings.gpus]
    return {
        "at": now.isoformat(),
        "host": host,
        "resource_state": snapshot.overall("resources"),
        "agents": agents,
        "connectivity": connectivity,
        "traffic": traffic_summary(now=now, active_streams=int(cache.get(STREAMS_KEY) or 0)),
        "models": models_summary(),
        "budgets": budgets_summary(now=now),
    }


def history_point(sample: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a chart keeps per second."""
    host, traffic = sample["host"], sample["traffic"]
    gpus = host["gpus"]
    return {
        "at": sample["at"],
        "cpu_pct": host["cpu_pct"],
        "memory_pct": host["memory_pct"],
        "load_1m": host["load_1m"],
        "gpu_pct": max((g["utilization_pct"] for g in gpus), default=None),
        "requests_per_s": traffic["requests_per_s"],
        "p50_latency_ms": traffic["p50_latency_ms"],
        "p95_latency_ms": traffic["p95_latency_ms"],
        "tokens_per_s": traffic["tokens_per_s"],
        "error_rate": traffic["error_rate"],
        "active_streams": traffic["active_streams"],
    }


async def history_get() -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = await cache.aget(HISTORY_KEY) or []
    return history


def history_backfill(*, now: datetime, until: datetime | None = None) -> list[dict[str, Any]]:
    """Points every `BACKFILL_STEP_S` over the last 15 minutes (up to `until`, the oldest point
    already kept), rebuilt from the request log and the stored resource samples: a page opened
    after a quiet spell shows what happened before it, not an empty chart. Blocking.

    Active streams are not logged, so those points leave them empty (None)."""
    start = now - timedelta(seconds=HISTORY_POINTS)
    end = min(now, until) if until is not None else now
    rows = traffic_rows(
        after=start - timedelta(seconds=TRAFFIC_WINDOW_S), until=end, limit=BACKFILL_MAX_ROWS
    )
    machine = list(
        AgentSample.objects.filter(
            agent="resources", target="", ok=True, sampled_at__gt=start, sampled_at__lte=end
        )
        .order_by("sampled_at")
        .values_list("sampled_at", "metrics")
    )
    times = [row[0] for row in rows]
    sampled = [at for at, _ in machine]
    points = []
    moment = start + timedelta(seconds=BACKFILL_STEP_S)
    # Up to now itself; before the oldest kept point, which stands for its own moment.
    while moment < end or (until is None and moment == end):
        opens = bisect.bisect_right(times, moment - timedelta(seconds=TRAFFIC_WINDOW_S))
        window = rows[opens : bisect.bisect_right(times, moment)]
        latencies = sorted(lat for _, st, lat, _ in window if st == RequestLog.Status.SUCCESS)
        errors = sum(1 for _, st, _, _ in window if st in ERROR_STATUSES)
        last = bisect.bisect_right(sampled, moment) - 1
        host = machine[last][1] if last >= 0 else {}
        points.append(
            {
                "at": moment.isoformat(),
                "cpu_pct": host.get("cpu_pct"),
                "memory_pct": host.get("memory_pct"),
                "load_1m": host.get("load_1m"),
                "gpu_pct": max(
                    (g["utilization_pct"] for g in host.get("gpus") or ()), default=None
                ),
                "requests_per_s": round(len(window) / TRAFFIC_WINDOW_S, 3),
                "p50_latency_ms": percentile(latencies, 0.5),
                "p95_latency_ms": percentile(latencies, 0.95),
                "tokens_per_s": round(sum(t for *_, t in window) / TRAFFIC_WINDOW_S, 3),
                "error_rate": round(errors / len(window), 4) if window else None,
                "active_streams": None,
            }
        )
        moment += timedelta(seconds=BACKFILL_STEP_S)
    return points


async def history_for_page(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """What a newly opened page draws: the kept points, preceded by the rebuilt ones for the
    part of the last 15 minutes they do not cover."""
    now = now or timezone.now()
    kept = await history_get()
    oldest = datetime.fromisoformat(kept[0]["at"]) if kept else None
    rebuilt = await in_thread(history_backfill)(now=now, until=oldest)
    return rebuilt + kept


@contextlib.asynccontextmanager
async def stream_tracked() -> AsyncIterator[None]:
    """Count one answer streaming for as long as the block runs (all processes together)."""
    await _streams_add(1)
    try:
        yield
    finally:
        await asyncio.shield(_streams_add(-1))


async def _streams_add(delta: int) -> None:
    # A gauge fails open: with Redis away the answer still streams, only uncounted.
    try:
        # One atomic step across processes: created with its lifetime, then added to.
        await acounter_add(cache, STREAMS_KEY, delta, STREAMS_TTL_S)
    except REDIS_AWAY:
        logger.warning("active streams not counted: redis unavailable")


class Publisher:
    """The one sampling loop of this process; it runs while this process has subscribers."""

    def __init__(self) -> None:
        self.subscribers = 0
        self.task: asyncio.Task[None] | None = None
        self.token = uuid.uuid4().hex

    def subscribe(self) -> None:
        self.subscribers += 1
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            background_sampling_ensure()
            self.task = loop.create_task(self._run())

    def unsubscribe(self) -> None:
        self.subscribers = max(0, self.subscribers - 1)

    async def _run(self) -> None:
        layer = get_channel_layer()
        sample = sync_to_async(telemetry_sample, thread_sensitive=False)
        history: list[dict[str, Any]] = []
        while self.subscribers > 0:
            try:
                if await self._hold_lease():
                    current = await sample()
                    history = ((await history_get()) + [history_point(current)])[-HISTORY_POINTS:]
                    await cache.aset(HISTORY_KEY, history, timeout=HISTORY_POINTS)
                    await layer.group_send(GROUP, {"type": "telemetry.sample", "sample": current})
            except Exception:
                logger.exception("telemetry sample failed")
            await asyncio.sleep(interval_s())
        if await cache.aget(LEASE_KEY) == self.token:
            await cache.adelete(LEASE_KEY)

    async def _hold_lease(self) -> bool:
        lease_s = max(3, int(3 * interval_s()))
        if await cache.aadd(LEASE_KEY, self.token, timeout=lease_s):
            return True
        if await cache.aget(LEASE_KEY) == self.token:
            await cache.atouch(LEASE_KEY, timeout=lease_s)
            return True
        return False


publisher = Publisher()
