"""Function tools and structured output on `POST /v1/responses`, end to end: raw HTTP (for the
exact response objects and events) and the official openai SDK against the live server, routed
to a local OpenAI-compatible upstream that answers with tool calls in OpenAI's chat wire format.
The Responses tools, `tool_choice` and `text.format` reach the upstream in their chat form; a
stored response's function calls and the next request's `function_call_output` items reach it as
an assistant turn's tool calls and tool messages."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from analytics.models import RequestLog, StoredResponse
from tests.gateway.test_openai_tools import (
    CALL_TIME,
    CALL_WEATHER,
    TIME,
    TOOL_CALLS_STREAM,
    WEATHER,
    tools_registry,
)
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The chat tools of tests/gateway/test_openai_tools.py in the Responses form.
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather of a city",
    "parameters": WEATHER["function"]["parameters"],
    "strict": False,
}
TIME_TOOL: Any = {
    "type": "function",
    "name": "get_time",
    "parameters": TIME["function"]["parameters"],
}
QUESTION = "Weather and time in Paris?"
FC_ID = re.compile(r"fc_[0-9a-f]{32}")


def client(live_server_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0)


def call_items(ids: list[str], status: str = "completed") -> list[dict[str, Any]]:
    """The answer's two function call items, with the item ids it gave them."""
    return [
        {
            "type": "function_call",
            "id": ids[0],
            "call_id": CALL_WEATHER["id"],
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "status": status,
        },
        {
            "type": "function_call",
            "id": ids[1],
            "call_id": CALL_TIME["id"],
            "name": "get_time",
            "arguments": '{"zone":"CET"}',
            "status": status,
        },
    ]


ECHOED_TOOLS = [
    WEATHER_TOOL,
    {
        "type": "function",
        "name": "get_time",
        "description": None,
        "parameters": TIME["function"]["parameters"],
        "strict": True,
    },
]


