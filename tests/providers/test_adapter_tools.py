"""Tool calling and JSON answers through each adapter, against a local upstream that speaks the
provider's own wire format (tests/fixtures): the exact body each provider receives for a
conversation with tools, tool calls and their results, and the exact tool calls read back,
streamed and not."""

from __future__ import annotations

from typing import Any

import pytest

from providers.adapters.anthropic_messages import AnthropicMessagesAdapter
from providers.adapters.gemini import GeminiAdapter
from providers.adapters.ollama import OllamaAdapter
from providers.adapters.openai_chat import OpenAIChatAdapter, OpenAICompatibleAdapter
from providers.adapters.types import (
    Adapter,
    ChatChunk,
    ChatRequest,
    ChatResult,
    Endpoint,
    FeatureUnsupported,
    Message,
    ProviderRejected,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
    tool_calls_join,
)
from tests.providers.adapter_cases import API_KEY, collect
from tests.providers.upstream_server import Reply, UpstreamServer, fixture

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
TIME_SCHEMA = {"type": "object", "properties": {"zone": {"type": "string"}}}
TOOLS = (
    Tool(name="get_weather", description="Current weather of a city", parameters=WEATHER_SCHEMA),
    Tool(name="get_time", parameters=TIME_SCHEMA),
)
CONVERSATION = (
    Message(role="system", content="Use the tools."),
    Message(role="user", content="Weather and time in Paris?"),
    Message(
        role="assistant",
        content="",
        tool_calls=(
            ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
            ToolCall(id="call_2", name="get_time", arguments='{"zone":"CET"}'),
        ),
    ),
    Message(role="tool", content="18°C, clear", tool_call_id="call_1"),
    Message(role="tool", content="14:05", tool_call_id="call_2"),
    Message(role="user", content="And in Rome?"),
)
WEATHER_SCHEMA_FORMAT = ResponseFormat(type="json_schema", name="weather", schema=WEATHER_SCHEMA)


def request(model: str, **changes: Any) -> ChatRequest:
    fields: dict[str, Any] = {
        "model": model,
        "messages": CONVERSATION,
        "max_tokens": 64,
        "tools": TOOLS,
        "tool_choice": ToolChoice(mode="required"),
    }
    return ChatRequest(**(fields | changes))


def endpoint(upstream: UpstreamServer, path: str = "") -> Endpoint:
    return Endpoint(base_url=f"{upstream.url}{path}", api_key=API_KEY)


def pieces(chunks: list[ChatChunk]) -> list[ToolCallDelta]:
    return [piece for chunk in chunks for piece in chunk.tool_calls]


# OpenAI and OpenAI-compatible: passed through.

OPENAI_MESSAGES = [
    {"role": "system", "content": "Use the tools."},
    {"role": "user", "content": "Weather and time in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"zone":"CET"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18°C, clear"},
    {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
    {"role": "user", "content": "And in Rome?"},
]
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": WEATHER_SCHEMA,
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": TIME_SCHEMA}},
]
OPENAI_CALLS = (
    ToolCall(id="call_DdmO9pD3xa9XTPNJ32zg2hcA", name="get_weather", arguments='{"city":"Paris"}'),
    ToolCall(id="call_Q8hWQ3uCg2sZmdlp1mS1HRc2", name="get_time", arguments='{"zone":"CET"}'),
)


