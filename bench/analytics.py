"""Analytics at scale: seed N demo requests, roll them up, time the dashboard JSON endpoints for a
30-day and a 365-day range, and stream a raw CSV export of the most recent days holding at least
`--export-rows` rows in a child process (its peak RSS alone).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orch_bench \
    .venv/bin/python bench/analytics.py --rows 1000000 [--days 365] [--export-rows N] [--reuse]

It writes demo rows (is_demo) into the database DATABASE_URL names; `--reuse` keeps rows already
there when their count matches. `manage.py seed_demo --wipe` removes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from analytics.models import DailyModelRollup, DailyRollup, RequestLog  # noqa: E402
from analytics.rollups import day_start, rollup_backfill  # noqa: E402

ENDPOINTS = (
    "/reports/api/summary",
    "/reports/api/breakdown/model_name",
    "/reports/api/breakdown/task_type",
    "/reports/api/timeseries",
)
BENCH_USER = "bench-analytics"


def _staff() -> User:
    user, _ = User.objects.get_or_create(username=BENCH_USER, defaults={"is_staff": True})
    return user


def seed(rows: int, days: int, reuse: bool) -> dict[str, float]:
    existing = RequestLog.objects.filter(is_demo=True).count()
    seeded = float("nan")
    if not (reuse and existing == rows):
        if existing:
            call_command("seed_demo", wipe=True)
        if not _models_exist():
            # A local model too (never called here), so the rows mix local and cloud.
            call_command("bootstrap_local", local_model_url="http://127.0.0.1:9/v1")
        started = time.monotonic()
        call_command("seed_demo", requests=rows, days=days, no_rollup=True)
        seeded = time.monotonic() - started
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {RequestLog._meta.db_table}")
    started = time.monotonic()
    rollup_backfill(first=timezone.localdate() - timedelta(days=days - 1), now=timezone.now())
    return {"seed_s": seeded, "rollup_s": time.monotonic() - started}


def _models_exist() -> bool:
    from providers.models import LLMModel

    return LLMModel.objects.exists()


def time_endpoints(repeat: int) -> list[tuple[str, str, float, float]]:
    client = Client()
    client.force_login(_staff())
    results = []
    for preset in ("30d", "365d"):
        for path in ENDPOINTS:
            url = f"{path}?preset={preset}"
            assert client.get(url).status_code == 200, url
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = client.get(url)
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            samples.sort()
            p95 = samples[max(0, round(0.95 * len(samples)) - 1)]
            results.append((preset, path, statistics.median(samples), p95))
    return results


async def _export_child(query: str) -> dict[str, float]:
    user = await User.objects.aget(username=BENCH_USER)
    client = AsyncClient()
    await client.aforce_login(user)
    started = time.monotonic()
    response = await client.get(f"/reports/export.csv?{query}")
    size = lines = 0
    async for chunk in response.streaming_content:  # type: ignore[attr-defined]
        size += len(chunk)
        lines += chunk.count(b"\r\n")
    return {
        "export_s": time.monotonic() - started,
        "bytes": size,
        "rows": lines - 1,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def export_query(rows: int, days: int) -> str:
    """The most recent whole days (through today) that hold at least `rows` raw rows."""
    today = timezone.localdate()
    span = 1
    while span < days:
        held = RequestLog.objects.filter(
            created_at__gte=day_start(today - timedelta(days=span - 1))
        ).count()
        if held >= rows:
            break
        span += 1
    return f"start={today - timedelta(days=span - 1)}&end={today}&kind=raw"


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def time_export(query: str) -> dict[str, float]:
    child = subprocess.run(
        [sys.executable, __file__, "--export-child", query],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--export-child", default="")
    args = parser.parse_args()
    if args.export_child:
        print(json.dumps(asyncio.run(_export_child(args.export_child))))
        return
    if connection.vendor != "postgresql":
        raise SystemExit("bench/analytics.py measures Postgres; set DATABASE_URL")
    print(f"load average at start: {_load()}", flush=True)
    seeded = seed(args.rows, args.days, args.reuse)
    _staff()
    print(
        f"rows: {RequestLog.objects.count()}  rollup rows: {DailyRollup.objects.count()}"
        f"  model rollup rows: {DailyModelRollup.objects.count()}"
    )
    print(f"seed: {seeded['seed_s']:.1f} s   rollup build: {seeded['rollup_s']:.1f} s")
    print(f"load average after seeding: {_load()}", flush=True)
    print("| range | endpoint | median ms | p95 ms |")
    print("|---|---|---|---|")
    for preset, path, median, p95 in time_endpoints(args.repeat):
        print(f"| {preset} | `{path}` | {median:.0f} | {p95:.0f} |", flush=True)
    print(f"load average after the endpoints: {_load()}", flush=True)
    query = export_query(args.export_rows, args.days)
    export = time_export(query)
    print(
        f"CSV export ({query}): {export['rows']:.0f} rows, {export['bytes'] / 1e6:.0f} MB in "
        f"{export['export_s']:.1f} s, peak RSS {export['peak_rss_mb']:.0f} MB"
    )
    print(f"load average at the end: {_load()}")


if __name__ == "__main__":
    main()