def test_function_calls_are_output_items_tools_echoed_costed_logged_and_stored(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_tools",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(TOOL_CALLS_STREAM))
    key = new_key()

    answer = httpx.post(
        f"{live_server_url}/v1/responses",
        headers={"authorization": f"Bearer {key}"},
        json={
            "model": "auto",
            "input": QUESTION,
            "tools": [WEATHER_TOOL, TIME_TOOL],
            "tool_choice": "auto",
            "parallel_tool_calls": True,
        },
        timeout=30,
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    ids = [item["id"] for item in body["output"]]
    assert all(FC_ID.fullmatch(i) for i in ids) and len(set(ids)) == 2
    orchestrator = body.pop("orchestrator")
    assert body == {
        "id": body["id"],
        "object": "response",
        "created_at": body["created_at"],
        "status": "completed",
        "model": "beta:beta-model",
        "output": call_items(ids),
        "usage": {
            "input_tokens": 82,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 47,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 129,
        },
        "error": None,
        "incomplete_details": None,
        "truncation": "disabled",
        "previous_response_id": None,
        "instructions": None,
        "max_output_tokens": None,
        "temperature": None,
        "top_p": None,
        "metadata": {},
        "store": True,
        "user": None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": ECHOED_TOOLS,
        "text": {"format": {"type": "text"}},
    }
    # What the upstream got: the tools in their chat form (a function's strict true unless the
    # request says false, as the Responses API has it), and nothing went to alpha.
    (sent,) = upstream.requests
    assert sent.path == chat_path("beta")
    assert sent.json() == {
        "model": "beta-model",
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {"type": "function", "function": {**WEATHER["function"], "strict": False}},
            {"type": "function", "function": {**TIME["function"], "strict": True}},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }
    decision = orchestrator["decision"]
    assert decision["request"]["needs"] == ["tools"]
    assert decision["cache"] == {"result": "skipped", "reason": "tools"}
    (row,) = wait_rows(1, request_id=answer.headers["x-orchestrator-request-id"])
    assert (row.entry_point, row.status, row.model_name) == (
        "responses",
        RequestLog.Status.SUCCESS,
        "beta-model",
    )
    # 82 tokens at $0.15 and 47 at $0.60 per million.
    assert row.cost_usd == Decimal("0.00004050")
    stored = StoredResponse.objects.get(id=body["id"])
    assert stored.output_text == ""
    assert stored.response["output"] == call_items(ids)
    retrieved = client(live_server_url, key).responses.retrieve(body["id"])
    assert [item.to_dict() for item in retrieved.output] == call_items(ids)


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """The `data` of each event, checked to name the same type as its `event:` line."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        kind, data = block.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {payload['type']}"
        events.append(payload)
    return events


def test_streamed_function_calls_are_openais_events_exactly(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    # One upstream event per read, so each piece of arguments is its own delta.
    upstream.reply("POST", chat_path("alpha"), Reply.sse(TOOL_CALLS_STREAM).but(chunk_delay_s=0.03))
    key = new_key()

    with httpx.stream(
        "POST",
        f"{live_server_url}/v1/responses",
        headers={"authorization": f"Bearer {key}"},
        json={
            "model": "auto",
            "input": QUESTION,
            "tools": [WEATHER_TOOL, TIME_TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "stream": True,
        },
        timeout=30,
    ) as response:
        raw = b"".join(response.iter_bytes())

    assert response.status_code == 200
    events = sse_events(raw)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    ids = [events[2]["item"]["id"], events[7]["item"]["id"]]
    weather, time_call = call_items(ids)
    added = [dict(c, arguments="", status="in_progress") for c in (weather, time_call)]
    assert [{k: v for k, v in e.items() if k != "sequence_number"} for e in events[2:-1]] == [
        {"type": "response.output_item.added", "output_index": 0, "item": added[0]},
        {
            "type": "response.function_call_arguments.delta",
            "item_id": ids[0],
            "output_index": 0,
            "delta": '{"',
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": ids[0],
            "output_index": 0,
            "delta": 'city":"Paris"}',
        },
        {
            "type": "response.function_call_arguments.done",
            "item_id": ids[0],
            "output_index": 0,
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "response.output_item.done", "output_index": 0, "item": weather},
        {"type": "response.output_item.added", "output_index": 1, "item": added[1]},
        {
            "type": "response.function_call_arguments.delta",
            "item_id": ids[1],
            "output_index": 1,
            "delta": '{"zone":"CET"}',
        },
        {
            "type": "response.function_call_arguments.done",
            "item_id": ids[1],
            "output_index": 1,
            "name": "get_time",
            "arguments": '{"zone":"CET"}',
        },
        {"type": "response.output_item.done", "output_index": 1, "item": time_call},
    ]
    assert [e["type"] for e in (events[0], events[1], events[-1])] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    opening = events[0]["response"]
    assert (opening["status"], opening["output"], opening["tools"], opening["tool_choice"]) == (
        "in_progress",
        [],
        ECHOED_TOOLS,
        {"type": "function", "name": "get_weather"},
    )
    completed = events[-1]["response"]
    assert (completed["status"], completed["output"]) == ("completed", [weather, time_call])
    assert completed["usage"]["input_tokens"] == 82
    (sent,) = upstream.requests
    assert sent.json()["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    sdk = client(live_server_url, key)
    assert [i.to_dict() for i in sdk.responses.retrieve(completed["id"]).output] == [
        weather,
        time_call,
    ]


def test_the_sdk_round_trip_continues_a_function_call_with_its_outputs(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(TOOL_CALLS_STREAM),
        Reply.sse(openai_sse(["18°C and ", "14:05 in Paris."], usage=(120, 9))),
    )
    sdk = client(live_server_url, new_key())

    first = sdk.responses.create(
        model="auto", instructions="Use the tools.", input=QUESTION, tools=[WEATHER_TOOL, TIME_TOOL]
    )
    calls = [item for item in first.output if item.type == "function_call"]
    outputs: Any = [
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18°C, clear"},
        {
            "type": "function_call_output",
            "call_id": calls[1].call_id,
            "output": [{"type": "input_text", "text": "14:05"}],
        },
    ]
    with sdk.responses.stream(
        model="auto",
        previous_response_id=first.id,
        input=outputs,
        tools=[WEATHER_TOOL, TIME_TOOL],
    ) as stream:
        second = stream.get_final_response()

    assert [(c.call_id, c.name, c.arguments, c.status) for c in calls] == [
        (CALL_WEATHER["id"], "get_weather", '{"city":"Paris"}', "completed"),
        (CALL_TIME["id"], "get_time", '{"zone":"CET"}', "completed"),
    ]
    assert first.output_text == ""
    assert second.output_text == "18°C and 14:05 in Paris."
    assert second.previous_response_id == first.id
    # The second request: the stored conversation, its answer as an assistant turn's tool calls
    # (content null), the outputs as tool messages; the first request's instructions stay behind.
    assert upstream.requests[1].json()["messages"] == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": [CALL_WEATHER, CALL_TIME]},
        {"role": "tool", "tool_call_id": CALL_WEATHER["id"], "content": "18°C, clear"},
        {"role": "tool", "tool_call_id": CALL_TIME["id"], "content": "14:05"},
    ]
    stored = StoredResponse.objects.get(id=second.id)
    assert stored.messages == upstream.requests[1].json()["messages"]
    assert stored.output_text == "18°C and 14:05 in Paris."


def test_function_calls_sent_back_as_input_items_without_stored_state(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["It is 18°C."])))
    conversation: Any = [
        {"role": "user", "content": QUESTION},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me look."}],
        },
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "18°C"},
        {"type": "function_call_output", "call_id": "call_2", "output": "14:05"},
    ]

    response = client(live_server_url, new_key()).responses.create(
        model="auto", input=conversation, tools=[WEATHER_TOOL], tool_choice="none", store=False
    )

    assert response.output_text == "It is 18°C."
    assert response.tool_choice == "none"
    (sent,) = upstream.requests
    assert sent.json()["tool_choice"] == "none"
    assert sent.json()["messages"] == [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
    ]


class City(BaseModel):
    city: str


def test_text_format_json_schema_goes_to_a_json_model_and_is_echoed(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_json_output",))
    upstream.reply(
        "POST",
        chat_path("beta"),
        Reply.sse(openai_sse(['{"city":', '"Paris"}'])),
        Reply.sse(openai_sse(['{"city":"Lyon"}'])),
    )
    sdk = client(live_server_url, new_key())
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }

    response = sdk.responses.create(
        model="auto",
        input=QUESTION,
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    parsed = sdk.responses.parse(model="auto", input="Another city?", text_format=City)

    assert response.output_text == '{"city":"Paris"}'
    assert response.model == "beta:beta-model"
    assert response.to_dict()["text"] == {
        "format": {
            "type": "json_schema",
            "description": None,
            "name": "city",
            "schema": schema,
            "strict": True,
        }
    }
    assert parsed.output_parsed == City(city="Lyon")
    first, second = upstream.requests
    assert first.json()["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": schema, "strict": True},
    }
    assert second.json()["response_format"]["json_schema"]["name"] == "City"
    decision = response.model_extra["orchestrator"]["decision"]  # type: ignore[index]
    assert decision["cache"] == {"result": "skipped", "reason": "response_format"}


def test_tools_and_json_no_model_accepts_are_refused_with_their_own_codes(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream)
    sdk = client(live_server_url, new_key())

    with pytest.raises(openai.BadRequestError) as tools:
        sdk.responses.create(model="auto", input=QUESTION, tools=[WEATHER_TOOL], stream=True)
    with pytest.raises(openai.BadRequestError) as json_output:
        sdk.responses.create(model="auto", input=QUESTION, text={"format": {"type": "json_object"}})

    assert tools.value.body == {
        "message": "this request uses tools (tools, tool_calls or tool messages), and no enabled "
        "model accepts tools (mark one that does in the admin: accepts tools)",
        "type": "invalid_request_error",
        "param": "tools",
        "code": "TOOLS_NOT_SUPPORTED",
        "trace_id": tools.value.response.headers["x-orchestrator-request-id"],
    }
    assert json_output.value.body == {
        "message": "this request asks for a JSON answer (text.format), and no enabled model "
        "accepts JSON output (mark one that does in the admin: accepts json output)",
        "type": "invalid_request_error",
        "param": "text.format",
        "code": "JSON_OUTPUT_NOT_SUPPORTED",
        "trace_id": json_output.value.response.headers["x-orchestrator-request-id"],
    }
    assert upstream.requests == []
    rows = wait_rows(2, entry_point="responses")
    assert sorted((r.status, r.error_code) for r in rows) == [
        (RequestLog.Status.INVALID, "JSON_OUTPUT_NOT_SUPPORTED"),
        (RequestLog.Status.INVALID, "TOOLS_NOT_SUPPORTED"),
    ]


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        (
            {"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]},
            "tools[0].type",
            "tools[0].type: 'file_search' tools are not supported by this gateway: only function "
            "tools (OpenAI's built-in tools run only at OpenAI)",
        ),
        (
            {"tools": [{"type": "function", "name": "get weather"}]},
            "tools[0].name",
            "tools[0].name: must be 1 to 64 letters, digits, underscores or dashes",
        ),
        (
            {"tools": [{"type": "function", "name": "f", "defer_loading": True}]},
            "tools[0].defer_loading",
            "tools[0].defer_loading: unknown field",
        ),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "web_search_preview"}},
            "tool_choice.type",
            "tool_choice.type: 'web_search_preview' is not supported by this gateway: only "
            '"auto", "none", "required" or {"type": "function", "name": …}',
        ),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "nope"}},
            "tool_choice",
            "tool_choice: names 'nope', which is not among the tools",
        ),
        (
            {"tool_choice": "required"},
            "tool_choice",
            "tool_choice: is read only with tools",
        ),
        (
            {"tools": [WEATHER_TOOL], "parallel_tool_calls": "yes"},
            "parallel_tool_calls",
            "parallel_tool_calls: must be a boolean",
        ),
        (
            {"text": {"format": {"type": "json_schema", "name": "city"}}},
            "text.format.schema",
            "text.format.schema: is required: a JSON Schema object",
        ),
        (
            {"text": {"format": {"type": "json_schema", "name": "c", "schema": {}, "strict": 1}}},
            "text.format.strict",
            "text.format.strict: must be a boolean",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": QUESTION},
                    {"type": "function_call", "call_id": "call_1", "name": "f"},
                ]
            },
            "input[1].arguments",
            "input[1].arguments: must be a string",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": QUESTION},
                    {"type": "function_call_output", "call_id": "call_9", "output": "18°C"},
                ]
            },
            "input[1].call_id",
            "input[1].call_id: no function call with call_id 'call_9' in this conversation",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": QUESTION},
                    {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
                    {"role": "user", "content": "And?"},
                ]
            },
            "input",
            "input: the function call with call_id 'call_1' has no function_call_output: send "
            "one for every function call",
        ),
        (
            {"input": [{"type": "item_reference", "id": "fc_1"}]},
            "input[0].type",
            "input[0].type: 'item_reference' items are not supported: only messages, "
            "function_call and function_call_output",
        ),
    ],
)
def test_malformed_tool_fields_are_refused_naming_them(
    live_server_url: str,
    upstream: UpstreamServer,
    fields: dict[str, Any],
    param: str,
    message: str,
) -> None:
    tools_registry(upstream, alpha=("accepts_tools", "accepts_json_output"))

    response = httpx.post(
        f"{live_server_url}/v1/responses",
        headers={"authorization": f"Bearer {new_key()}"},
        json={"model": "auto", "input": QUESTION} | fields,
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
    (row,) = wait_rows(1, entry_point="responses")
    assert row.status == RequestLog.Status.INVALID


def text_then_call_stream() -> bytes:
    """An OpenAI chat stream that says something, then calls get_weather."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        event = {
            "id": "chatcmpl-mixed",
            "object": "chat.completion.chunk",
            "created": 1741569952,
            "model": "gpt-test",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }
        return f"data: {json.dumps(event)}\n\n".encode()

    call = {"index": 0, "id": CALL_WEATHER["id"], "type": "function"}
    return b"".join(
        [
            chunk({"role": "assistant", "content": "Let me "}),
            chunk({"content": "look."}),
            chunk({"tool_calls": [call | {"function": {"name": "get_weather", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]}),
            chunk({}, "tool_calls"),
            b"data: [DONE]\n\n",
        ]
    )


def test_text_then_a_function_call_streams_two_items_in_order(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    upstream.reply(
        "POST", chat_path("alpha"), Reply.sse(text_then_call_stream()).but(chunk_delay_s=0.03)
    )
    key = new_key()

    with httpx.stream(
        "POST",
        f"{live_server_url}/v1/responses",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "auto", "input": QUESTION, "tools": [WEATHER_TOOL], "stream": True},
        timeout=30,
    ) as response:
        events = sse_events(b"".join(response.iter_bytes()))

    assert [(e["type"], e.get("output_index")) for e in events] == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", 0),
        ("response.content_part.added", 0),
        ("response.output_text.delta", 0),
        ("response.output_text.delta", 0),
        ("response.output_text.done", 0),
        ("response.content_part.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1),
        ("response.completed", None),
    ]
    message, call = events[-1]["response"]["output"]
    assert message == {
        "type": "message",
        "id": events[2]["item"]["id"],
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}],
    }
    assert call == call_items([events[9]["item"]["id"], ""])[0]
    assert [events[8]["item"], events[12]["item"]] == [message, call]
    sdk = client(live_server_url, key)
    retrieved = sdk.responses.retrieve(events[-1]["response"]["id"])
    assert retrieved.output_text == "Let me look."
    assert [item.to_dict() for item in retrieved.output] == [message, call]


def test_continuing_function_calls_without_their_outputs_is_refused(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(TOOL_CALLS_STREAM))
    sdk = client(live_server_url, new_key())
    first = sdk.responses.create(model="auto", input=QUESTION, tools=[WEATHER_TOOL, TIME_TOOL])
    only_one: Any = [
        {"type": "function_call_output", "call_id": CALL_WEATHER["id"], "output": "18°C"}
    ]

    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(
            model="auto", previous_response_id=first.id, input=only_one, tools=[WEATHER_TOOL]
        )

    assert refused.value.body["param"] == "input"  # type: ignore[index]
    assert refused.value.body["message"] == (  # type: ignore[index]
        f"input: the function call with call_id {CALL_TIME['id']!r} has no function_call_output: "
        "send one for every function call"
    )
    assert len(upstream.requests) == 1
