"""Tool calling and JSON answers at the OpenAI door, end to end: the openai SDK (and raw HTTP,
for the exact chunks) against the live server, routed to a local OpenAI-compatible upstream
that answers with tool calls in OpenAI's wire format. Only models marked for tools (or JSON
output) are routed to; when none can answer, a 400 with the capability's own code names the
field. The answer is costed and logged, and never cached."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from analytics.models import RequestLog
from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.gateway_support import (
    WEATHER_TOOL,
    chat_path,
    new_key,
    tools_registry,
    wait_rows,
)
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WEATHER = WEATHER_TOOL
TIME: Any = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
QUESTION: list[Any] = [{"role": "user", "content": "Weather and time in Paris?"}]
CALL_WEATHER = {
    "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}
CALL_TIME = {
    "id": "call_Q8hWQ3uCg2sZmdlp1mS1HRc2",
    "type": "function",
    "function": {"name": "get_time", "arguments": '{"zone":"CET"}'},
}
TOOL_CALLS_STREAM = fixture("openai/chat_stream_tool_calls.sse")


def client(live_server_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0)


def test_a_tool_call_answer_routed_past_a_model_without_tools_costed_and_logged(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_tools",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(TOOL_CALLS_STREAM))

    raw = client(live_server_url, new_key()).chat.completions.with_raw_response.create(
        model="auto",
        messages=QUESTION,
        tools=[WEATHER, TIME],
        tool_choice="auto",
        parallel_tool_calls=True,
    )
    completion = raw.parse()

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert [call.model_dump() for call in choice.message.tool_calls or []] == [
        CALL_WEATHER,
        CALL_TIME,
    ]
    assert completion.model == "beta:beta-model"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (82, 47)
    # What the upstream got: the tools as they were sent, and nothing went to alpha.
    (sent,) = upstream.requests
    assert sent.path == chat_path("beta")
    assert sent.json() == {
        "model": "beta-model",
        "messages": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [WEATHER, TIME],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }
    decision = completion.model_extra["orchestrator"]["decision"]  # type: ignore[index]
    assert decision["request"]["needs"] == ["tools"]
    assert [(c["model"], c["kept"], c["reason"]) for c in decision["candidates"]] == [
        ("alpha:alpha-model", False, "does not accept tools"),
        ("beta:beta-model", True, ""),
        ("premium:big", False, "disabled"),
    ]
    assert decision["cache"] == {"result": "skipped", "reason": "tools"}
    (row,) = wait_rows(1, request_id=raw.headers["x-orchestrator-request-id"])
    assert (row.status, row.model_name) == (RequestLog.Status.SUCCESS, "beta-model")
    assert (row.input_tokens, row.output_tokens) == (82, 47)
    # 82 tokens at $0.15 and 47 at $0.60 per million.
    assert row.cost_usd == Decimal("0.00004050")
    assert row.cost_state == "reported"


def test_the_streamed_tool_calls_are_openai_chunks_exactly(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    # One upstream event per read, so each piece is forwarded as its own chunk.
    upstream.reply("POST", chat_path("alpha"), Reply.sse(TOOL_CALLS_STREAM).but(chunk_delay_s=0.03))
    key = new_key()
    conversation: list[Any] = [
        *QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [CALL_WEATHER]},
        {"role": "tool", "tool_call_id": CALL_WEATHER["id"], "content": "18°C, clear"},
        {"role": "user", "content": "And the time?"},
    ]

    with httpx.stream(
        "POST",
        f"{live_server_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={
            "model": "auto",
            "messages": conversation,
            "tools": [WEATHER, TIME],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        timeout=30,
    ) as response:
        body = b"".join(response.iter_bytes())

    assert response.status_code == 200
    events = [e.removeprefix(b"data: ") for e in body.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0] if c["choices"] else c["usage"] for c in chunks[:-1]] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None},
        {
            "index": 0,
            "delta": {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            "finish_reason": None,
        },
        {
            "index": 0,
            "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"'}}]},
            "finish_reason": None,
        },
        {
            "index": 0,
            "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'city":"Paris"}'}}]},
            "finish_reason": None,
        },
        {
            "index": 0,
            "delta": {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_Q8hWQ3uCg2sZmdlp1mS1HRc2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    }
                ]
            },
            "finish_reason": None,
        },
        {
            "index": 0,
            "delta": {"tool_calls": [{"index": 1, "function": {"arguments": '{"zone":"CET"}'}}]},
            "finish_reason": None,
        },
        {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
    ]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 82
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    (sent,) = upstream.requests
    assert sent.json()["messages"] == [
        *QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [CALL_WEATHER]},
        {"role": "tool", "tool_call_id": CALL_WEATHER["id"], "content": "18°C, clear"},
        {"role": "user", "content": "And the time?"},
    ]
    assert "tool_choice" not in sent.json()


def test_the_sdk_assembles_a_streamed_tool_call(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(TOOL_CALLS_STREAM))

    stream = client(live_server_url, new_key()).chat.completions.create(
        model="auto",
        messages=QUESTION,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function and delta.function.name) or ""
            call["arguments"] += (delta.function and delta.function.arguments) or ""
        finish = chunk.choices[0].finish_reason or finish

    assert finish == "tool_calls"
    assert calls == {
        0: {"id": CALL_WEATHER["id"], "name": "get_weather", "arguments": '{"city":"Paris"}'},
        1: {"id": CALL_TIME["id"], "name": "get_time", "arguments": '{"zone":"CET"}'},
    }
    (sent,) = upstream.requests
    assert sent.json()["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_tools_no_enabled_model_accepts_are_refused_with_their_own_code(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_json_output",))

    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server_url, new_key()).chat.completions.create(
            model="auto",
            messages=QUESTION,
            tools=[WEATHER],
        )

    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"], error["type"]) == (
        "TOOLS_NOT_SUPPORTED",
        "tools",
        "invalid_request_error",
    )
    assert error["message"] == (
        "this request uses tools (tools, tool_calls or tool messages), and no enabled model "
        "accepts tools (mark one that does in the admin: accepts tools)"
    )
    assert upstream.requests == []
    (row,) = wait_rows(1)
    assert (row.status, row.error_code) == (RequestLog.Status.INVALID, "TOOLS_NOT_SUPPORTED")


def test_a_named_model_without_tools_is_refused_naming_it(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_tools",))
    conversation: list[Any] = [
        *QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [CALL_WEATHER]},
        {"role": "tool", "tool_call_id": CALL_WEATHER["id"], "content": "18°C"},
    ]

    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server_url, new_key()).chat.completions.create(
            model="alpha:alpha-model", messages=conversation
        )

    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"], error["message"]) == (
        "TOOLS_NOT_SUPPORTED",
        "tools",
        "this request uses tools (tools, tool_calls or tool messages), and "
        "alpha:alpha-model does not accept tools",
    )
    assert upstream.requests == []


def test_response_format_goes_only_to_a_json_model_passed_through(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_json_output",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(['{"city":', '"Paris"}'])))
    form: Any = {
        "type": "json_schema",
        "json_schema": {
            "name": "city",
            "schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": True,
        },
    }

    completion = client(live_server_url, new_key()).chat.completions.create(
        model="auto",
        messages=QUESTION,
        response_format=form,
    )

    assert completion.choices[0].message.content == '{"city":"Paris"}'
    assert completion.model == "beta:beta-model"
    (sent,) = upstream.requests
    assert sent.json()["response_format"] == form
    decision = completion.model_extra["orchestrator"]["decision"]  # type: ignore[index]
    assert decision["cache"] == {"result": "skipped", "reason": "response_format"}


def test_response_format_no_model_accepts_is_refused(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",), beta=("accepts_tools",))

    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server_url, new_key()).chat.completions.create(
            model="auto", messages=QUESTION, response_format={"type": "json_object"}
        )

    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"], error["message"]) == (
        "JSON_OUTPUT_NOT_SUPPORTED",
        "response_format",
        "this request asks for a JSON answer (response_format), and no enabled model accepts "
        "JSON output (mark one that does in the admin: accepts json output)",
    )
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {"messages": [*QUESTION, {"role": "tool", "content": "18°C"}]},
            "messages[1].tool_call_id",
            "messages[1].tool_call_id: is required in a tool message",
        ),
        (
            {
                "messages": QUESTION,
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            "tool_choice",
            "tool_choice: names 'nope', which is not among the tools",
        ),
        (
            {"messages": QUESTION, "tool_choice": "required"},
            "tool_choice",
            "tool_choice: is read only with tools",
        ),
        (
            {"messages": QUESTION, "tools": [{"type": "web_search"}]},
            "tools[0].type",
            "tools[0].type: only function tools are supported",
        ),
        (
            {"messages": QUESTION, "response_format": {"type": "xml"}},
            "response_format.type",
            "response_format.type: must be text, json_object or json_schema",
        ),
        (
            {
                "messages": [
                    *QUESTION,
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": {}},
                            }
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
            "messages[1].tool_calls[0].function.arguments: must be a string (JSON text)",
        ),
    ],
)
def test_malformed_tool_fields_are_refused_naming_them(
    live_server_url: str,
    upstream: UpstreamServer,
    body: dict[str, Any],
    param: str,
    message: str,
) -> None:
    tools_registry(upstream, alpha=("accepts_tools", "accepts_json_output"))

    response = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {new_key()}"},
        json={"model": "auto"} | body,
        timeout=30,
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"], error["message"]) == (
        "INVALID_REQUEST",
        param,
        message,
    )
    assert upstream.requests == []


def test_the_same_tool_request_twice_calls_the_model_twice(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(TOOL_CALLS_STREAM))
    sdk = client(live_server_url, new_key())

    for _ in range(2):
        completion = sdk.chat.completions.create(
            model="auto",
            messages=QUESTION,
            tools=[WEATHER],
            temperature=0,
        )
        assert completion.choices[0].finish_reason == "tool_calls"

    assert len(upstream.requests) == 2
    rows = wait_rows(2)
    time.sleep(0.2)
    assert [r.cache_hit for r in rows] == [False, False]