async def test_openai_stream_passes_tools_through_and_reads_the_call_pieces(
    upstream: UpstreamServer,
) -> None:
    upstream.reply(
        "POST", "/v1/chat/completions", Reply.sse(fixture("openai/chat_stream_tool_calls.sse"))
    )

    chunks = await collect(
        OpenAIChatAdapter(),
        endpoint(upstream, "/v1"),
        request("gpt-4o", parallel_tool_calls=False),
    )

    [sent] = upstream.requests
    assert sent.json() == {
        "model": "gpt-4o",
        "messages": OPENAI_MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 64,
        "tools": OPENAI_TOOLS,
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    assert pieces(chunks) == [
        ToolCallDelta(index=0, id="call_DdmO9pD3xa9XTPNJ32zg2hcA", name="get_weather"),
        ToolCallDelta(index=0, arguments='{"'),
        ToolCallDelta(index=0, arguments='city":"Paris"}'),
        ToolCallDelta(index=1, id="call_Q8hWQ3uCg2sZmdlp1mS1HRc2", name="get_time"),
        ToolCallDelta(index=1, arguments='{"zone":"CET"}'),
    ]
    assert "".join(c.text for c in chunks) == ""
    assert (chunks[-1].finish_reason, chunks[-1].usage) == (
        "tool_calls",
        Usage(input=82, output=47),
    )
    assert tool_calls_join(pieces(chunks)) == OPENAI_CALLS


async def test_openai_complete_reads_message_tool_calls(upstream: UpstreamServer) -> None:
    upstream.reply(
        "POST",
        "/v1/chat/completions",
        Reply.json(fixture("openai/chat_completion_tool_calls.json")),
    )

    result = await OpenAIChatAdapter().complete(
        endpoint(upstream, "/v1"),
        request("gpt-4o", tool_choice=ToolChoice(mode="function", name="get_weather")),
    )

    assert result == ChatResult(
        text="",
        model="gpt-4o-2024-08-06",
        usage=Usage(input=82, output=47),
        finish_reason="tool_calls",
        tool_calls=OPENAI_CALLS,
    )
    [sent] = upstream.requests
    assert sent.json()["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent.json()["stream"] is False


@pytest.mark.parametrize(
    ("form", "sent"),
    [
        (ResponseFormat(type="json_object"), {"type": "json_object"}),
        (
            ResponseFormat(
                type="json_schema",
                name="weather",
                schema=WEATHER_SCHEMA,
                description="A city's weather",
                strict=True,
            ),
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "weather",
                    "description": "A city's weather",
                    "schema": WEATHER_SCHEMA,
                    "strict": True,
                },
            },
        ),
    ],
)
async def test_openai_compatible_passes_response_format_through(
    upstream: UpstreamServer, form: ResponseFormat, sent: dict[str, Any]
) -> None:
    upstream.reply("POST", "/v1/chat/completions", Reply.sse(fixture("openai/chat_stream.sse")))
    plain = ChatRequest(
        model="local",
        messages=(Message(role="user", content="Weather?"),),
        response_format=form,
    )

    await collect(OpenAICompatibleAdapter(), endpoint(upstream, "/v1"), plain)

    [received] = upstream.requests
    assert received.json() == {
        "model": "local",
        "messages": [{"role": "user", "content": "Weather?"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "response_format": sent,
    }


# Anthropic: translated to tool_use / tool_result blocks.

ANTHROPIC_BODY = {
    "model": "claude-sonnet-4-20250514",
    "max_tokens": 64,
    "system": "Use the tools.",
    "messages": [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {"zone": "CET"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C, clear"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "14:05"},
            ],
        },
        {"role": "user", "content": "And in Rome?"},
    ],
    "stream": True,
    "tools": [
        {
            "name": "get_weather",
            "description": "Current weather of a city",
            "input_schema": WEATHER_SCHEMA,
        },
        {"name": "get_time", "input_schema": TIME_SCHEMA},
    ],
    "tool_choice": {"type": "any"},
}
ANTHROPIC_CALL = ToolCall(
    id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", name="get_weather", arguments='{"city":"Paris"}'
)


async def test_anthropic_stream_translates_tools_and_reads_input_json_deltas(
    upstream: UpstreamServer,
) -> None:
    upstream.reply(
        "POST", "/v1/messages", Reply.sse(fixture("anthropic/messages_stream_tool_use.sse"))
    )

    chunks = await collect(
        AnthropicMessagesAdapter(), endpoint(upstream), request("claude-sonnet-4-20250514")
    )

    [sent] = upstream.requests
    assert sent.json() == ANTHROPIC_BODY
    assert chunks == [
        ChatChunk(text="Checking the weather."),
        ChatChunk(
            tool_calls=(
                ToolCallDelta(index=0, id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", name="get_weather"),
            )
        ),
        ChatChunk(tool_calls=(ToolCallDelta(index=0, arguments='{"city": "Pa'),)),
        ChatChunk(tool_calls=(ToolCallDelta(index=0, arguments='ris"}'),)),
        ChatChunk(usage=Usage(input=412, output=61), finish_reason="tool_calls"),
    ]


async def test_anthropic_complete_reads_tool_use_blocks(upstream: UpstreamServer) -> None:
    upstream.reply("POST", "/v1/messages", Reply.json(fixture("anthropic/message_tool_use.json")))

    result = await AnthropicMessagesAdapter().complete(
        endpoint(upstream),
        request(
            "claude-sonnet-4-20250514",
            tool_choice=ToolChoice(mode="function", name="get_weather"),
            parallel_tool_calls=False,
        ),
    )

    assert result == ChatResult(
        text="Checking the weather.",
        model="claude-sonnet-4-20250514",
        usage=Usage(input=412, output=61),
        finish_reason="tool_calls",
        tool_calls=(ANTHROPIC_CALL,),
    )
    [sent] = upstream.requests
    assert sent.json()["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }


@pytest.mark.parametrize(
    ("choice", "parallel", "sent"),
    [
        (None, None, None),
        (ToolChoice(mode="auto"), None, {"type": "auto"}),
        (ToolChoice(mode="none"), False, {"type": "none"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_anthropic_tool_choice_translation(
    choice: ToolChoice | None, parallel: bool | None, sent: dict[str, Any] | None
) -> None:
    body = AnthropicMessagesAdapter().payload(
        request("claude", tool_choice=choice, parallel_tool_calls=parallel), stream=False
    )

    assert body.get("tool_choice") == sent


async def test_anthropic_refuses_a_json_answer_before_calling(upstream: UpstreamServer) -> None:
    with pytest.raises(FeatureUnsupported) as refused:
        await collect(
            AnthropicMessagesAdapter(),
            endpoint(upstream),
            request("claude", response_format=ResponseFormat(type="json_object")),
        )

    assert (refused.value.code, refused.value.status, refused.value.message) == (
        "JSON_OUTPUT_NOT_SUPPORTED",
        400,
        "response_format: Anthropic's Messages API has no JSON answer mode",
    )
    assert upstream.requests == []


# Gemini: functionDeclarations, functionCall / functionResponse parts, toolConfig.

GEMINI_PATH = "/v1beta/models/gemini-2.0-flash"
GEMINI_BODY = {
    "contents": [
        {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {"zone": "CET"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"content": "18°C, clear"},
                    }
                },
                {"functionResponse": {"name": "get_time", "response": {"content": "14:05"}}},
            ],
        },
        {"role": "user", "parts": [{"text": "And in Rome?"}]},
    ],
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather of a city",
                    "parameters": WEATHER_SCHEMA,
                },
                {"name": "get_time", "parameters": TIME_SCHEMA},
            ]
        }
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    "systemInstruction": {"parts": [{"text": "Use the tools."}]},
    "generationConfig": {"maxOutputTokens": 64},
}
GEMINI_CALLS = (
    ToolCall(id="call_0", name="get_weather", arguments='{"city":"Paris"}'),
    ToolCall(id="call_1", name="get_time", arguments='{"zone":"CET"}'),
)


async def test_gemini_stream_translates_tools_and_reads_function_calls(
    upstream: UpstreamServer,
) -> None:
    upstream.reply(
        "POST",
        f"{GEMINI_PATH}:streamGenerateContent",
        Reply.sse(fixture("gemini/stream_function_call.sse")),
    )

    chunks = await collect(GeminiAdapter(), endpoint(upstream), request("gemini-2.0-flash"))

    [sent] = upstream.requests
    assert sent.json() == GEMINI_BODY
    assert chunks == [
        ChatChunk(
            tool_calls=(
                ToolCallDelta(
                    index=0, id="call_0", name="get_weather", arguments='{"city":"Paris"}'
                ),
                ToolCallDelta(index=1, id="call_1", name="get_time", arguments='{"zone":"CET"}'),
            )
        ),
        ChatChunk(usage=Usage(input=64, output=18), finish_reason="tool_calls"),
    ]


async def test_gemini_complete_reads_function_calls_and_maps_a_json_schema(
    upstream: UpstreamServer,
) -> None:
    upstream.reply(
        "POST",
        f"{GEMINI_PATH}:generateContent",
        Reply.json(fixture("gemini/generate_content_function_call.json")),
    )

    result = await GeminiAdapter().complete(
        endpoint(upstream),
        request(
            "gemini-2.0-flash",
            tool_choice=ToolChoice(mode="function", name="get_time"),
            response_format=WEATHER_SCHEMA_FORMAT,
        ),
    )

    assert result == ChatResult(
        text="",
        model="gemini-2.0-flash",
        usage=Usage(input=64, output=18),
        finish_reason="tool_calls",
        tool_calls=GEMINI_CALLS,
    )
    [sent] = upstream.requests
    assert sent.json()["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
    }
    assert sent.json()["generationConfig"] == {
        "maxOutputTokens": 64,
        "responseMimeType": "application/json",
        "responseSchema": WEATHER_SCHEMA,
    }


def test_gemini_json_object_and_refused_parallel_false() -> None:
    body = GeminiAdapter().payload(
        ChatRequest(
            model="g",
            messages=(Message(role="user", content="Hi"),),
            response_format=ResponseFormat(type="json_object"),
        )
    )
    assert body["generationConfig"] == {"responseMimeType": "application/json"}

    with pytest.raises(FeatureUnsupported) as refused:
        GeminiAdapter().payload(request("g", parallel_tool_calls=False))
    assert refused.value.code == "TOOLS_NOT_SUPPORTED"


# Ollama: tools as they are, arguments as objects, tool_name on results, format.

OLLAMA_BODY = {
    "model": "llama3.1:8b",
    "messages": [
        {"role": "system", "content": "Use the tools."},
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": {"zone": "CET"}}},
            ],
        },
        {"role": "tool", "content": "18°C, clear", "tool_name": "get_weather"},
        {"role": "tool", "content": "14:05", "tool_name": "get_time"},
        {"role": "user", "content": "And in Rome?"},
    ],
    "stream": True,
    "tools": OPENAI_TOOLS,
    "options": {"num_predict": 64},
}


