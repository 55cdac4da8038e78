"""Under load and under failure, every request ends as exactly one log row with the status the
client saw; a request whose process dies mid-answer is recovered from the journal."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal

import httpx
import pytest
from asgiref.sync import sync_to_async

from analytics.models import RequestLog
from providers.local_model import free_port
from providers.models import LLMModel, Provider
from routing.models import Budget, BudgetReservation
from routing.pipeline.journal import grace_s, journal_pending, journal_sweep
from tests.conftest import ROOT, subprocess_env, wait_http
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import new_key, settle_config, wait_rows
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def three_upstreams(upstream: UpstreamServer) -> None:
    """`good` answers, `bad` always fails with 500, `slow` streams a chunk every 100 ms."""
    from django.core.cache import cache

    cache.clear()
    for name in ("good", "bad", "slow"):
        provider = Provider.objects.create(
            name=name,
            kind="openai_compatible",
            base_url=f"{upstream.url}/{name}/v1",
            locality="cloud",
        )
        LLMModel.objects.create(
            provider=provider,
            name="m",
            input_price_per_mtok_usd=Decimal("1"),
            output_price_per_mtok_usd=Decimal("2"),
        )
    upstream.reply("POST", "/good/v1/chat/completions", Reply.sse(openai_sse(["o", "k"])))
    upstream.reply(
        "POST", "/bad/v1/chat/completions", Reply.json({"error": {"message": "x"}}, status=500)
    )
    upstream.reply(
        "POST",
        "/slow/v1/chat/completions",
        Reply.sse(openai_sse([f"p{i}" for i in range(40)])).but(chunk_delay_s=0.1),
    )
    settle_config()


async def one_request(
    client: httpx.AsyncClient, index: int, kind: str, key: str
) -> tuple[str, str]:
    """(request id, the status the client's experience implies)."""
    model = {"ok": "good:m", "ok_stream": "good:m", "fail": "bad:m", "disconnect": "slow:m"}[kind]
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"request {index}"}],
        "stream": kind in ("ok_stream", "disconnect"),
    }
    headers = {"Authorization": f"Bearer {key}"}
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        request_id = r.headers["x-orchestrator-request-id"]
        if kind == "disconnect":
            async for line in r.aiter_lines():
                if '"content":"p' in line:
                    break  # leaving the block closes the connection mid-stream
            return request_id, "cancelled"
        await r.aread()
        if r.status_code == 200:
            return request_id, "success"
        assert r.json()["error"]["code"] == "MODEL_UNAVAILABLE"
        return request_id, "error"


@pytest.mark.long
async def test_500_requests_at_concurrency_32_make_500_rows_with_the_right_status(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    await sync_to_async(three_upstreams)(upstream)
    budget = await Budget.objects.acreate(name="all", scope="global", limit_usd=Decimal("1000"))
    key = await sync_to_async(new_key)()
    rng = random.Random(7)
    kinds = [
        "fail" if roll < 0.3 else "disconnect" if roll < 0.4 else rng.choice(["ok", "ok_stream"])
        for roll in (rng.random() for _ in range(500))
    ]
    limit = asyncio.Semaphore(32)
    async with httpx.AsyncClient(
        base_url=live_server_url, timeout=60, limits=httpx.Limits(max_connections=32)
    ) as client:

        async def bounded(index: int, kind: str) -> tuple[str, str]:
            async with limit:
                return await one_request(client, index, kind, key)

        outcomes = await asyncio.gather(
            *(asyncio.wait_for(bounded(i, k), 90) for i, k in enumerate(kinds)),
            return_exceptions=True,
        )
        stuck = [
            (i, kinds[i], repr(o)) for i, o in enumerate(outcomes) if isinstance(o, BaseException)
        ]
        assert stuck == []
        seen = [o for o in outcomes if not isinstance(o, BaseException)]

    rows = await sync_to_async(wait_rows)(500, timeout_s=60)
    statuses = {str(row.request_id): row.status for row in rows}
    assert len(rows) == 500
    assert {rid: expected for rid, expected in seen} == statuses
    assert Counter(statuses.values()) == Counter(
        {
            "success": kinds.count("ok") + kinds.count("ok_stream"),
            "error": kinds.count("fail"),
            "cancelled": kinds.count("disconnect"),
        }
    )
    await asyncio.sleep(0.5)
    assert await sync_to_async(journal_pending)() == 0
    # Every hold was settled or released, and the budget spent exactly what the log says the
    # requests cost (the cancelled ones included: they are charged for what they received).
    assert await BudgetReservation.objects.filter(state="held").acount() == 0
    period = await budget.periods.aget()
    logged = sum((row.cost_usd for row in rows if row.cost_usd is not None), Decimal(0))
    assert logged > 0
    assert (period.spent_usd, period.reserved_usd) == (logged, Decimal(0))


def test_a_request_whose_process_dies_mid_answer_is_recovered(upstream: UpstreamServer) -> None:
    three_upstreams(upstream)
    key = new_key()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_site.serve", "--port", str(port)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", server)
        body = {"model": "slow:m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        with httpx.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as response:
            request_id = response.headers["x-orchestrator-request-id"]
            for line in response.iter_lines():
                if '"content":"p' in line:
                    os.kill(server.pid, signal.SIGKILL)
                    break
    finally:
        server.kill()
        server.wait(timeout=10)
    time.sleep(0.3)
    assert not RequestLog.objects.filter(request_id=request_id).exists()

    assert journal_sweep() == 0  # not yet past its grace period
    written = journal_sweep(now=time.time() + grace_s() + 1)

    row = RequestLog.objects.get(request_id=request_id)
    assert written == 1
    assert (row.status, row.error_code, row.entry_point) == (
        "error",
        "SERVICE_UNAVAILABLE",
        "openai",
    )
    assert row.requested_model == "slow:m"
    assert row.api_key_id is not None
    assert journal_sweep(now=time.time() + grace_s() + 1) == 0
