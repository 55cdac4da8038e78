"""`/metrics/prometheus`: counters and histograms kept as requests finish (routing/metrics.py),
read back by the scrape (routing/prometheus.py) from a fresh web process, so every value is
exact; with two workers, both workers' counts add up; the scrape never reads the request log."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from analytics.demo import demo_insert, demo_rows
from analytics.models import RequestLog
from analytics.rollups import local_day
from gateway.apikeys import apikey_create
from providers.models import LLMModel, Provider
from routing.guards.breaker import BreakerConfig, CircuitBreakers
from routing.models import Budget
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import (
    chat_path,
    every_task_to,
    settle_config,
    upstream_models,
    wait_rows,
)
from tests.routing.streams import openai_sse
from tests.site.web_process import web_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {settings.ORCHESTRATOR_METRICS_TOKEN}"}
LABELS = ("model", "provider", "door", "status", "cache")
Labels = tuple[tuple[str, str], ...]

_prompts = (f"question {index:05d}" for index in itertools.count())


def scrape(url: str) -> dict[str, dict[Labels, float]]:
    """Every sample of the scrape: by sample name, then by its sorted labels."""
    response = httpx.get(f"{url}/metrics/prometheus", headers=AUTH, timeout=10)
    assert response.status_code == 200
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def labels(model: str, provider: str, door: str, status: str, cache: str, **more: str) -> Labels:
    values = dict(zip(LABELS, (model, provider, door, status, cache), strict=True)) | more
    return tuple(sorted(values.items()))


def row_labels(row: RequestLog, **more: str) -> Labels:
    cache = "hit" if row.cache_hit else "miss"
    return labels(row.model_name, row.provider_name, row.entry_point, row.status, cache, **more)


def totals(rows: Iterable[RequestLog], value: object, **more: str) -> dict[Labels, float]:
    """Sum of `value(row)` per label set, leaving out sums of zero."""
    sums: dict[Labels, float] = {}
    for row in rows:
        key = row_labels(row, **more)
        sums[key] = sums.get(key, 0.0) + float(value(row))  # type: ignore[operator]
    return {key: total for key, total in sums.items() if total}


def nonzero(samples: dict[Labels, float]) -> dict[Labels, float]:
    return {key: value for key, value in samples.items() if value}


def chat(url: str, key: str, model: str, content: str, **extra: object) -> httpx.Response:
    body = {"model": model, "temperature": 0, "messages": [{"role": "user", "content": content}]}
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=body | extra,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_each_finished_request_is_counted_by_model_provider_door_status_and_cache(
    upstream: UpstreamServer,
) -> None:
    # Given two upstream models, a budget, and a web process that has served nothing yet
    models = upstream_models(upstream)
    every_task_to("metrics-policy", models["alpha"], models["beta"])
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["o", "k"], usage=(12, 3))))
    upstream.reply(
        "POST", chat_path("beta"), Reply.json({"error": {"message": "boom"}}, status=500)
    )
    api_key = apikey_create(name="metrics").plaintext
    budget = Budget.objects.create(name="monthly", limit_usd=Decimal(100))
    settle_config()

    with web_process(log_name="prometheus-one") as (url, _):
        before = scrape(url)
        # When: two answers from alpha on /v1, the first one again (from the response cache),
        # one on the native API, one refused by /v1 before it ran, one failed on beta.
        assert chat(url, api_key, "alpha:alpha-model", "first question").status_code == 200
        assert chat(url, api_key, "alpha:alpha-model", "second question").status_code == 200
        again = chat(url, api_key, "alpha:alpha-model", "first question")
        assert again.status_code == 200
        native = httpx.post(
            f"{url}/api/execute",
            json={"prompt": "third question", "model_id": "alpha:alpha-model"},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30,
        )
        assert native.status_code == 200
        refused = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "tool"}]},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30,
        )
        assert refused.status_code == 400
        assert chat(url, api_key, "beta:beta-model", "fourth question").status_code >= 500
        rows = wait_rows(6)
        assert len(rows) == 6
        # A breaker opened after the traffic shows in the scrape (it lives in Redis).
        config = BreakerConfig.for_model()
        breakers = CircuitBreakers()
        for _ in range(config.failure_threshold):
            breakers.record_failure(breakers.allow("beta:beta-model", config), config)
        after = scrape(url)

    # Then: nothing was counted before the traffic
    assert nonzero(before.get("orchestrator_requests_total", {})) == {}
    # ... and every request is counted once, under the labels of its log row.
    requests = after["orchestrator_requests_total"]
    hit = labels("alpha-model", "alpha", "openai", "success", "hit")
    assert [row.cache_hit for row in rows].count(True) == 1
    assert nonzero(requests) == {
        labels("alpha-model", "alpha", "openai", "success", "miss"): 2.0,
        hit: 1.0,
        labels("alpha-model", "alpha", "native", "success", "miss"): 1.0,
        labels("", "", "openai", "invalid", "miss"): 1.0,
        labels("beta-model", "beta", rows[-1].entry_point, rows[-1].status, "miss"): 1.0,
    }
    assert nonzero(requests) == totals(rows, lambda row: 1)
    assert rows[-1].status == "error"
    # Histograms: one observation per request, summing the rows' latencies; time to first
    # token for the requests that had one.
    durations = after["orchestrator_request_duration_seconds_count"]
    assert nonzero(durations) == totals(rows, lambda row: 1)
    infinite = {
        key: value
        for key, value in after["orchestrator_request_duration_seconds_bucket"].items()
        if dict(key)["le"] == "+Inf"
    }
    assert nonzero(infinite) == totals(rows, lambda row: 1, le="+Inf")
    latency_sums = after["orchestrator_request_duration_seconds_sum"]
    for key, total in totals(rows, lambda row: row.latency_ms / 1000).items():
        assert latency_sums[key] == pytest.approx(total, abs=1e-9)
    first_tokens = after["orchestrator_time_to_first_token_seconds_count"]
    assert nonzero(first_tokens) == totals(rows, lambda row: row.time_to_first_token_ms is not None)
    assert first_tokens[labels("alpha-model", "alpha", "openai", "success", "miss")] == 2.0
    # Tokens by kind and cost, to the row.
    tokens = after["orchestrator_tokens_total"]
    assert tokens[labels("alpha-model", "alpha", "openai", "success", "miss", kind="output")] == 6
    for kind in ("input", "output", "cached"):
        sums = totals(rows, lambda row, kind=kind: getattr(row, f"{kind}_tokens"), kind=kind)
        assert {k: v for k, v in nonzero(tokens).items() if dict(k)["kind"] == kind} == sums
    cost = nonzero(after["orchestrator_cost_usd_total"])
    expected_cost = totals(rows, lambda row: row.cost_usd or 0)
    assert cost.keys() == expected_cost.keys()
    for key, total in expected_cost.items():
        assert cost[key] == pytest.approx(total, rel=1e-9)
    # Budget use, as the period row has it; breaker state, one state set per model.
    period = budget.periods.get()
    budget_labels = (("budget", "monthly"), ("period", "month"), ("scope", "global"))
    assert after["orchestrator_budget_limit_usd"][budget_labels] == 100.0
    assert after["orchestrator_budget_spent_usd"][budget_labels] == pytest.approx(
        float(period.spent_usd), rel=1e-9
    )
    assert period.spent_usd > 0
    assert after["orchestrator_budget_reserved_usd"][budget_labels] == 0.0
    states = after["orchestrator_breaker_state"]
    assert {dict(k)["state"]: v for k, v in states.items() if dict(k)["model"] == "beta-model"} == {
        "closed": 0.0,
        "open": 1.0,
        "half_open": 0.0,
    }
    alpha_state = [
        dict(k)["state"] for k, v in states.items() if dict(k)["model"] == "alpha-model" and v
    ]
    assert alpha_state == ["closed"]


async def _burst(url: str, key: str, count: int) -> list[int]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one() -> int:
            body = {
                "model": "alpha:alpha-model",
                "messages": [{"role": "user", "content": next(_prompts)}],
            }
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
            return response.status_code

        return list(await asyncio.gather(*(one() for _ in range(count))))


def test_two_workers_counts_add_up_whichever_worker_serves_the_scrape(
    upstream: UpstreamServer,
) -> None:
    models = upstream_models(upstream)
    every_task_to("metrics-workers", models["alpha"], models["beta"])
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["o", "k"], usage=(12, 3))))
    key = apikey_create(name="workers").plaintext
    settle_config()

    with web_process("--workers", "2", log_name="prometheus-workers") as (url, _):
        # Bursts until both workers have served some requests (each row names its process).
        sent = 0
        deadline = time.monotonic() + 30
        pids: set[int] = set()
        while len(pids) < 2 and time.monotonic() < deadline:
            assert asyncio.run(_burst(url, key, 8)) == [200] * 8
            sent += 8
            pids = {int(row.decision_trace["pid"]) for row in wait_rows(sent)}
        assert len(pids) == 2
        rows = wait_rows(sent)
        per_worker = Counter(int(row.decision_trace["pid"]) for row in rows)
        # Several scrapes, answered by either worker: each sees both workers' requests.
        success = labels("alpha-model", "alpha", "openai", "success", "miss")
        output = labels("alpha-model", "alpha", "openai", "success", "miss", kind="output")
        for _ in range(6):
            samples = scrape(url)
            assert nonzero(samples["orchestrator_requests_total"]) == {success: float(sent)}
            assert samples["orchestrator_request_duration_seconds_count"][success] == sent
            assert samples["orchestrator_time_to_first_token_seconds_count"][success] == sent
            assert samples["orchestrator_tokens_total"][output] == 3.0 * sent
    assert min(per_worker.values()) > 0


def test_the_server_starts_counting_from_zero_in_a_folder_left_by_an_earlier_run(
    upstream: UpstreamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given PROMETHEUS_MULTIPROC_DIR chosen by the operator, and a first run that counted one
    models = upstream_models(upstream)
    every_task_to("metrics-restart", models["alpha"], models["beta"])
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["o", "k"])))
    key = apikey_create(name="restart").plaintext
    settle_config()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    success = labels("alpha-model", "alpha", "openai", "success", "miss")

    with web_process(log_name="prometheus-first-run") as (url, _):
        assert chat(url, key, "alpha:alpha-model", "once").status_code == 200
        wait_rows(1)
        assert scrape(url)["orchestrator_requests_total"][success] == 1.0
    assert list(tmp_path.glob("*.db"))

    # When the server starts again on the same folder, then the first run's count is gone
    with web_process(log_name="prometheus-second-run") as (url, _):
        assert nonzero(scrape(url).get("orchestrator_requests_total", {})) == {}
        assert chat(url, key, "alpha:alpha-model", "twice").status_code == 200
        wait_rows(2)
        assert scrape(url)["orchestrator_requests_total"][success] == 1.0


def test_the_scrape_never_reads_the_request_log_and_demo_rows_never_reach_it() -> None:
    # Given the process's counters as they stand (other tests in this process added to them)
    reader = Client(headers=AUTH)
    before = reader.get("/metrics/prometheus").content.decode()
    # When a day of demo history is loaded through the real seeder
    cloud = Provider.objects.create(
        name="cloud", kind="openai", base_url="http://127.0.0.1:9/v1", locality="cloud"
    )
    LLMModel.objects.create(provider=cloud, name="fast", tier="standard")
    now = timezone.now()
    written = demo_insert(
        demo_rows(count=300, days=1, today=local_day(now), seed=7, now=now),
        progress=lambda done: None,
    )
    assert written == RequestLog.objects.filter(is_demo=True).count() == 300
    with CaptureQueriesContext(connection) as queries:
        after = reader.get("/metrics/prometheus").content.decode()

    # Then the request families are unchanged, and no query of the scrape touched the log
    def requests_lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("orchestrator_requests")]

    assert requests_lines(after) == requests_lines(before)
    assert queries.captured_queries
    assert not [q for q in queries.captured_queries if RequestLog._meta.db_table in q["sql"]]
