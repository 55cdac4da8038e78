"""A telemetry page opened after a quiet spell draws the last 15 minutes, rebuilt from the
request log and the stored resource samples, not a chart that starts when the page opened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache

from analytics.models import RequestLog
from routing.models import AgentSample
from routing.telemetry import HISTORY_KEY, history_backfill, history_for_page

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _request(ago_s: int, status: str = "success", latency_ms: int = 200, tokens: int = 30) -> None:
    RequestLog.objects.create(
        created_at=NOW - timedelta(seconds=ago_s),
        entry_point="openai",
        status=status,
        cost_state="reported",
        latency_ms=latency_ms,
        output_tokens=tokens,
    )


def _point(points: list[dict[str, object]], ago_s: int) -> dict[str, object]:
    at = (NOW - timedelta(seconds=ago_s)).isoformat()
    return next(p for p in points if p["at"] == at)


def test_backfill_rebuilds_traffic_and_machine_of_the_last_15_minutes() -> None:
    # Ten minutes ago: three requests within one minute; one failed.
    _request(625, latency_ms=100, tokens=60)
    _request(615, latency_ms=300, tokens=120)
    _request(605, status="error", latency_ms=0, tokens=0)
    # Older than 15 minutes and a minute: never shown.
    _request(1000)
    AgentSample.objects.create(
        agent="resources",
        state="AVAILABLE",
        metrics={"cpu_pct": 37.5, "memory_pct": 61.0, "load_1m": 0.7, "gpus": []},
        sampled_at=NOW - timedelta(seconds=700),
    )

    points = history_backfill(now=NOW)

    assert len(points) == 90
    assert points[0]["at"] == (NOW - timedelta(seconds=890)).isoformat()
    assert points[-1]["at"] == NOW.isoformat()
    busy = _point(points, 600)
    assert busy == {
        "at": (NOW - timedelta(seconds=600)).isoformat(),
        "cpu_pct": 37.5,
        "memory_pct": 61.0,
        "load_1m": 0.7,
        "gpu_pct": None,
        "requests_per_s": 0.05,
        "p50_latency_ms": 100,
        "p95_latency_ms": 300,
        "tokens_per_s": 3.0,
        "error_rate": 0.3333,
        "active_streams": None,
    }
    # Before the resource sample nothing is known of the machine; quiet minutes read as zero.
    quiet = _point(points, 800)
    assert (quiet["cpu_pct"], quiet["requests_per_s"], quiet["error_rate"]) == (None, 0.0, None)
    assert _point(points, 10)["requests_per_s"] == 0.0


async def test_page_history_rebuilds_only_what_the_kept_points_miss() -> None:
    kept = [
        {"at": (NOW - timedelta(seconds=s)).isoformat(), "requests_per_s": 1.0}
        for s in (30, 29, 28)
    ]
    await cache.aset(HISTORY_KEY, kept)

    points = await history_for_page(now=NOW)

    assert points[-3:] == kept
    rebuilt = points[:-3]
    assert len(rebuilt) == 86
    assert rebuilt[-1]["at"] == (NOW - timedelta(seconds=40)).isoformat()
