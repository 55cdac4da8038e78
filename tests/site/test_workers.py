"""The web process with several workers: every worker is a process of its own, and budgets,
rate limits and the request log stay exact across them (they live in Postgres and Redis)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from decimal import Decimal

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from analytics.models import RequestLog
from gateway.apikeys import apikey_create
from routing.models import Budget, BudgetReservation
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import (
    chat_path,
    every_task_to,
    settle_config,
    upstream_models,
    wait_rows,
)
from tests.routing.streams import openai_sse
from tests.site.web_process import web_process, worker_pids

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKERS = 4


# Every prompt differs (no answer comes from the response cache) and has the same length (the
# same token estimate, so the same budget hold).
_prompts = (f"question {index:05d}" for index in itertools.count())


async def burst(url: str, key: str, model: str, count: int) -> list[tuple[int, str]]:
    """`count` chat requests sent at once; (status, request id) of each."""
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one() -> tuple[int, str]:
            message = {"role": "user", "content": next(_prompts)}
            body = {"model": model, "max_tokens": 50, "messages": [message]}
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
            return response.status_code, response.headers["x-orchestrator-request-id"]

        return list(await asyncio.gather(*(one() for _ in range(count))))


def serving_pids(rows: list[RequestLog]) -> set[int]:
    return {int(row.decision_trace["pid"]) for row in rows}


@pytest.mark.long
def test_four_workers_keep_budgets_rate_limits_and_the_log_exact(upstream: UpstreamServer) -> None:
    models = upstream_models(upstream)
    every_task_to("workers-policy", models["alpha"], models["beta"])
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["o", "k"])))
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["o", "k"])))
    roomy = apikey_create(name="roomy")
    tight = apikey_create(name="tight")
    limited = apikey_create(name="limited", rpm_limit=6)
    Budget.objects.create(
        name="roomy", scope="api_key", api_key_id=roomy.api_key.pk, limit_usd=Decimal(100)
    )
    settle_config()
    sent: list[tuple[int, str]] = []

    with web_process("--workers", str(WORKERS), log_name="workers") as (url, server):
        workers = worker_pids(server)
        assert len(workers) == WORKERS

        # (a) Requests spread over the workers: each row names the process that served it.
        # Workers finish starting at different times, so bursts go on until several served.
        deadline = time.monotonic() + 20
        pids: set[int] = set()
        while len(pids) < WORKERS and time.monotonic() < deadline:
            answers = asyncio.run(burst(url, roomy.plaintext, "alpha:alpha-model", 8))
            assert [status for status, _ in answers] == [200] * 8
            sent += answers
            pids = serving_pids(wait_rows(len(sent)))
        assert pids <= workers
        assert len(pids) > 1

        # (b) A budget with room for exactly 4 holds admits exactly 4 of 12 concurrent
        # requests. One request's hold is measured first, on the roomy key's budget.
        [(status, probe_id)] = asyncio.run(burst(url, roomy.plaintext, "beta:beta-model", 1))
        sent.append((status, probe_id))
        wait_rows(len(sent))
        hold = BudgetReservation.objects.get(request_id=probe_id).amount_usd
        budget = Budget.objects.create(
            name="tight",
            scope="api_key",
            api_key_id=tight.api_key.pk,
            limit_usd=4 * hold + hold / 2,
        )
        # The admitted requests keep their holds while all twelve try.
        upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["o", "k"]), delay_s=2))
        settle_config()
        answers = asyncio.run(burst(url, tight.plaintext, "beta:beta-model", 12))
        sent += answers
        assert Counter(status for status, _ in answers) == {200: 4, 402: 8}

        # (c) An API key's limit of 6 requests a minute admits exactly 6 of 18.
        answers = asyncio.run(burst(url, limited.plaintext, "alpha:alpha-model", 18))
        sent += answers
        assert Counter(status for status, _ in answers) == {200: 6, 429: 12}

        # (d) One row per request sent, no more, no less, from more than one process.
        rows = wait_rows(len(sent))
        time.sleep(0.3)  # a duplicate row would have landed by now
        rows = list(RequestLog.objects.all())
        assert sorted(str(row.request_id) for row in rows) == sorted(rid for _, rid in sent)
        tight_rows = [row for row in rows if row.api_key_id == tight.api_key.pk]
        assert Counter(row.status for row in tight_rows) == {"success": 4, "budget_refused": 8}
        limited_rows = [row for row in rows if row.api_key_id == limited.api_key.pk]
        assert Counter(row.status for row in limited_rows) == {"success": 6, "rate_limited": 12}
        # The budget and the rate limit were kept by several processes at once.
        assert len(serving_pids(tight_rows + limited_rows)) > 1

        # No overspend: the tight budget holds nothing and spent what its 4 rows cost.
        period = budget.periods.get()
        spent = sum((row.cost_usd or Decimal(0) for row in tight_rows), Decimal(0))
        assert (period.spent_usd, period.reserved_usd) == (spent, Decimal(0))
        assert 0 < period.spent_usd <= budget.limit_usd

        # SIGTERM stops every worker and the supervisor, which exits 0.
        server.terminate()
        assert server.wait(timeout=20) == 0
        assert not any(psutil.pid_exists(pid) for pid in workers)
