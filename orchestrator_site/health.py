"""Component checks behind `GET /health`. Each returns {"status": ..., ...details}.

The checks run concurrently, each bounded by CHECK_TIMEOUT_S, so `/health` answers within about
that long whatever is down, and names what is (`down`). A check still running from an earlier
call is awaited again rather than started twice: a dependency that hangs holds one thread per
check, not one per call.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from orchestrator_site.tasks import WORKER_HEARTBEAT_KEY
from routing.status import providers_health

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
HEARTBEAT_STALE_S = 120
CHECK_TIMEOUT_S = 0.5

# The checks' own threads: under load the request path's workers are busy, and a health check
# queued behind them would report a healthy dependency as down.
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")
_running: dict[str, asyncio.Future[dict[str, Any]]] = {}


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"status": UNHEALTHY, "error": type(exc).__name__, "message": str(exc)[:200]}
    finally:
        connection.close()  # the pooled connection goes back at once
    return {"status": HEALTHY, "vendor": connection.vendor, "latency_ms": _elapsed_ms(started)}


def check_cache() -> dict[str, Any]:
    started = time.perf_counter()
    key = f"health:{uuid.uuid4().hex}"
    try:
        cache.set(key, "ok", timeout=5)
        ok = cache.get(key) == "ok"
        cache.delete(key)
    except Exception as exc:
        return {"status": UNHEALTHY, "error": type(exc).__name__, "message": str(exc)[:200]}
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    if not ok:
        return {
            "status": UNHEALTHY,
            "backend": backend,
            "message": "value written was not read back",
        }
    return {"status": HEALTHY, "backend": backend, "latency_ms": _elapsed_ms(started)}


async def check_channel_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    if layer is None:
        return {"status": UNHEALTHY, "message": "no channel layer configured"}
    started = time.perf_counter()
    try:
        channel = await layer.new_channel()
        await asyncio.wait_for(layer.send(channel, {"type": "health.ping"}), CHECK_TIMEOUT_S)
        message = await asyncio.wait_for(layer.receive(channel), CHECK_TIMEOUT_S)
    except Exception as exc:
        return {"status": UNHEALTHY, "error": type(exc).__name__, "message": str(exc)[:200]}
    if message.get("type") != "health.ping":
        return {"status": UNHEALTHY, "message": "channel layer returned another message"}
    return {
        "status": HEALTHY,
        "backend": type(layer).__name__,
        "latency_ms": _elapsed_ms(started),
    }


def check_broker() -> dict[str, Any]:
    """The broker connection, and the age of the last worker heartbeat."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"status": HEALTHY, "mode": "eager (tasks run in the web process)"}
    from orchestrator_site.celery import app

    started = time.perf_counter()
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return {"status": UNHEALTHY, "error": type(exc).__name__, "message": str(exc)[:200]}
    details: dict[str, Any] = {"status": HEALTHY, "latency_ms": _elapsed_ms(started)}
    beat = cache.get(WORKER_HEARTBEAT_KEY)
    if beat is None:
        details.update(status=DEGRADED, worker="no worker heartbeat seen yet")
    else:
        age_s = (timezone.now() - datetime.fromisoformat(beat["at"])).total_seconds()
        details["worker_heartbeat_age_s"] = round(age_s, 1)
        if age_s > HEARTBEAT_STALE_S:
            details["status"] = DEGRADED
    return details


def check_providers() -> dict[str, Any]:
    """Each enabled provider as its last background probe left it; no live call here."""
    try:
        return providers_health()
    except Exception as exc:
        return {"status": UNHEALTHY, "error": type(exc).__name__, "message": str(exc)[:200]}
    finally:
        connection.close()


def overall(components: dict[str, dict[str, Any]]) -> str:
    states = {component["status"] for component in components.values()}
    if UNHEALTHY in states:
        return UNHEALTHY
    if DEGRADED in states:
        return DEGRADED
    return HEALTHY


def _in_thread(check: Callable[[], dict[str, Any]]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def run() -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(_executor, check)

    return run


CHECKS: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
    "database": _in_thread(check_database),
    "cache": _in_thread(check_cache),
    "channel_layer": check_channel_layer,
    "broker": _in_thread(check_broker),
    "providers": _in_thread(check_providers),
}


async def _bounded(name: str, check: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    running = _running.get(name)
    if running is None or running.done() or running.get_loop() is not loop:
        running = _running[name] = asyncio.ensure_future(check())
    try:
        return await asyncio.wait_for(asyncio.shield(running), CHECK_TIMEOUT_S)
    except TimeoutError:
        return {
            "status": UNHEALTHY,
            "error": "Timeout",
            "message": f"no answer within {CHECK_TIMEOUT_S} s",
        }


async def health_report() -> dict[str, Any]:
    results = await asyncio.gather(*(_bounded(name, check) for name, check in CHECKS.items()))
    components = dict(zip(CHECKS, results, strict=True))
    down = [name for name, component in components.items() if component["status"] == UNHEALTHY]
    return {"status": overall(components), "down": down, "components": components}
