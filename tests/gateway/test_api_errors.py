"""Every error code through the live server, in both envelopes: the native one on /api
(`{"error": {"code", "message", "details"}}`) and OpenAI's on /v1."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.test import Client

from analytics.models import RequestLog
from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.gateway_support import (
    chat_path,
    gateway_registry,
    new_key,
    settle_config,
    wait_rows,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CONTEXT_TOO_LONG = fixture("openai/error_context_length.json")


def execute(url: str, key: str | None, payload: object, **headers: str) -> httpx.Response:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{url}/api/execute", json=payload, headers=headers, timeout=30)


def chat(url: str, key: str | None, payload: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/chat/completions", json=payload, headers=headers, timeout=30)


def traced(response: httpx.Response) -> set[str]:
    """An error of a logged request names its row: `trace_id` in the body, the same id in the
    `x-orchestrator-request-id` header; an error without a row has neither."""
    trace_id = response.headers.get("x-orchestrator-request-id")
    assert response.json()["error"].get("trace_id") == trace_id
    return {"trace_id"} if trace_id else set()


def native_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"} | traced(response)
    return body["error"]


def openai_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"} | traced(response)
    return body["error"]


@pytest.mark.parametrize(
    ("reply", "code", "status"),
    [
        (Reply.json({"error": {"message": "boom"}}, status=500), "MODEL_UNAVAILABLE", 503),
        (Reply.json({"error": {"message": "slow down"}}, status=429), "RATE_LIMIT_EXCEEDED", 429),
        (Reply.json({"error": {"message": "late"}}, status=408), "TIMEOUT", 504),
        (Reply.json({"error": {"message": "bad input"}}, status=400), "MODEL_ERROR", 502),
        (Reply.json(CONTEXT_TOO_LONG, status=400), "TOKEN_LIMIT_EXCEEDED", 400),
        (Reply.sse(b"data: {not json\n\n"), "INVALID_RESPONSE", 502),
    ],
)
def test_upstream_failures_map_to_one_code_and_status(
    live_server_url: str, upstream: UpstreamServer, reply: Reply, code: str, status: int
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), reply)
    upstream.reply("POST", chat_path("beta"), reply)
    key = new_key()

    native = execute(live_server_url, key, {"prompt": f"native {code}"})
    compatible = chat(
        live_server_url,
        key,
        {"model": "auto", "messages": [{"role": "user", "content": f"v1 {code}"}]},
    )

    assert native.status_code == status
    assert native_error(native)["code"] == code
    assert compatible.status_code == status
    error = openai_error(compatible)
    # /v1 answers with OpenAI's own code where it has one.
    assert error["code"] == ("context_length_exceeded" if code == "TOKEN_LIMIT_EXCEEDED" else code)
    rows = wait_rows(2, error_code=code)
    assert [r.entry_point for r in rows] == ["native", "openai"]
    # The error names its log row instead of carrying the routing trace.
    assert [str(r.request_id) for r in rows] == [
        native_error(native)["trace_id"],
        error["trace_id"],
    ]
    assert "trace" not in native_error(native)["details"]
    assert "attempts" not in native_error(native)["details"]
    if code == "RATE_LIMIT_EXCEEDED":
        assert error["type"] == "rate_limit_error"


def test_a_provider_refusing_its_own_credentials_is_not_the_callers_auth_failure(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    refused = Reply.json({"error": {"message": "Incorrect API key provided"}}, status=401)
    upstream.reply("POST", chat_path("alpha"), refused)
    upstream.reply("POST", chat_path("beta"), refused)
    key = new_key()

    native = execute(live_server_url, key, {"prompt": "credentials"})
    compatible = chat(
        live_server_url, key, {"model": "auto", "messages": [{"role": "user", "content": "c"}]}
    )

    assert (native.status_code, compatible.status_code) == (503, 503)
    error = native_error(native)
    assert error["code"] == "MODEL_UNAVAILABLE"
    assert error["message"] == (
        "the provider refused its configured credentials for beta:beta-model: "
        "Incorrect API key provided"
    )
    assert openai_error(compatible)["code"] == "MODEL_UNAVAILABLE"
    rows = wait_rows(2, error_code="MODEL_UNAVAILABLE")
    assert [r.entry_point for r in rows] == ["native", "openai"]
    # Each attempt's outcome and upstream status are in the trace of the row the error names.
    native_row = next(r for r in rows if str(r.request_id) == error["trace_id"])
    assert native_row.entry_point == "native"
    assert [(a["outcome"], a["status"]) for a in native_row.decision_trace["attempts"]] == [
        ("AUTHENTICATION_FAILED", 401),
        ("AUTHENTICATION_FAILED", 401),
    ]
    # MODEL_UNAVAILABLE names the model that failed last and why (the seed's {model, reason}).
    assert error["details"] == {
        "request_id": error["trace_id"],
        "status": 401,
        "model": "beta:beta-model",
        "reason": "Incorrect API key provided",
    }


def test_an_empty_route_names_its_log_row_instead_of_carrying_the_trace(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    models = gateway_registry(upstream)
    for name in ("alpha", "beta"):
        models[name].enabled = False
        models[name].save()
    settle_config()
    key = new_key()

    native = execute(live_server_url, key, {"prompt": "nobody home"})
    compatible = chat(
        live_server_url, key, {"model": "auto", "messages": [{"role": "user", "content": "n"}]}
    )

    assert (native.status_code, compatible.status_code) == (503, 503)
    error = native_error(native)
    assert (error["code"], error["message"]) == ("MODEL_UNAVAILABLE", "no eligible model")
    assert error["details"] == {"request_id": error["trace_id"]}
    v1_error = openai_error(compatible)
    assert (v1_error["code"], v1_error["message"]) == ("MODEL_UNAVAILABLE", "no eligible model")
    rows = wait_rows(2, error_code="MODEL_UNAVAILABLE")
    by_id = {str(r.request_id): r for r in rows}
    # The trace stays with the row, where staff look it up by the error's trace id.
    assert by_id[error["trace_id"]].entry_point == "native"
    assert by_id[v1_error["trace_id"]].entry_point == "openai"
    for row in rows:
        assert (row.decision_trace["outcome"], row.decision_trace["chain"]) == (
            "no eligible model",
            [],
        )


def test_refusal_after_authentication_names_its_log_row(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()

    answer = chat(live_server_url, key, {"model": "auto", "messages": [{"role": "function"}]})

    assert answer.status_code == 400
    error = openai_error(answer)
    assert (error["code"], error["param"]) == ("INVALID_REQUEST", "messages[0].role")
    (row,) = wait_rows(1, entry_point="openai")
    assert str(row.request_id) == error["trace_id"]
    assert (row.status, row.error_code) == ("invalid", "INVALID_REQUEST")


def test_authentication_failures(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    revoked = new_key()
    from gateway.apikeys import apikey_find, apikey_revoke

    apikey_revoke(api_key=apikey_find(ref=revoked[:12]))
    payload = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}

    for key in (None, "orch-wrong", revoked, "sk-not-ours"):
        native = execute(live_server_url, key, {"prompt": "hi"})
        compatible = chat(live_server_url, key, payload)
        assert native.status_code == 401
        assert native_error(native)["code"] == "AUTHENTICATION_FAILED"
        assert compatible.status_code == 401
        assert openai_error(compatible)["type"] == "authentication_error"
    via_header = execute(live_server_url, None, {"prompt": "hi"}, **{"x-api-key": "orch-nope"})
    assert via_header.status_code == 401
    assert RequestLog.objects.count() == 0


def test_validation_errors_name_the_field(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    key = new_key()

    bad_role = execute(live_server_url, key, {"messages": [{"role": "robot", "content": "x"}]})
    bad_temperature = execute(live_server_url, key, {"prompt": "x", "temperature": 7})
    nothing = execute(live_server_url, key, {})
    v1_role = chat(live_server_url, key, {"model": "auto", "messages": [{"role": "function"}]})
    v1_model = chat(live_server_url, key, {"messages": [{"role": "user", "content": "x"}]})
    v1_tokens = chat(
        live_server_url,
        key,
        {"model": "auto", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
    )

    assert bad_role.status_code == 400
    assert "messages.0.role" in native_error(bad_role)["message"]
    assert "temperature" in native_error(bad_temperature)["message"]
    assert native_error(nothing)["details"] == {"field": "prompt"}
    assert openai_error(v1_role)["param"] == "messages[0].role"
    assert openai_error(v1_model)["param"] == "model"
    assert openai_error(v1_tokens)["param"] == "max_tokens"
    # Refusals after authentication on /v1 are logged as invalid requests.
    rows = wait_rows(3, entry_point="openai")
    assert [(r.status, r.error_code) for r in rows] == [("invalid", "INVALID_REQUEST")] * 3


def test_malformed_and_oversized_bodies(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    key = new_key()
    auth = {"Authorization": f"Bearer {key}", "content-type": "application/json"}

    native = httpx.post(f"{live_server_url}/api/execute", content=b"{nope", headers=auth)
    compatible = httpx.post(f"{live_server_url}/v1/chat/completions", content=b"{", headers=auth)
    # Not JSON either, though Python's json module reads them: a NaN literal, a lone surrogate.
    not_a_number = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        content=b'{"model": "auto", "temperature": NaN, "messages": []}',
        headers=auth,
    )
    lone_surrogate = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        content=b'{"model": "auto", "messages": [{"role": "user", "content": "\\ud800"}]}',
        headers=auth,
    )
    big = b'{"prompt": "' + b"x" * (2 * 1024 * 1024 + 1) + b'"}'
    native_big = httpx.post(f"{live_server_url}/api/execute", content=big, headers=auth)
    v1_big = httpx.post(f"{live_server_url}/v1/chat/completions", content=big, headers=auth)

    assert native.status_code == 400
    assert native_error(native)["code"] == "INVALID_REQUEST"
    assert compatible.status_code == 400
    assert openai_error(compatible)["param"] == "body"
    for refused in (not_a_number, lone_surrogate):
        assert refused.status_code == 400
        assert openai_error(refused)["param"] == "body"
        assert openai_error(refused)["message"].startswith("body: not valid JSON")
    assert native_big.status_code == 413
    assert native_error(native_big)["details"]["limit_bytes"] == 2 * 1024 * 1024
    assert v1_big.status_code == 413
    assert openai_error(v1_big)["code"] == "INVALID_REQUEST"


def test_budget_exceeded(live_server_url: str, upstream: UpstreamServer) -> None:
    from decimal import Decimal

    from routing.models import Budget

    gateway_registry(upstream)
    Budget.objects.create(name="tiny", limit_usd=Decimal("0.00000001"))
    key = new_key()

    native = execute(live_server_url, key, {"prompt": "costly"})

    assert native.status_code == 402
    assert native_error(native)["code"] == "BUDGET_EXCEEDED"
    (row,) = wait_rows(1, entry_point="native")
    assert row.status == RequestLog.Status.BUDGET_REFUSED


def test_unknown_model_is_an_invalid_request(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()

    response = chat(
        live_server_url,
        key,
        {"model": "nosuch:model", "messages": [{"role": "user", "content": "x"}]},
    )

    assert response.status_code == 400
    assert openai_error(response)["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nothing-here"),
        ("POST", "/api/execute/extra"),
        ("PATCH", "/api/manage/models/"),
        ("PATCH", "/api/manage/providers/a/b"),
    ],
)
def test_a_path_under_api_that_no_route_matches_is_the_apis_json_404(
    client: Client, method: str, path: str
) -> None:
    response = client.generic(method, path)

    assert response.status_code == 404
    assert response["content-type"] == "application/json"
    assert response.json() == {
        "error": {"code": "INVALID_REQUEST", "message": f"Unknown endpoint {path}.", "details": {}}
    }
