"""The official openai SDK against the live ASGI server (the web process on the test database)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from analytics.models import RequestLog
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def client(live_server_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0)


def test_non_streamed_answer_with_usage_and_routing_extensions(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST", chat_path("alpha"), Reply.sse(openai_sse(["Hel", "lo!"], usage=(1000, 200)))
    )
    key = new_key()

    raw = client(live_server_url, key).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Say hello"}]
    )
    completion = raw.parse()

    assert completion.choices[0].message.content == "Hello!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "alpha:alpha-model"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1000, 200)
    assert completion.usage.total_tokens == 1200
    assert raw.headers["x-orchestrator-model"] == "alpha:alpha-model"
    extension = completion.model_extra["orchestrator"]  # type: ignore[index]
    assert Decimal(extension["cost_usd"]) == Decimal("0.00325")
    assert extension["decision"]["chain"] == ["alpha:alpha-model", "beta:beta-model"]
    request_id = raw.headers["x-orchestrator-request-id"]
    (row,) = wait_rows(1, request_id=request_id)
    assert row.status == RequestLog.Status.SUCCESS
    assert row.entry_point == "openai"
    assert row.cost_usd == Decimal("0.00325000")
    assert row.api_key_id is not None
    assert (row.input_tokens, row.output_tokens) == (1000, 200)
    sent = [r for r in upstream.requests if r.path == chat_path("alpha")]
    assert [r.json()["model"] for r in sent] == ["alpha-model"]


def test_streamed_answer_with_final_usage_chunk(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["a", "b", "c"], usage=(7, 3))))
    key = new_key()

    stream = client(live_server_url, key).chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "abc"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "abc"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 3)
    assert all(c.model == "alpha:alpha-model" for c in chunks)
    (row,) = wait_rows(1, entry_point="openai")
    assert row.status == RequestLog.Status.SUCCESS
    assert row.output_tokens == 3


async def test_async_client_and_override_by_model_name(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(gateway_registry)(upstream)
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["beta here"], usage=(5, 2))))
    key = await sync_to_async(new_key)()
    aclient = openai.AsyncOpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0)

    completion = await aclient.chat.completions.create(
        model="beta-model", messages=[{"role": "user", "content": "hi"}]
    )
    streamed = await aclient.chat.completions.create(
        model="beta:beta-model", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" async for c in streamed if c.choices]

    assert completion.choices[0].message.content == "beta here"
    assert completion.model == "beta:beta-model"
    assert "".join(pieces) == "beta here"
    rows = await sync_to_async(wait_rows)(2, entry_point="openai")
    assert [r.requested_model for r in rows] == ["beta-model", "beta:beta-model"]
    assert {r.model_name for r in rows} == {"beta-model"}


def test_models_list_names_enabled_models(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    key = new_key()

    models = client(live_server_url, key).models.list()

    assert [m.id for m in models.data] == ["alpha:alpha-model", "beta:beta-model"]
    assert {m.owned_by for m in models.data} == {"alpha", "beta"}


def test_raw_sse_wire_format(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["x"], usage=(1, 1))))
    key = new_key()

    response = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )

    assert response.headers["content-type"] == "text/event-stream"
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: ") for event in events[:-1])


def test_rate_limit_headers_ride_on_streamed_and_non_streamed_answers(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi"], usage=(10, 2))))
    key = new_key(rpm_limit=60, tpm_limit=100_000)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "auto", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}

    plain = httpx.post(f"{live_server_url}/v1/chat/completions", json=body, headers=headers)
    with httpx.stream(
        "POST",
        f"{live_server_url}/v1/chat/completions",
        json=body | {"stream": True},
        headers=headers,
    ) as streamed:
        streamed.read()

    for response, remaining in ((plain, "59"), (streamed, "58")):
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-requests"] == "60"
        assert response.headers["x-ratelimit-remaining-requests"] == remaining
        assert response.headers["x-ratelimit-limit-tokens"] == "100000"
    assert streamed.headers["content-type"].startswith("text/event-stream")


def test_the_session_is_the_x_session_id_header_else_the_user_field(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["ok"], usage=(3, 1))))
    key = new_key()
    chat = client(live_server_url, key).chat.completions
    messages: list[Any] = [{"role": "user", "content": "hi"}]

    named = chat.with_raw_response.create(
        model="auto", messages=messages, user="u-7", extra_headers={"X-Session-Id": "s-42"}
    )
    by_user = chat.with_raw_response.create(model="auto", messages=messages, user="u-7")
    anonymous = chat.with_raw_response.create(model="auto", messages=messages)

    sessions = [
        wait_rows(1, request_id=raw.headers["x-orchestrator-request-id"])[0].session_id
        for raw in (named, by_user, anonymous)
    ]
    assert sessions == ["s-42", "u-7", ""]
