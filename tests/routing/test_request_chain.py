"""A request's own `fallback_chain`, the model API seed's task-type names and its error codes
(`MODEL_UNAVAILABLE` with `{model, reason}`, `TOKEN_LIMIT_EXCEEDED`), through the live web
process on every door that takes them, against the local upstream server."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from providers.models import Provider
from routing.guards.breaker import BreakerConfig, CircuitBreakers
from tests.gateway.test_api_errors import chat, execute, native_error, openai_error
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import (
    chat_path,
    gateway_registry,
    new_key,
    settle_config,
    wait_rows,
)
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

USER = [{"role": "user", "content": "hi"}]
DOWN = Reply.json({"error": {"message": "overloaded"}}, status=503)


def paths(upstream: UpstreamServer) -> list[str]:
    return [r.path for r in upstream.requests]


def batch_done(url: str, key: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    submitted = httpx.post(f"{url}/api/batch", json={"tasks": tasks}, headers=auth, timeout=30)
    assert submitted.status_code == 202, submitted.text
    deadline = time.monotonic() + 30
    while True:
        progress = httpx.get(
            f"{url}/api/batch/{submitted.json()['batch_id']}", headers=auth, timeout=30
        ).json()
        if progress["state"] != "running" or time.monotonic() > deadline:
            return progress
        time.sleep(0.1)


def test_native_fallback_chain_is_tried_in_the_callers_order(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    # The policy sends every task to alpha first; the request's chain puts beta first.
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("beta"), DOWN)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["from alpha"])))
    key = new_key()

    answer = execute(
        live_server_url,
        key,
        {"prompt": "hi", "fallback_chain": ["beta-model", "alpha:alpha-model"]},
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_id"], body["response"]) == ("alpha:alpha-model", "from alpha")
    routing = body["routing"]
    assert routing["requested_chain"] == {
        "from": "request",
        "models": ["beta:beta-model", "alpha:alpha-model"],
    }
    assert [(c["model"], c["source"]) for c in routing["candidates"]] == [
        ("beta:beta-model", "request:fallback_chain"),
        ("alpha:alpha-model", "request:fallback_chain"),
    ]
    assert routing["chain"] == ["beta:beta-model", "alpha:alpha-model"]
    assert "router" not in routing  # the caller chose: no learned-router verdict
    assert set(paths(upstream)) == {chat_path("beta"), chat_path("alpha")}
    assert paths(upstream)[-1] == chat_path("alpha")
    (row,) = wait_rows(1, entry_point="native")
    assert (row.status, row.model_name, row.fallbacks) == ("success", "alpha-model", 1)
    assert row.decision_trace["requested_chain"]["from"] == "request"


def test_v1_fallback_chain_extension_follows_the_named_model(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("beta"), DOWN)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["from alpha"])))
    key = new_key()

    answer = chat(
        live_server_url,
        key,
        {"model": "beta:beta-model", "messages": USER, "fallback_chain": ["alpha-model"]},
    )

    assert answer.status_code == 200, answer.text
    assert answer.headers["x-orchestrator-fallbacks"] == "1"
    decision = answer.json()["orchestrator"]["decision"]
    assert decision["requested_chain"]["models"] == ["beta:beta-model", "alpha:alpha-model"]
    assert [c["source"] for c in decision["candidates"]] == [
        "request:model",
        "request:fallback_chain",
    ]
    assert answer.json()["model"] == "alpha:alpha-model"


def test_a_bad_fallback_chain_is_refused_naming_the_entry(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)  # the baseline premium:big is disabled
    key = new_key()

    def native(chain: object) -> httpx.Response:
        return execute(live_server_url, key, {"prompt": "hi", "fallback_chain": chain})

    unknown = native(["alpha:alpha-model", "nosuch:model"])
    policy = native(["gateway-policy"])
    empty = native([""])
    too_many = native(["alpha-model"] * 6)
    disabled = native(["alpha:alpha-model", "premium:big"])
    v1_shape = chat(
        live_server_url, key, {"model": "auto", "messages": USER, "fallback_chain": "alpha"}
    )
    v1_unknown = chat(
        live_server_url, key, {"model": "auto", "messages": USER, "fallback_chain": ["x:y"]}
    )
    batch = httpx.post(
        f"{live_server_url}/api/batch",
        json={"tasks": [{"prompt": "a"}, {"prompt": "b", "fallback_chain": [""]}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )

    assert unknown.status_code == 400, unknown.text
    error = native_error(unknown)
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"]["field"] == "fallback_chain[1]"
    assert error["message"] == (
        "fallback_chain[1]: unknown model 'nosuch:model'; expected provider:model of a "
        "registered model"
    )
    error = native_error(policy)
    assert (policy.status_code, error["details"]["field"]) == (400, "fallback_chain[0]")
    assert "'gateway-policy' is a routing policy" in error["message"]
    assert empty.status_code == 400
    assert native_error(empty)["details"] == {"field": "fallback_chain[0]"}
    assert too_many.status_code == 400
    assert [e["field"] for e in native_error(too_many)["details"]["errors"]] == ["fallback_chain"]
    assert disabled.status_code == 503, disabled.text
    error = native_error(disabled)
    assert error["code"] == "MODEL_UNAVAILABLE"
    assert error["message"] == "model 'premium:big' is unavailable: model disabled"
    assert {k: error["details"][k] for k in ("model", "reason", "field")} == {
        "model": "premium:big",
        "reason": "model disabled",
        "field": "fallback_chain[1]",
    }
    assert v1_shape.status_code == 400
    assert openai_error(v1_shape)["param"] == "fallback_chain"
    assert v1_unknown.status_code == 400
    assert openai_error(v1_unknown)["param"] == "fallback_chain[0]"
    assert batch.status_code == 400
    assert native_error(batch)["details"] == {"field": "tasks[1].fallback_chain[0]"}
    assert upstream.requests == []


def test_seed_task_types_are_accepted_and_recorded_with_their_task(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["ok"])))
    key = new_key()

    native = execute(live_server_url, key, {"prompt": "hi", "task_type": "code_generation"})
    compatible = chat(
        live_server_url, key, {"model": "auto", "messages": USER, "task_type": "summarization"}
    )
    progress = batch_done(live_server_url, key, [{"prompt": "hi", "task_type": "refactoring"}])
    unknown = execute(live_server_url, key, {"prompt": "hi", "task_type": "poetry"})

    assert native.status_code == 200, native.text
    routing = native.json()["routing"]
    assert routing["request"]["task_type"] == "code"
    assert routing["classification"]["task_type_sent"] == "code_generation"
    assert compatible.status_code == 200, compatible.text
    assert compatible.json()["orchestrator"]["decision"]["request"]["task_type"] == "analysis"
    assert [i["state"] for i in progress["items"]] == ["succeeded"], progress
    assert unknown.status_code == 400
    error = native_error(unknown)
    assert (error["code"], error["details"]["field"]) == ("INVALID_REQUEST", "task_type")
    assert "or a seed name such as code_generation" in error["message"]
    rows = wait_rows(4)
    by_door = sorted(
        (
            r.entry_point,
            r.task_type,
            r.decision_trace.get("classification", {}).get("task_type_sent"),
        )
        for r in rows
        if r.status == "success"
    )
    assert by_door == [
        ("batch", "code", "refactoring"),
        ("native", "code", "code_generation"),
        ("openai", "analysis", "summarization"),
    ]


def test_a_named_model_that_cannot_answer_is_model_unavailable_with_model_and_reason(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    beta = Provider.objects.get(name="beta")
    beta.enabled = False
    beta.save()
    settle_config()
    config = BreakerConfig.for_model()
    breakers = CircuitBreakers()
    for _ in range(config.failure_threshold):
        breakers.record_failure(breakers.allow("alpha:alpha-model", config), config)
    key = new_key()

    disabled = execute(live_server_url, key, {"prompt": "hi", "model_id": "premium:big"})
    provider_off = execute(live_server_url, key, {"prompt": "hi", "model_id": "beta:beta-model"})
    breaker_open = execute(live_server_url, key, {"prompt": "hi", "model_id": "alpha:alpha-model"})
    compatible = chat(live_server_url, key, {"model": "big", "messages": USER})

    got = []
    for response in (disabled, provider_off, breaker_open):
        assert response.status_code == 503, response.text
        error = native_error(response)
        got.append(
            (error["code"], error["message"], error["details"]["model"], error["details"]["reason"])
        )
    assert got == [
        (
            "MODEL_UNAVAILABLE",
            "model 'premium:big' is unavailable: model disabled",
            "premium:big",
            "model disabled",
        ),
        (
            "MODEL_UNAVAILABLE",
            "model 'beta:beta-model' is unavailable: provider beta disabled",
            "beta:beta-model",
            "provider beta disabled",
        ),
        (
            "MODEL_UNAVAILABLE",
            "model 'alpha:alpha-model' is unavailable: circuit breaker open",
            "alpha:alpha-model",
            "circuit breaker open",
        ),
    ]
    assert compatible.status_code == 503, compatible.text
    error = openai_error(compatible)
    assert (error["code"], error["message"]) == (
        "MODEL_UNAVAILABLE",
        "model 'premium:big' is unavailable: model disabled",
    )
    assert upstream.requests == []
    rows = wait_rows(4, error_code="MODEL_UNAVAILABLE")
    assert sorted((r.entry_point, r.status) for r in rows) == [
        ("native", "error"),
        ("native", "error"),
        ("native", "error"),
        ("openai", "error"),
    ]
    outcomes = sorted(str(r.decision_trace.get("outcome")) for r in rows)
    assert outcomes == [
        "override",  # the breaker is found open only when the call is due
        "unavailable: beta:beta-model provider beta disabled",
        "unavailable: premium:big model disabled",
        "unavailable: premium:big model disabled",
    ]
