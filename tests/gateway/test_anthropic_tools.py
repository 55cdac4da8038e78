"""Tool use at the Anthropic door, end to end: the anthropic SDK (and raw HTTP, for the exact
bytes) against the live server, routed to a local upstream that answers with tool calls, in
OpenAI's wire format (an OpenAI-compatible provider) or in Anthropic's own. Custom tools,
`tool_choice`, `tool_use` and `tool_result` blocks reach the model as the common request's
tools; the answer's calls come back as `tool_use` blocks (each its own block when streamed,
its input as `input_json_delta` pieces) with `stop_reason: tool_use`. Only models marked for
tools are routed to; when none can answer, a 400 in Anthropic's shape. The answer is costed
and logged, and never cached."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from analytics.models import RequestLog
from analytics.pricing import tokens_estimate
from tests.gateway.test_anthropic_door import frames
from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.conftest import _fresh_routing_cache  # noqa: F401  (autouse)
from tests.routing.gateway_support import (
    chat_path,
    native_tools_registry,
    new_key,
    tools_registry,
    wait_rows,
)
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = "/v1/messages"
CLAUDE_PATH = "/claude/v1/messages"
WEATHER: Any = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME: Any = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
# The same tools as the OpenAI-compatible upstream is sent them.
OPENAI_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": WEATHER["input_schema"],
    },
}
OPENAI_TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": TIME["input_schema"]},
}
QUESTION: list[Any] = [{"role": "user", "content": "Weather and time in Paris?"}]
WEATHER_ID = "call_DdmO9pD3xa9XTPNJ32zg2hcA"
TIME_ID = "call_Q8hWQ3uCg2sZmdlp1mS1HRc2"
TOOL_CALLS_STREAM = fixture("openai/chat_stream_tool_calls.sse")
USAGE = {
    "input_tokens": 82,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 47,
}


def client(live_server_url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live_server_url, api_key=key, max_retries=0)


def post(live_server_url: str, body: Any, key: str) -> httpx.Response:
    return httpx.post(
        f"{live_server_url}{MESSAGES}", json=body, headers={"x-api-key": key}, timeout=30
    )


def claude_registry(upstream: UpstreamServer) -> None:
    """`alpha` (no tools) first for every task, then `claude:claude-tools`, an Anthropic model
    on the local upstream that accepts tools."""
    native_tools_registry(
        upstream,
        kind="anthropic",
        provider="claude",
        model="claude-tools",
        context_window=200_000,
        prices=("3", "15"),
    )


def test_a_tool_use_answer_routed_past_a_model_without_tools_costed_and_logged(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_tools",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(TOOL_CALLS_STREAM))

    response = post(
        live_server_url,
        {
            "model": "auto",
            "max_tokens": 256,
            "messages": QUESTION,
            "tools": [WEATHER, TIME],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
        },
        new_key(),
    )

    assert response.status_code == 200
    body = response.json()
    extension = body.pop("orchestrator")
    request_id = response.headers["request-id"]
    assert body == {
        "id": f"msg_{request_id.replace('-', '')}",
        "type": "message",
        "role": "assistant",
        "model": "beta:beta-model",
        "content": [
            {
                "type": "tool_use",
                "id": WEATHER_ID,
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": TIME_ID, "name": "get_time", "input": {"zone": "CET"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": USAGE,
    }
    # What the upstream got: the tools as OpenAI functions, and nothing went to alpha.
    (sent,) = upstream.requests
    assert sent.path == chat_path("beta")
    assert sent.json() == {
        "model": "beta-model",
        "messages": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 256,
        "tools": [OPENAI_WEATHER, OPENAI_TIME],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }
    decision = extension["decision"]
    assert decision["request"]["needs"] == ["tools"]
    assert [(c["model"], c["kept"], c["reason"]) for c in decision["candidates"]] == [
        ("alpha:alpha-model", False, "does not accept tools"),
        ("beta:beta-model", True, ""),
        ("premium:big", False, "disabled"),
    ]
    assert decision["cache"] == {"result": "skipped", "reason": "tools"}
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.model_name) == (
        "anthropic",
        RequestLog.Status.SUCCESS,
        "beta-model",
    )
    assert (row.input_tokens, row.output_tokens) == (82, 47)
    # 82 tokens at $0.15 and 47 at $0.60 per million.
    assert row.cost_usd == Decimal("0.00004050")
    assert row.cost_state == "reported"


def test_the_streamed_tool_use_is_anthropics_events_exactly(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    # One upstream event per read, so each piece is forwarded as its own delta.
    upstream.reply("POST", chat_path("alpha"), Reply.sse(TOOL_CALLS_STREAM).but(chunk_delay_s=0.03))
    conversation: list[Any] = [
        *QUESTION,
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C, clear"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [
                        {"type": "text", "text": "clock"},
                        {"type": "text", "text": "down"},
                    ],
                    "is_error": True,
                },
                {"type": "text", "text": "And the time?"},
            ],
        },
    ]

    response = post(
        live_server_url,
        {
            "model": "auto",
            "max_tokens": 64,
            "stream": True,
            "messages": conversation,
            "tools": [WEATHER, TIME],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        },
        new_key(),
    )

    assert response.status_code == 200
    request_id = response.headers["request-id"]
    events = frames(response.content)
    extension = events[-2][1].pop("orchestrator")

    def delta(index: int, partial_json: str) -> tuple[str, dict[str, Any]]:
        return (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": partial_json},
            },
        )

    def tool_use(index: int, call_id: str, name: str) -> tuple[str, dict[str, Any]]:
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        return (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )

    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_{request_id.replace('-', '')}",
                    "type": "message",
                    "role": "assistant",
                    "model": "alpha:alpha-model",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            },
        ),
        tool_use(0, WEATHER_ID, "get_weather"),
        ("ping", {"type": "ping"}),
        delta(0, '{"'),
        delta(0, 'city":"Paris"}'),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        tool_use(1, TIME_ID, "get_time"),
        delta(1, '{"zone":"CET"}'),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": USAGE,
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert extension["request_id"] == request_id
    (sent,) = upstream.requests
    assert sent.json()["messages"] == [
        *QUESTION,
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C, clear"},
        # is_error said in the text; the text blocks kept apart as passages.
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: clock\n\ndown"},
        {"role": "user", "content": "And the time?"},
    ]
    assert (sent.json()["tool_choice"], sent.json()["parallel_tool_calls"]) == ("required", False)
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.status, row.input_tokens, row.output_tokens) == ("success", 82, 47)
    # 82 tokens at $1.25 and 47 at $10 per million.
    assert row.cost_usd == Decimal("0.00057250")


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_the_sdk_runs_a_whole_tool_round_trip(
    live_server_url: str, upstream: UpstreamServer, streamed: bool
) -> None:
    """tool_use, then the tool's result, then the model's final text: as an agent loop runs
    it with the SDK."""
    tools_registry(upstream, alpha=("accepts_tools",))
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(TOOL_CALLS_STREAM),
        Reply.sse(openai_sse(["It is 18°C ", "and 14:05 in Paris."], usage=(120, 12))),
    )
    sdk = client(live_server_url, new_key())
    messages: list[Any] = list(QUESTION)
    options: Any = {"model": "auto", "max_tokens": 256, "tools": [WEATHER, TIME]}

    def ask() -> anthropic.types.Message:
        if not streamed:
            return sdk.messages.create(messages=messages, **options)
        with sdk.messages.stream(messages=messages, **options) as stream:
            return stream.get_final_message()

    first = ask()
    assert first.stop_reason == "tool_use"
    calls = [block for block in first.content if block.type == "tool_use"]
    assert [(c.id, c.name, c.input) for c in calls] == [
        (WEATHER_ID, "get_weather", {"city": "Paris"}),
        (TIME_ID, "get_time", {"zone": "CET"}),
    ]
    results = {"get_weather": "18°C", "get_time": "14:05"}
    messages.append({"role": "assistant", "content": first.content})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": c.id, "content": results[c.name]}
                for c in calls
            ],
        }
    )
    final = ask()

    assert final.stop_reason == "end_turn"
    assert [(b.type, b.text) for b in final.content] == [  # type: ignore[union-attr]
        ("text", "It is 18°C and 14:05 in Paris.")
    ]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (120, 12)
    first_sent, second_sent = (r.json() for r in upstream.requests)
    assert first_sent["tools"] == [OPENAI_WEATHER, OPENAI_TIME]
    assert second_sent["messages"] == [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": WEATHER_ID,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": TIME_ID,
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"zone":"CET"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": WEATHER_ID, "content": "18°C"},
        {"role": "tool", "tool_call_id": TIME_ID, "content": "14:05"},
    ]
    rows = wait_rows(2, entry_point="anthropic")
    assert [(r.status, r.input_tokens, r.output_tokens, r.cache_hit) for r in rows] == [
        ("success", 82, 47, False),
        ("success", 120, 12, False),
    ]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_an_anthropic_model_gets_the_tools_as_anthropic_sent_them(
    live_server_url: str, upstream: UpstreamServer, streamed: bool
) -> None:
    claude_registry(upstream)
    upstream.reply(
        "POST",
        CLAUDE_PATH,
        Reply.sse(fixture("anthropic/messages_stream_tool_use.sse")).but(chunk_delay_s=0.02),
    )
    history: list[Any] = [
        {"role": "user", "content": "Weather in Lyon?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_0",
                    "name": "get_weather",
                    "input": {"city": "Lyon"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_0", "content": "21°C"},
                {"type": "text", "text": "And in Paris?"},
            ],
        },
    ]
    tool_choice = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}

    response = post(
        live_server_url,
        {
            "model": "auto",
            "max_tokens": 128,
            "stream": streamed,
            "system": "Use the tools.",
            "messages": history,
            "tools": [WEATHER | {"strict": True}, TIME],
            "tool_choice": tool_choice,
        },
        new_key(),
    )

    assert response.status_code == 200
    weather_call = {
        "type": "tool_use",
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "name": "get_weather",
    }
    usage = {
        "input_tokens": 412,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 61,
    }
    if streamed:
        events = frames(response.content)
        events[-2][1].pop("orchestrator")
        assert [data for _, data in events[1:]] == [
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {"type": "ping"},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Checking the weather."},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": weather_call | {"input": {}},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": 'ris"}'},
            },
            {"type": "content_block_stop", "index": 1},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": usage,
            },
            {"type": "message_stop"},
        ]
    else:
        body = response.json()
        assert body["content"] == [
            {"type": "text", "text": "Checking the weather."},
            weather_call | {"input": {"city": "Paris"}},
        ]
        assert (body["stop_reason"], body["usage"]) == ("tool_use", usage)
    (sent,) = upstream.requests
    assert sent.path == CLAUDE_PATH
    assert sent.json() == {
        "model": "claude-tools",
        "max_tokens": 128,
        "system": "Use the tools.",
        # The tool's result, then the text after it, as two user turns (Anthropic joins them).
        "messages": [
            *history[:2],
            {"role": "user", "content": [history[2]["content"][0]]},
            {"role": "user", "content": "And in Paris?"},
        ],
        "stream": True,
        "tools": [WEATHER | {"strict": True}, TIME],
        "tool_choice": tool_choice,
    }
    (row,) = wait_rows(1, entry_point="anthropic")
    assert (row.status, row.model_name, row.input_tokens, row.output_tokens) == (
        "success",
        "claude-tools",
        412,
        61,
    )
    # 412 tokens at $3 and 61 at $15 per million.
    assert row.cost_usd == Decimal("0.00215100")


# The get_time call's arguments, as the upstream streams them, replaced.
TIME_ARGUMENTS = b'"arguments":"{\\"zone\\":\\"CET\\"}"'


def test_a_call_without_arguments_has_an_empty_input(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    stream = TOOL_CALLS_STREAM.replace(TIME_ARGUMENTS, b'"arguments":""')
    upstream.reply("POST", chat_path("alpha"), Reply.sse(stream))

    message = client(live_server_url, new_key()).messages.create(
        model="auto", max_tokens=64, messages=QUESTION, tools=[WEATHER, TIME]
    )

    assert [(b.type, b.id, b.input) for b in message.content] == [  # type: ignore[union-attr]
        ("tool_use", WEATHER_ID, {"city": "Paris"}),
        ("tool_use", TIME_ID, {}),
    ]


UNREADABLE = (
    "the model called get_time (call_Q8hWQ3uCg2sZmdlp1mS1HRc2) with arguments that are not a "
    "JSON object: 'CET'"
)


def test_a_call_whose_arguments_are_not_an_object_is_an_invalid_answer_and_falls_back(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    """A tool_use block cannot carry arguments that are no JSON object: unstreamed, that answer
    is the model's invalid answer, retried and then answered by the next model."""
    models = tools_registry(upstream, alpha=("accepts_tools",), beta=("accepts_tools",))
    bad = TOOL_CALLS_STREAM.replace(TIME_ARGUMENTS, b'"arguments":"CET"')
    upstream.reply("POST", chat_path("alpha"), Reply.sse(bad))
    upstream.reply("POST", chat_path("beta"), Reply.sse(TOOL_CALLS_STREAM))

    response = post(
        live_server_url,
        {"model": "auto", "max_tokens": 64, "messages": QUESTION, "tools": [WEATHER, TIME]},
        new_key(),
    )

    assert response.status_code == 200
    assert [(b["type"], b.get("input")) for b in response.json()["content"]] == [
        ("tool_use", {"city": "Paris"}),
        ("tool_use", {"zone": "CET"}),
    ]
    assert response.headers["x-orchestrator-fallbacks"] == "1"
    assert [r.path for r in upstream.requests] == [chat_path("alpha")] * 2 + [chat_path("beta")]
    (row,) = wait_rows(1, request_id=response.headers["request-id"])
    assert (row.status, row.model_id, row.fallbacks) == ("success", models["beta"].pk, 1)
    assert row.attempts == 3
    assert [a["outcome"] for a in row.decision_trace["attempts"]] == [
        "INVALID_RESPONSE",
        "INVALID_RESPONSE",
        "ok",
    ]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_a_call_whose_arguments_are_not_an_object_from_every_model_is_an_error(
    live_server_url: str, upstream: UpstreamServer, streamed: bool
) -> None:
    """Unstreamed: a 502 naming the call, logged as the models' invalid answer. Streamed, the
    call's pieces went out as the model wrote them, and the stream ends with the error."""
    tools_registry(upstream, alpha=("accepts_tools",))
    stream = TOOL_CALLS_STREAM.replace(TIME_ARGUMENTS, b'"arguments":"CET"')
    upstream.reply("POST", chat_path("alpha"), Reply.sse(stream))

    response = post(
        live_server_url,
        {
            "model": "auto",
            "max_tokens": 64,
            "stream": streamed,
            "messages": QUESTION,
            "tools": [WEATHER, TIME],
        },
        new_key(),
    )

    request_id = response.headers["request-id"]
    if streamed:
        assert response.status_code == 200
        events = frames(response.content)
        assert events[-3:] == [
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {
                        "type": "tool_use",
                        "id": TIME_ID,
                        "name": "get_time",
                        "input": {},
                    },
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": "CET"},
                },
            ),
            (
                "error",
                {
                    "type": "error",
                    "error": {"type": "api_error", "message": UNREADABLE},
                    "request_id": request_id,
                },
            ),
        ]
        (row,) = wait_rows(1, request_id=request_id)
        assert (row.status, row.error_code) == ("partial", "INVALID_RESPONSE")
    else:
        assert response.status_code == 502
        assert response.json() == {
            "type": "error",
            "error": {"type": "api_error", "message": UNREADABLE},
            "request_id": request_id,
        }
        (row,) = wait_rows(1, request_id=request_id)
        assert (row.status, row.error_code) == ("error", "INVALID_RESPONSE")


