"""Postgres and Redis going away under load: the gateway answers every request with its JSON
error envelope within a bounded time, `/health` names the dead dependency at once, the web
process recovers on its own, and every request still ends as exactly one log row.

Each test runs the production web process against a private Postgres and a private Redis that
it stops and starts itself (tests/site/outage_support.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_VAR_DIR
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.streams import openai_sse
from tests.site.outage_support import (
    PrivatePostgres,
    PrivateRedis,
    WebProcess,
    manage,
    private_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.long]
logging.getLogger("httpx").setLevel(logging.WARNING)

SEED = """
from decimal import Decimal
from providers.models import LLMModel, Provider
from gateway.apikeys import apikey_create
provider = Provider.objects.create(
    name="up", kind="openai_compatible", base_url="{base_url}", locality="cloud"
)
LLMModel.objects.create(
    provider=provider, name="m", input_price_per_mtok_usd=Decimal("1"),
    output_price_per_mtok_usd=Decimal("2"),
)
from routing.models import Budget
budgeted = apikey_create(name="budgeted")
Budget.objects.create(
    name="budgeted", scope="api_key", api_key_id=budgeted.api_key.pk, limit_usd=Decimal("1000")
)
print(apikey_create(name="outage").plaintext, budgeted.plaintext)
"""
# Longest a request may take while a dependency is down (the bounded waits plus the answer).
ANSWER_BOUND_S = 3.0
# How long after the outage ends every row must be in the log: rows are tried again every
# second (docs/guards.md), and the connection pool reconnects with a backoff of its own.
ROWS_BOUND_S = 5.0
CONCURRENCY = 6


@dataclass
class Stack:
    postgres: PrivatePostgres
    redis: PrivateRedis
    web: WebProcess
    key: str
    """Covered by no budget: its requests need no database before their answer."""
    budgeted_key: str
    """Covered by a hard-stop budget: each request holds its cost in Postgres first."""


@pytest.fixture(scope="module")
def stack(upstream_server: UpstreamServer) -> Iterator[Stack]:
    postgres = PrivatePostgres()
    redis_server = PrivateRedis()
    web = None
    try:
        postgres.start()
        postgres.create_database()
        redis_server.start()
        env = private_env(postgres, redis_server)
        manage(env, "migrate", "-v0")
        key, budgeted_key = (
            manage(env, "shell", "-c", SEED.format(base_url=f"{upstream_server.url}/up/v1"))
            .strip()
            .splitlines()[-1]
            .split()
        )
        upstream_server.reply("POST", "/up/v1/chat/completions", Reply.sse(openai_sse(["o", "k"])))
        TEST_VAR_DIR.mkdir(parents=True, exist_ok=True)
        web = WebProcess(env, TEST_VAR_DIR / "outage-server.log")
        yield Stack(postgres, redis_server, web, key, budgeted_key)
    finally:
        if web is not None:
            web.stop()
        redis_server.stop()
        postgres.destroy()


@dataclass(frozen=True)
class Answer:
    door: str
    budgeted: bool
    status: int
    content_type: str
    body: bytes
    request_id: str | None
    elapsed_s: float

    def error_code(self) -> str | None:
        import json

        error = json.loads(self.body)["error"]
        return str(error["code"])


async def _one(
    client: httpx.AsyncClient, door: str, key: str, budgeted: bool, index: int
) -> Answer:
    headers = {"Authorization": f"Bearer {key}"}
    started = time.monotonic()
    body: dict[str, Any]
    if door == "v1":
        body = {"model": "up:m", "messages": [{"role": "user", "content": f"q {index}"}]}
        response = await client.post("/v1/chat/completions", json=body, headers=headers)
    else:
        body = {"prompt": f"q {index}", "model_id": "up:m", "metadata": {"cache": False}}
        response = await client.post("/api/execute", json=body, headers=headers)
    return Answer(
        door=door,
        budgeted=budgeted,
        status=response.status_code,
        content_type=response.headers.get("content-type", ""),
        body=response.content,
        request_id=response.headers.get("x-orchestrator-request-id"),
        elapsed_s=time.monotonic() - started,
    )


@dataclass(frozen=True)
class HealthSample:
    at_s: float
    elapsed_s: float
    status: int
    down: tuple[str, ...]


async def _load(
    stack: Stack, outage: Callable[[], Awaitable[None]]
) -> tuple[list[Answer], list[HealthSample], float]:
    """Requests at CONCURRENCY and /health polled while `outage()` runs, then 2 s more;
    the answers, the health samples, and the moment the outage ended (monotonic)."""
    answers: list[Answer] = []
    samples: list[HealthSample] = []
    done = asyncio.Event()
    began = time.monotonic()
    async with httpx.AsyncClient(base_url=stack.web.url, timeout=30) as client:

        async def worker(number: int) -> None:
            index = 0
            while not done.is_set():
                door = "v1" if (number + index) % 3 else "api"
                budgeted = number % 2 == 1
                key = stack.budgeted_key if budgeted else stack.key
                answers.append(await _one(client, door, key, budgeted, number * 100_000 + index))
                index += 1

        async def health() -> None:
            while not done.is_set():
                started = time.monotonic()
                response = await client.get("/health", timeout=5)
                report = response.json()
                down = tuple(
                    name
                    for name, component in report["components"].items()
                    if component["status"] == "unhealthy"
                )
                samples.append(
                    HealthSample(
                        started - began, time.monotonic() - started, response.status_code, down
                    )
                )
                await asyncio.sleep(0.2)

        tasks = [asyncio.create_task(worker(n)) for n in range(CONCURRENCY)]
        tasks.append(asyncio.create_task(health()))
        await asyncio.sleep(1)
        await outage()
        ended = time.monotonic()
        await asyncio.sleep(2)
        done.set()
        await asyncio.gather(*tasks)
    return answers, samples, ended


def _assert_answers_are_the_doors_json(answers: list[Answer]) -> list[Answer]:
    """Every answer JSON, 200 or a 503 saying DEPENDENCY_UNAVAILABLE, in bounded time; the
    refusals."""
    not_json = [a for a in answers if a.content_type != "application/json"]
    assert not_json == []
    unexpected = [
        (a.door, a.status, a.body[:200])
        for a in answers
        if a.status != 200 and (a.status, a.error_code()) != (503, "DEPENDENCY_UNAVAILABLE")
    ]
    assert unexpected == []
    slow = [
        (a.door, a.status, round(a.elapsed_s, 2)) for a in answers if a.elapsed_s > ANSWER_BOUND_S
    ]
    assert slow == []
    return [a for a in answers if a.status != 200]


def _assert_recovered(answers: list[Answer]) -> None:
    """The last answers of each door and key succeed: the web process recovered without a
    restart."""
    for door in ("v1", "api"):
        for budgeted in (False, True):
            last = [a.status for a in answers if (a.door, a.budgeted) == (door, budgeted)][-3:]
            assert last == [200, 200, 200]


def _assert_one_row_per_request(stack: Stack, answers: list[Answer], ended: float) -> None:
    """Within ROWS_BOUND_S of the outage's end, one row per request, a refusal's saying why."""
    ids = {a.request_id for a in answers}
    assert None not in ids
    assert len(ids) == len(answers)
    deadline = ended + ROWS_BOUND_S
    while True:
        rows = stack.postgres.scalar(
            "SELECT count(*) FROM analytics_requestlog WHERE request_id = ANY(%s::uuid[])",
            [sorted(str(i) for i in ids)],
        )
        if rows == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert rows == len(ids)
    refused = sorted(str(a.request_id) for a in answers if a.status != 200)
    refusal_rows = stack.postgres.scalar(
        "SELECT count(*) FROM analytics_requestlog WHERE request_id = ANY(%s::uuid[])"
        " AND status = 'error' AND error_code = 'DEPENDENCY_UNAVAILABLE'",
        [refused],
    )
    assert refusal_rows == len(refused)


def _assert_health_names(samples: list[HealthSample], dependency: str) -> None:
    assert max(s.elapsed_s for s in samples) < 1.0
    named = [s for s in samples if dependency in s.down]
    assert named, samples
    assert {s.status for s in named} == {503}
    assert samples[-1].status == 200 and samples[-1].down == ()


def test_redis_down_mid_load(stack: Stack) -> None:
    async def outage() -> None:
        await asyncio.to_thread(stack.redis.stop)
        await asyncio.sleep(6)
        await asyncio.to_thread(stack.redis.start)

    answers, samples, ended = asyncio.run(_load(stack, outage))

    assert len(answers) > 50
    # Every guard on Redis fails open: nothing is refused.
    assert _assert_answers_are_the_doors_json(answers) == []
    _assert_recovered(answers)
    _assert_health_names(samples, "cache")
    _assert_one_row_per_request(stack, answers, ended)


def test_postgres_down_mid_load(stack: Stack) -> None:
    async def outage() -> None:
        await asyncio.to_thread(stack.postgres.stop)
        await asyncio.sleep(6)
        await asyncio.to_thread(stack.postgres.start)

    answers, samples, ended = asyncio.run(_load(stack, outage))

    assert len(answers) > 50
    refused = _assert_answers_are_the_doors_json(answers)
    # Budgets fail closed: only requests that must hold their cost in Postgres are refused.
    assert refused
    assert {a.budgeted for a in refused} == {True}
    _assert_recovered(answers)
    _assert_health_names(samples, "database")
    _assert_one_row_per_request(stack, answers, ended)


def test_postgres_restart_mid_load(stack: Stack) -> None:
    async def outage() -> None:
        await asyncio.to_thread(stack.postgres.stop)
        await asyncio.to_thread(stack.postgres.start)

    answers, _, ended = asyncio.run(_load(stack, outage))

    assert len(answers) > 20
    _assert_answers_are_the_doors_json(answers)
    _assert_recovered(answers)
    _assert_one_row_per_request(stack, answers, ended)
