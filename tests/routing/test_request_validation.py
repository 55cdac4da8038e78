"""Client mistakes are refused up front with a 4xx naming the field, on every door, and never
answered, budgeted or turned into a 5xx: a request whose log row could not be written (a NUL
character, a model name wider than its column), a `max_tokens` out of bounds, and a request no
context window can hold (`TOKEN_LIMIT_EXCEEDED`)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from django.conf import settings

from analytics.models import RequestLog
from routing.models import Batch
from routing.validation import FieldInvalid, max_tokens_check, nul_field, text_check
from tests.gateway.test_api_errors import chat, execute, native_error, openai_error
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse

USER = [{"role": "user", "content": "hi"}]
LONG_MODEL = "m" * 201


def test_the_shared_checks_name_the_path_of_the_field():
    body = {"messages": [{"role": "user", "content": "ok"}, {"content": "a\x00b"}]}

    assert nul_field(body) == "messages[1].content"
    # The key is named with its NUL escaped: the name goes into the refusal and its log row.
    assert nul_field({"metadata": {"k\x00": 1}}, "tasks[2]") == "tasks[2].metadata.k\\u0000"
    assert nul_field({"prompt": "fine", "n": 1, "x": None}) is None
    with pytest.raises(FieldInvalid) as long:
        text_check(LONG_MODEL, "model", 200)
    assert (long.value.field, long.value.message) == ("model", "must be at most 200 characters")
    assert max_tokens_check(1_000_000) == 1_000_000
    for bad in (0, 1_000_001, 2.5, "300", True):
        with pytest.raises(FieldInvalid):
            max_tokens_check(bad)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_v1_refuses_what_its_log_row_could_not_hold(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["ok"])))
    key = new_key()
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"model": "auto", "messages": [{"role": "user", "content": "a\x00b"}]},
            "messages[0].content",
        ),
        ({"model": "auto", "messages": USER, "user": "u\x00"}, "user"),
        ({"model": "alpha\x00", "messages": USER}, "model"),
        # A NUL in a key is named escaped (the refusal's message and row could not hold it).
        ({"model": {"\x00": None}, "messages": USER}, "model.\\u0000"),
        ({"model": LONG_MODEL, "messages": USER}, "model"),
        ({"model": "auto", "messages": USER, "max_tokens": 1_000_001}, "max_tokens"),
        ({"model": "auto", "messages": USER, "max_tokens": 2.5}, "max_tokens"),
        (
            {"model": "auto", "messages": USER, "max_completion_tokens": "9"},
            "max_completion_tokens",
        ),
    ]

    answers = [chat(live_server_url, key, body) for body, _ in cases]

    for answer, (_, field) in zip(answers, cases, strict=True):
        assert answer.status_code == 400, (field, answer.text)
        error = openai_error(answer)
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            "INVALID_REQUEST",
            field,
        )
    assert upstream.requests == []
    # Each refusal still has its row, naming the model only where the row can hold it.
    rows = wait_rows(len(cases), entry_point="openai")
    assert [(r.status, r.error_code) for r in rows] == [("invalid", "INVALID_REQUEST")] * len(cases)
    assert [r.requested_model for r in rows] == [
        "auto",
        "auto",
        "",
        "",
        "",
        "auto",
        "auto",
        "auto",
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_native_execute_and_batch_refuse_what_cannot_be_logged(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["ok"])))
    key = new_key()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"prompt": "a\x00b"}, "prompt"),
        ({"messages": [{"role": "user", "content": "\x00"}]}, "messages[0].content"),
        ({"prompt": "hi", "session_id": "s\x00"}, "session_id"),
        ({"prompt": "hi", "metadata": {"note": "n\x00"}}, "metadata.note"),
        ({"prompt": "hi", "context": {"k\x00": "v"}}, "context.k\\u0000"),
        ({"prompt": "hi", "system_prompt": "\x00"}, "system_prompt"),
    ]
    schema_cases: list[tuple[dict[str, Any], str]] = [
        ({"prompt": "hi", "model_id": LONG_MODEL}, "model_id"),
        ({"prompt": "hi", "task_type": "t" * 33}, "task_type"),
        ({"prompt": "hi", "session_id": "s" * 129}, "session_id"),
        ({"prompt": "hi", "max_tokens": 1_000_001}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": "300"}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 2.5}, "max_tokens"),
    ]
    auth = {"Authorization": f"Bearer {key}"}

    answers = [execute(live_server_url, key, body) for body, _ in cases + schema_cases]
    batch = httpx.post(
        f"{live_server_url}/api/batch",
        json={"tasks": [{"prompt": "fine"}, {"prompt": "hi", "metadata": {"note": "\x00"}}]},
        headers=auth,
        timeout=30,
    )
    nul_status = httpx.get(
        f"{live_server_url}/models/%00/status",
        headers={"Authorization": f"Bearer {settings.ORCHESTRATOR_METRICS_TOKEN}"},
        timeout=30,
    )

    for answer, (_, field) in zip(answers[: len(cases)], cases, strict=True):
        assert answer.status_code == 400, (field, answer.text)
        error = native_error(answer)
        assert (error["code"], error["details"]) == ("INVALID_REQUEST", {"field": field})
    for answer, (_, field) in zip(answers[len(cases) :], schema_cases, strict=True):
        assert answer.status_code == 400, (field, answer.text)
        error = native_error(answer)
        assert error["code"] == "INVALID_REQUEST"
        assert [e["field"] for e in error["details"]["errors"]] == [field]
    assert batch.status_code == 400, batch.text
    assert native_error(batch)["details"] == {"field": "tasks[1].metadata.note"}
    assert Batch.objects.count() == 0
    assert nul_status.status_code == 404
    assert upstream.requests == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_request_no_context_window_holds_is_a_400_on_every_http_door(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)  # alpha and beta: 8192-token windows; the baseline is disabled
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["ok"])))
    key = new_key()
    auth = {"Authorization": f"Bearer {key}"}

    native = execute(live_server_url, key, {"prompt": "hi", "max_tokens": 1_000_000})
    named = execute(
        live_server_url, key, {"prompt": "hi", "max_tokens": 9_000, "model_id": "alpha:alpha-model"}
    )
    compatible = chat(
        live_server_url, key, {"model": "auto", "messages": USER, "max_tokens": 9_000}
    )
    submitted = httpx.post(
        f"{live_server_url}/api/batch",
        json={"tasks": [{"prompt": "hi", "max_tokens": 1_000_000}]},
        headers=auth,
        timeout=30,
    )

    assert native.status_code == 400, native.text
    error = native_error(native)
    assert error["code"] == "TOKEN_LIMIT_EXCEEDED"
    assert (error["details"]["needed_tokens"], error["details"]["largest_window"]) == (
        1_000_001,
        8192,
    )
    assert "more than the context window of any enabled model (8192 tokens)" in error["message"]
    assert named.status_code == 400, named.text
    assert native_error(named)["details"]["largest_window"] == 8192
    assert "context window of alpha:alpha-model" in native_error(named)["message"]
    assert compatible.status_code == 400, compatible.text
    v1 = openai_error(compatible)
    assert (v1["type"], v1["code"], v1["param"]) == (
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
    )
    assert "9001 tokens" in v1["message"]
    assert submitted.status_code == 202, submitted.text
    batch_id = submitted.json()["batch_id"]
    deadline = time.monotonic() + 30
    while True:
        progress = httpx.get(f"{live_server_url}/api/batch/{batch_id}", headers=auth).json()
        if progress["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(i["state"], i["error"]["code"]) for i in progress["items"]] == [
        ("dead", "TOKEN_LIMIT_EXCEEDED")
    ]
    assert upstream.requests == []
    rows = wait_rows(4, error_code="TOKEN_LIMIT_EXCEEDED")
    assert sorted((r.entry_point, r.status) for r in rows) == [
        ("batch", "invalid"),
        ("native", "invalid"),
        ("native", "invalid"),
        ("openai", "invalid"),
    ]
    assert all(r.decision_trace.get("candidates") is not None for r in rows)
    assert RequestLog.objects.filter(status="success").count() == 0