def test_tools_no_enabled_model_accepts_are_refused_in_anthropics_shape(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_json_output",))

    with pytest.raises(anthropic.BadRequestError) as refused:
        client(live_server_url, new_key()).messages.create(
            model="auto", max_tokens=64, messages=QUESTION, tools=[WEATHER]
        )

    assert refused.value.status_code == 400
    request_id = refused.value.response.headers["request-id"]
    assert refused.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "this request uses tools (tools, tool_calls or tool messages), and no "
            "enabled model accepts tools (mark one that does in the admin: accepts tools)",
        },
        "request_id": request_id,
    }
    assert upstream.requests == []
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.error_code) == (
        "anthropic",
        RequestLog.Status.INVALID,
        "TOOLS_NOT_SUPPORTED",
    )


def test_a_named_model_without_tools_is_refused_for_a_tool_result(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_tools",))
    conversation: list[Any] = [
        *QUESTION,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18°C"}],
        },
    ]

    response = post(
        live_server_url,
        {"model": "alpha:alpha-model", "max_tokens": 8, "messages": conversation},
        new_key(),
    )

    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "this request uses tools (tools, tool_calls or tool messages), and "
        "alpha:alpha-model does not accept tools",
    }
    assert upstream.requests == []


def test_count_tokens_counts_the_tools_and_the_calls(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    conversation: list[Any] = [
        *QUESTION,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "get_time", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "9"}]},
    ]

    counted = client(live_server_url, new_key()).messages.count_tokens(
        model="auto", messages=conversation, tools=[WEATHER]
    )

    tools = json.dumps(
        [
            {
                "name": "get_weather",
                "description": "Current weather of a city",
                "parameters": WEATHER["input_schema"],
            }
        ],
        separators=(",", ":"),
    )
    calls = '[{"id":"t1","name":"get_time","arguments":"{}"}]'
    assert counted.input_tokens == tokens_estimate(
        "user: Weather and time in Paris?\n\n"
        f"assistant: \ntool_calls: {calls}\n\n"
        "tool: 9\n\n"
        f"tools: {tools}"
    )
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"tools": [{"type": "computer_20250124", "name": "computer"}]},
            "tools[0].type: 'computer_20250124' is not supported: this gateway offers its models "
            "custom tools only (name, description, input_schema), not tools Anthropic's servers "
            "run or define (web search, code execution, computer use, bash, text editor)",
        ),
        (
            {"tools": [{"name": "get weather", "input_schema": {"type": "object"}}]},
            "tools[0].name: must be 1 to 64 letters, digits, underscores or dashes",
        ),
        (
            {"tools": [{"name": "f"}]},
            'tools[0].input_schema: must be a JSON Schema object ({"type": "object", …})',
        ),
        (
            {"tools": [{"name": "f", "input_schema": {"type": "object"}, "input_examples": [{}]}]},
            "tools[0].input_examples: not supported by this gateway: the answer would ignore it, "
            "so the request is refused",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools: two tools have the same name"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
            "tool_choice.name: names 'nope', which is not among the tools",
        ),
        (
            {"tools": [WEATHER], "tool_choice": "auto"},
            'tool_choice: must be {"type": "auto"}, {"type": "any"}, {"type": "tool", "name": …} '
            'or {"type": "none"}',
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "auto", "disable_parallel_tool_use": 1}},
            "tool_choice.disable_parallel_tool_use: must be a boolean",
        ),
        ({"tool_choice": {"type": "any"}}, "tool_choice: is read only with tools"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                    }
                ]
            },
            "messages[0].content[0]: tool_use blocks are read only in assistant turns",
        ),
        (
            {
                "messages": [
                    *QUESTION,
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}],
                    },
                ]
            },
            "messages[1].content[0].input: must be an object (the tool's input)",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Here:"},
                            {"type": "tool_result", "tool_use_id": "t", "content": "1"},
                        ],
                    }
                ]
            },
            "messages[0].content[1]: tool_result blocks come first in a user turn, before any "
            "text or image",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [
                                    {
                                        "type": "image",
                                        "source": {
                                            "type": "base64",
                                            "media_type": "image/png",
                                            "data": "AA==",
                                        },
                                    }
                                ],
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0]: image blocks are not supported in tool results: "
            "this gateway's tool turns carry text only, so the request is refused rather than "
            "answered without it",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "1"}]}]},
            "messages[0].content[0].tool_use_id: must be a non-empty string",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": "y"}],
                    }
                ]
            },
            "messages[0].content[0].is_error: must be a boolean",
        ),
    ],
    ids=[
        "server-tool",
        "tool-name",
        "no-input-schema",
        "unknown-tool-field",
        "same-name",
        "choice-unknown-tool",
        "choice-string",
        "choice-parallel-not-bool",
        "choice-without-tools",
        "tool-use-in-user-turn",
        "tool-use-input-string",
        "tool-result-after-text",
        "tool-result-image",
        "tool-result-no-id",
        "is-error-not-bool",
    ],
)
def test_malformed_tool_fields_are_refused_naming_them(
    live_server_url: str, upstream: UpstreamServer, body: dict[str, Any], message: str
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))

    response = post(
        live_server_url, {"model": "auto", "max_tokens": 8, "messages": QUESTION} | body, new_key()
    )

    assert response.status_code == 400
    request_id = response.headers["request-id"]
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
        "request_id": request_id,
    }
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.status, row.error_code) == ("invalid", "INVALID_REQUEST")
    assert upstream.requests == []


def test_the_tool_use_snippet_of_the_docs_runs(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    """docs/api.md's tool round trip, run as written with the anthropic SDK."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text[text.index("**Tool use** works as on Anthropic's API") :]
    start = section.index("```python\n") + len("```python\n")
    snippet = section[start : section.index("\n```", start)]
    claude_registry(upstream)
    upstream.reply(
        "POST",
        CLAUDE_PATH,
        Reply.sse(fixture("anthropic/messages_stream_tool_use.sse")),
        Reply.sse(fixture("anthropic/messages_stream.sse")),
    )
    scope: dict[str, Any] = {"client": client(live_server_url, new_key())}

    exec(compile(snippet, "docs/api.md", "exec"), scope)

    call_id = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert (scope["call"].id, scope["call"].input) == (call_id, {"city": "Paris"})
    assert scope["final"].content[0].text == "The capital of France is Paris."
    _, second = (r.json() for r in upstream.requests)
    assert second["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking the weather."},
                {
                    "type": "tool_use",
                    "id": call_id,
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "18°C"}],
        },
    ]