async def test_ollama_stream_translates_tools_and_reads_whole_calls(
    upstream: UpstreamServer,
) -> None:
    upstream.reply(
        "POST", "/api/chat", Reply.ndjson(fixture("ollama/chat_stream_tool_calls.ndjson"))
    )

    chunks = await collect(
        OllamaAdapter(),
        endpoint(upstream),
        request("llama3.1:8b", tool_choice=ToolChoice(mode="auto")),
    )

    [sent] = upstream.requests
    assert sent.json() == OLLAMA_BODY
    assert chunks == [
        ChatChunk(
            tool_calls=(
                ToolCallDelta(
                    index=0, id="call_0", name="get_weather", arguments='{"city":"Paris"}'
                ),
            )
        ),
        ChatChunk(
            tool_calls=(
                ToolCallDelta(index=1, id="call_1", name="get_time", arguments='{"zone":"CET"}'),
            )
        ),
        ChatChunk(usage=Usage(input=140, output=31), finish_reason="tool_calls"),
    ]


async def test_ollama_complete_reads_calls_and_maps_a_json_schema_to_format(
    upstream: UpstreamServer,
) -> None:
    upstream.reply("POST", "/api/chat", Reply.json(fixture("ollama/chat_tool_calls.json")))

    result = await OllamaAdapter().complete(
        endpoint(upstream),
        request("llama3.1:8b", tool_choice=None, response_format=WEATHER_SCHEMA_FORMAT),
    )

    assert result == ChatResult(
        text="",
        model="llama3.1:8b",
        usage=Usage(input=140, output=31),
        finish_reason="tool_calls",
        tool_calls=GEMINI_CALLS,
    )
    [sent] = upstream.requests
    assert sent.json()["format"] == WEATHER_SCHEMA
    assert sent.json()["stream"] is False


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"tool_choice": ToolChoice(mode="required")},
            "tool_choice: Ollama chooses among the tools itself; required is not carried",
        ),
        (
            {"tool_choice": ToolChoice(mode="function", name="get_time")},
            "tool_choice: Ollama chooses among the tools itself; function is not carried",
        ),
        (
            {"tool_choice": None, "parallel_tool_calls": False},
            "parallel_tool_calls: Ollama may call several tools at once; false is not carried",
        ),
    ],
)
async def test_ollama_refuses_what_it_cannot_carry(
    upstream: UpstreamServer, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(FeatureUnsupported) as refused:
        await collect(OllamaAdapter(), endpoint(upstream), request("llama3.1:8b", **changes))

    assert (refused.value.code, refused.value.message) == ("TOOLS_NOT_SUPPORTED", message)
    assert upstream.requests == []


def test_ollama_sends_no_tools_for_tool_choice_none_and_json_for_json_object() -> None:
    body = OllamaAdapter().payload(
        request(
            "m",
            tool_choice=ToolChoice(mode="none"),
            response_format=ResponseFormat(type="json_object"),
        ),
        stream=False,
    )

    assert "tools" not in body
    assert body["format"] == "json"


ADAPTERS: list[Adapter] = [AnthropicMessagesAdapter(), OllamaAdapter()]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_arguments_that_are_not_a_json_object_are_refused(adapter: Any) -> None:
    broken = (
        Message(role="user", content="Hi"),
        Message(
            role="assistant",
            content="",
            tool_calls=(ToolCall(id="call_9", name="get_time", arguments="[1]"),),
        ),
    )

    with pytest.raises(ProviderRejected) as refused:
        adapter.payload(request("m", messages=broken, tool_choice=None), stream=False)

    assert (refused.value.status, str(refused.value)) == (
        400,
        "tool call call_9: its arguments are not a JSON object",
    )
