"""Tool calling and JSON answers at the Ollama door, end to end: the ollama Python library
against the live web process, routed to a local OpenAI-compatible upstream. `tools` reach the
upstream as Chat Completions' tools, the answer's calls come back as Ollama's (no ids, arguments
as objects; streamed, whole in one object before the last), a conversation's calls and `tool`
messages go back as the upstream's calls and results, `format` is the upstream's
`response_format`, and only models marked for tools (or JSON output) are routed to."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import ollama
import pytest

from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.conftest import _fresh_routing_cache  # noqa: F401  (autouse)
from tests.routing.gateway_support import (
    WEATHER_TOOL,
    chat_path,
    new_key,
    tools_registry,
    wait_rows,
)
from tests.routing.streams import openai_sse, unreadable_call_stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OPENAI_CALLS = fixture("openai/chat_stream_tool_calls.sse")
WEATHER = WEATHER_TOOL
TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
QUESTION = {"role": "user", "content": "Weather and time in Paris?"}
CALLS = [
    ollama.Message.ToolCall(
        function=ollama.Message.ToolCall.Function(name="get_weather", arguments={"city": "Paris"})
    ),
    ollama.Message.ToolCall(
        function=ollama.Message.ToolCall.Function(name="get_time", arguments={"zone": "CET"})
    ),
]


def client(live_server_url: str, key: str) -> ollama.Client:
    return ollama.Client(host=live_server_url, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_the_answers_calls_are_ollamas_and_the_tools_reach_the_upstream(
    live_server_url: str, upstream: UpstreamServer, stream: bool
) -> None:
    tools_registry(upstream, beta=("accepts_tools",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(OPENAI_CALLS))

    answer: Any = client(live_server_url, new_key()).chat(
        model="auto",
        messages=[QUESTION],
        tools=[WEATHER, TIME],
        stream=stream,  # type: ignore[call-overload]
    )

    if stream:
        chunks = list(answer)
        # The calls whole, in one object before the last, as Ollama streams them.
        assert [(c.done, c.message.content, c.message.tool_calls) for c in chunks] == [
            (False, "", CALLS),
            (True, "", None),
        ]
        last = chunks[-1]
    else:
        assert isinstance(answer, ollama.ChatResponse)
        assert (answer.message.content, answer.message.tool_calls) == ("", CALLS)
        last = answer
    assert (last.done_reason, last.prompt_eval_count, last.eval_count) == ("stop", 82, 47)
    (sent,) = upstream.requests
    assert sent.path == chat_path("beta")
    assert sent.json()["messages"] == [QUESTION]
    assert sent.json()["tools"] == [WEATHER, TIME]
    (row,) = wait_rows(1, entry_point="ollama")
    assert (row.status, row.model_name, row.input_tokens, row.output_tokens) == (
        "success",
        "beta-model",
        82,
        47,
    )
    assert row.decision_trace["request"]["needs"] == ["tools"]


def test_a_conversations_calls_and_results_go_back_as_the_upstreams(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_tools",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["18°C and 14:05."])))

    answer = client(live_server_url, new_key()).chat(
        model="auto",
        tools=[WEATHER, TIME],
        stream=False,
        messages=[
            QUESTION,
            ollama.Message(role="assistant", content="", tool_calls=CALLS),
            # The second result names its function; the first, as older clients send it, not.
            {"role": "tool", "content": "18°C"},
            {"role": "tool", "content": "14:05", "tool_name": "get_time"},
        ],
    )

    assert answer.message.content == "18°C and 14:05."
    (sent,) = upstream.requests
    assert sent.json()["messages"] == [
        QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_1_1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"zone":"CET"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1_0", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_1_1", "content": "14:05"},
    ]


def test_results_answer_the_calls_to_their_functions_in_order(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_tools",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["Done."])))
    twice = [
        ollama.Message.ToolCall(
            function=ollama.Message.ToolCall.Function(name="get_weather", arguments={"city": c})
        )
        for c in ("Paris", "Rome")
    ]

    client(live_server_url, new_key()).chat(
        model="auto",
        tools=[WEATHER, TIME],
        messages=[
            QUESTION,
            ollama.Message(role="assistant", content="", tool_calls=[*twice, CALLS[1]]),
            {"role": "tool", "content": "14:05", "tool_name": "get_time"},
            {"role": "tool", "content": "18°C", "tool_name": "get_weather"},
            {"role": "tool", "content": "21°C", "tool_name": "get_weather"},
        ],
    )

    (sent,) = upstream.requests
    assert [(m.get("tool_call_id"), m["content"]) for m in sent.json()["messages"][2:]] == [
        ("call_1_2", "14:05"),
        ("call_1_0", "18°C"),
        ("call_1_1", "21°C"),
    ]


@pytest.mark.parametrize(
    ("format_", "response_format"),
    [
        ("json", {"type": "json_object"}),
        (
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "response",
                    "schema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            },
        ),
    ],
    ids=["json", "schema"],
)
@pytest.mark.parametrize("door", ["chat", "generate"])
def test_format_is_the_upstreams_response_format_on_a_json_model(
    live_server_url: str,
    upstream: UpstreamServer,
    format_: Any,
    response_format: dict[str, Any],
    door: str,
) -> None:
    tools_registry(upstream, beta=("accepts_json_output",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(['{"city":', '"Paris"}'])))
    ask = client(live_server_url, new_key())

    if door == "chat":
        text = ask.chat(model="auto", messages=[QUESTION], format=format_).message.content
    else:
        text = ask.generate(model="auto", prompt="Capital of France?", format=format_).response

    assert text == '{"city":"Paris"}'
    (sent,) = upstream.requests
    assert sent.path == chat_path("beta")
    assert sent.json()["response_format"] == response_format
    (row,) = wait_rows(1, entry_point="ollama")
    assert row.cost_usd is not None and row.cost_usd > Decimal(0)
    assert row.decision_trace["cache"] == {"result": "skipped", "reason": "response_format"}


def test_tools_with_no_model_that_accepts_them_are_refused_in_ollamas_shape(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream)

    answer = httpx.post(
        f"{live_server_url}/api/chat",
        json={"model": "auto", "messages": [QUESTION], "tools": [WEATHER]},
        headers={"Authorization": f"Bearer {new_key()}"},
        timeout=30,
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "error": "this request uses tools (tools, tool_calls or tool messages), and no enabled "
        "model accepts tools (mark one that does in the admin: accepts tools)"
    }
    assert upstream.requests == []


def test_a_call_whose_arguments_are_no_object_is_an_invalid_answer(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",), beta=("accepts_tools",))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(unreadable_call_stream()))
    upstream.reply("POST", chat_path("beta"), Reply.sse(OPENAI_CALLS))

    answer = client(live_server_url, new_key()).chat(
        model="auto", messages=[QUESTION], tools=[WEATHER, TIME], stream=False
    )

    # alpha's call cannot be Ollama's (its arguments are no object): retried, then beta answers.
    assert answer.message.tool_calls == CALLS
    assert [r.path for r in upstream.requests] == [chat_path("alpha")] * 2 + [chat_path("beta")]
    (row,) = wait_rows(1, entry_point="ollama")
    assert (row.status, row.model_name, row.fallbacks) == ("success", "beta-model", 1)
    assert [a["outcome"] for a in row.decision_trace["attempts"]] == [
        "INVALID_RESPONSE",
        "INVALID_RESPONSE",
        "ok",
    ]


def test_show_lists_tools_for_a_model_that_calls_them(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    models = tools_registry(upstream, beta=("accepts_tools",))
    models["beta"].accepts_images = True
    models["beta"].save()
    ask = client(live_server_url, new_key())

    assert ask.show("beta:beta-model").capabilities == ["completion", "tools", "vision"]
    assert ask.show("alpha-model").capabilities == ["completion"]


def get_weather(city: str) -> str:
    """Current weather of a city.

    Args:
      city: The city
    """
    raise AssertionError("the client runs its tools, not the gateway")


def test_a_python_function_as_a_tool_reaches_the_upstream_as_its_schema(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_tools",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(OPENAI_CALLS))

    answer = client(live_server_url, new_key()).chat(
        model="auto", messages=[QUESTION], tools=[get_weather], stream=False
    )

    assert answer.message.tool_calls == CALLS
    (sent,) = upstream.requests
    assert sent.json()["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather of a city.",
                "parameters": {
                    "type": "object",
                    "required": ["city"],
                    "properties": {"city": {"type": "string", "description": "The city"}},
                },
            },
        }
    ]
