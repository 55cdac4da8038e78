"""Overhead the guards add to one request, on Postgres and Redis.

Per request, as the request path (`routing.services`) does them: the guards' read (rate limit,
the first model's breaker and the response-cache lookup, a miss, pipelined in one Redis round
trip), the budget reservation; then, after the answer, breaker success and budget settlement.
"admission" is what a request waits for before its upstream call; "total" adds the settlement,
which runs after the last byte has been sent. Runs on a scratch database created next to
DATABASE_URL's and dropped afterwards.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orchestrator \
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/guards.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402

from providers.adapters.types import ChatRequest, Message  # noqa: E402
from routing.budgets import budget_reserve, budget_settle  # noqa: E402
from routing.guards.admission import Guards, RateCheck  # noqa: E402
from routing.guards.breaker import BreakerConfig, CircuitBreakers  # noqa: E402
from routing.guards.ratelimit import Limit, RateLimiter  # noqa: E402
from routing.guards.response_cache import ResponseCache, response_cache_key  # noqa: E402
from routing.models import Budget  # noqa: E402

STEPS = ("guards_read", "budget_reserve", "breaker_success", "budget_settle")
TARGET_P50_MS = 1.0
# No API key has a negative id, so the bench never touches a real key's buckets.
BENCH_KEY_ID = -1


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(requests: int, warmup: int, budgets: int) -> dict[str, list[float]]:
    Budget.objects.all().delete()
    Budget.objects.create(name="bench-global", limit_usd=Decimal("1000000"))
    if budgets == 2:
        Budget.objects.create(
            name="bench-key",
            scope=Budget.Scope.API_KEY,
            api_key_id=BENCH_KEY_ID,
            limit_usd=Decimal("1000000"),
        )
    breakers = CircuitBreakers()
    guards = Guards(RateLimiter(), breakers, ResponseCache())
    config = BreakerConfig.for_model()
    rate = RateCheck(BENCH_KEY_ID, Limit.of(10_000_000), Limit.of(10_000_000), 300)
    timings: dict[str, list[float]] = {step: [] for step in (*STEPS, "admission", "total")}
    for index in range(warmup + requests):
        request = ChatRequest(
            model="bench-model", messages=(Message("user", f"question {index}"),), max_tokens=256
        )
        marks = [time.perf_counter_ns()]
        key = response_cache_key(request, provider="bench")
        reads = guards.read(rate=rate, breaker=("bench-model", config), cache_key=key)
        marks.append(time.perf_counter_ns())
        reservation = budget_reserve(max_cost_usd=Decimal("0.0042"), api_key_id=BENCH_KEY_ID)
        marks.append(time.perf_counter_ns())
        assert reads.permit is not None
        breakers.record_success(reads.permit)
        marks.append(time.perf_counter_ns())
        budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.0017"))
        marks.append(time.perf_counter_ns())
        assert (
            reads.permit.allowed
            and reads.rate_limit is not None
            and reads.rate_limit.allowed
            and reads.cached is None
            and len(reservation.holds) == budgets
        )
        if index < warmup:
            continue
        for step, (start, end) in zip(STEPS, itertools.pairwise(marks), strict=True):
            timings[step].append((end - start) / 1e6)
        timings["admission"].append((marks[2] - marks[0]) / 1e6)
        timings["total"].append((marks[-1] - marks[0]) / 1e6)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        sys.exit("bench/guards.py measures Postgres and Redis: set DATABASE_URL and REDIS_URL")
    # The lookup is part of what is measured: the cache must be on (every lookup is a miss).
    settings.ORCHESTRATOR_RESPONSE_CACHE_ENABLED = True
    scratch = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        cache.delete_many(["breaker:bench-model:opened", "breaker:bench-model:probe"])
        results = {n: run(args.requests, args.warmup, n) for n in (1, 2)}
    finally:
        connection.creation.destroy_test_db(scratch, verbosity=0)
        cache.delete_many(
            [f"ratelimit:{BENCH_KEY_ID}:requests", f"ratelimit:{BENCH_KEY_ID}:tokens"]
        )
    print(f"guards overhead per request, {args.requests} requests after {args.warmup} (ms)")
    for budgets, timings in results.items():
        print(f"\n{budgets} budget(s) covering the request")
        print("| step | p50 | p95 | p99 | mean |")
        print("|---|---|---|---|---|")
        for step, samples in timings.items():
            print(
                f"| {step} | {percentile(samples, 0.5):.3f} | {percentile(samples, 0.95):.3f} "
                f"| {percentile(samples, 0.99):.3f} | {statistics.fmean(samples):.3f} |"
            )
    admission = percentile(results[1]["admission"], 0.5)
    met = admission < TARGET_P50_MS
    print(
        f"\nadmission p50 with one budget: {admission:.3f} ms "
        f"(target < {TARGET_P50_MS:g} ms): {'met' if met else 'MISSED'}"
    )
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
