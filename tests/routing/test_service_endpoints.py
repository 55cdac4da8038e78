"""`/metrics`, `/metrics/prometheus`, `/models` and `/models/{name}/status` over a known log,
read with the scrape token (who may read them: tests/gateway/test_service_access.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from analytics.demo import demo_insert, demo_rows
from analytics.models import RequestLog
from analytics.outcome import RequestOutcome
from analytics.rollups import local_day
from analytics.services import request_record
from providers.models import LLMModel, Provider
from routing.guards.breaker import BreakerConfig, CircuitBreakers

pytestmark = pytest.mark.django_db


@pytest.fixture
def log() -> dict[str, LLMModel]:
    cloud = Provider.objects.create(
        name="cloud", kind="openai", base_url="http://127.0.0.1:9/v1", locality="cloud"
    )
    fast = LLMModel.objects.create(provider=cloud, name="fast", tier="standard")
    flaky = LLMModel.objects.create(provider=cloud, name="flaky", tier="premium")
    now = timezone.now()
    rows = [
        (fast, "success", 100, 10, 5, "0.001", "0.010", True),
        (fast, "success", 300, 20, 10, "0.002", "0.020", False),
        (flaky, "error", 50, 0, 0, None, None, False),
        (flaky, "success", 200, 30, 15, "0.003", "0.030", False),
    ]
    for i, (model, status, latency, tin, tout, cost, base, hit) in enumerate(rows):
        request_record(
            outcome=RequestOutcome(
                created_at=now - timedelta(seconds=10 * (len(rows) - i)),
                entry_point="openai",
                status=status,
                cost_state="reported" if cost else "none",
                model_id=model.id,
                model_name=model.name,
                provider_name="cloud",
                locality="cloud",
                latency_ms=latency,
                input_tokens=tin,
                output_tokens=tout,
                cost_usd=Decimal(cost) if cost else None,
                baseline_cost_usd=Decimal(base) if base else None,
                cache_hit=hit,
            )
        )
    # A row outside the default one-day window is not counted.
    request_record(
        outcome=RequestOutcome(
            created_at=now - timedelta(days=2),
            entry_point="openai",
            status="success",
            cost_state="reported",
            cost_usd=Decimal("5"),
        )
    )
    return {"fast": fast, "flaky": flaky}


@pytest.fixture
def reader() -> Client:
    return Client(headers={"Authorization": f"Bearer {settings.ORCHESTRATOR_METRICS_TOKEN}"})


def test_metrics_totals_over_the_last_day(log: dict[str, LLMModel], reader: Client) -> None:
    body = reader.get("/metrics").json()

    assert body["window_s"] == 86400
    assert body["requests"] == {
        "total": 4,
        "success": 3,
        "failed": 1,
        "by_status": {"success": 3, "error": 1},
        "cache_hits": 1,
    }
    assert body["performance"] == {"avg_response_time": 0.2, "p95_response_time": 0.3}
    assert body["tokens"] == {"input": 60, "output": 30, "cached": 0, "total": 90}
    assert body["cost"] == {
        "total_usd": "0.00600000",
        "baseline_usd": "0.06000000",
        "savings_usd": "0.05400000",
        "estimated_requests": 0,
        "unknown_price_requests": 0,
    }


def test_metrics_count_unpriced_and_estimated_requests_beside_the_total(
    log: dict[str, LLMModel], reader: Client
) -> None:
    for state, cost in (("unknown_price", None), ("estimated", "0.004")):
        request_record(
            outcome=RequestOutcome(
                created_at=timezone.now(),
                entry_point="openai",
                status="success",
                cost_state=state,
                cost_usd=Decimal(cost) if cost else None,
            )
        )

    cost = reader.get("/metrics").json()["cost"]

    assert cost["total_usd"] == "0.01000000"
    assert (cost["estimated_requests"], cost["unknown_price_requests"]) == (1, 1)


def test_prometheus_text_is_the_live_counters_not_the_log(
    log: dict[str, LLMModel], reader: Client
) -> None:
    # The rows above were written straight into the log: no request finished in this process
    # for these models, so the counters (routing/metrics.py) have nothing of them.
    response = reader.get("/metrics/prometheus")

    text = response.content.decode()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "# TYPE orchestrator_requests_total counter" in text
    assert "# TYPE orchestrator_request_duration_seconds histogram" in text
    fast = [line for line in text.splitlines() if 'model="fast"' in line]
    assert fast and all(line.startswith("orchestrator_breaker_") for line in fast)
    assert 'orchestrator_breaker_state{model="fast",provider="cloud",state="closed"} 1.0' in text


def test_model_status_shows_load_errors_breaker_and_last_latency(
    log: dict[str, LLMModel], reader: Client
) -> None:
    config = BreakerConfig.for_model()
    breakers = CircuitBreakers()
    for _ in range(config.failure_threshold):
        breakers.record_failure(breakers.allow("cloud:flaky", config), config)

    listed = reader.get("/models").json()["models"]
    flaky = reader.get("/models/cloud:flaky/status").json()

    assert [m["ref"] for m in listed] == ["cloud:fast", "cloud:flaky"]
    fast = listed[0]
    assert (fast["status"], fast["last_latency_ms"]) == ("available", 300)
    assert fast["load"]["requests"] == 2 and fast["errors"]["count"] == 0
    assert flaky["status"] == "unavailable"
    assert flaky["breaker"]["state"] == "open"
    assert flaky["errors"] == {"window_s": 300, "count": 1, "rate": 0.5}
    assert flaky["last_latency_ms"] == 200


def test_demo_rows_count_in_no_load_errors_latency_or_metrics(
    log: dict[str, LLMModel], reader: Client
) -> None:
    # Given a day of demo history from the real seeder, moved into the five-minute window
    now = timezone.now()
    written = demo_insert(
        demo_rows(count=200, days=1, today=local_day(now), seed=7, now=now),
        progress=lambda done: None,
    )
    demo = RequestLog.objects.filter(is_demo=True)
    demo.update(created_at=now - timedelta(seconds=30), latency_ms=9999)
    assert written == 200
    assert demo.filter(model=log["fast"]).exists() and demo.exclude(status="success").exists()

    listed = {m["ref"]: m for m in reader.get("/models").json()["models"]}
    flaky = reader.get("/models/cloud:flaky/status").json()
    metrics = reader.get("/metrics").json()

    # Then only the four real rows count, as before the demo history came
    fast = listed["cloud:fast"]
    assert (fast["load"]["requests"], fast["errors"]["count"]) == (2, 0)
    assert fast["last_latency_ms"] == 300
    assert (flaky["load"]["requests"], flaky["errors"]["count"]) == (2, 1)
    assert flaky["last_latency_ms"] == 200
    assert metrics["requests"]["total"] == 4
    assert metrics["tokens"]["input"] == 60
    assert metrics["cost"]["total_usd"] == "0.00600000"


def test_unknown_model_status_is_a_404_envelope(log: dict[str, LLMModel], reader: Client) -> None:
    response = reader.get("/models/nowhere:none/status")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "MODEL_UNAVAILABLE"
