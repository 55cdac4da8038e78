"""A Gemini thinking model's thought signatures, through the adapters: the signature Gemini puts
beside a `functionCall` part rides in the call's id, goes back beside the same call in a later
turn to Gemini exactly as it came, and stays out of the ids every other provider gets (OpenAI
caps ids at 40 characters, Anthropic allows only letters, digits, `_` and `-`). Against a local
upstream speaking each provider's wire format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from providers.adapters.anthropic_messages import AnthropicMessagesAdapter
from providers.adapters.gemini import GeminiAdapter
from providers.adapters.openai_chat import OpenAIChatAdapter, OpenAICompatibleAdapter
from providers.adapters.types import (
    ChatRequest,
    ChatResult,
    Endpoint,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
    tool_call_id_own,
    tool_call_id_signed,
    tool_call_id_split,
    tool_calls_join,
)
from tests.providers.adapter_cases import API_KEY, collect
from tests.providers.upstream_server import Reply, UpstreamServer, fixture

SIGNED_JSON = fixture("gemini/generate_content_function_call_signed.json")
SIGNED_SSE = fixture("gemini/stream_function_call_signed.sse")
# The fixture's signature, as Gemini wrote it (standard base64, with `/` and `=`).
SIGNATURE = json.loads(SIGNED_JSON)["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
SIGNED_ID = "call_0__thought__Q2lRQjBlMktkR2hwYm10cGJtY3RjM1JoZEdVdGIyWXRkR2hsTFdOaGJHei8vZz09"
GEMINI_PATH = "/v1beta/models/gemini-3-flash-preview"
CALLS = (
    ToolCall(id=SIGNED_ID, name="get_weather", arguments='{"city":"Paris"}'),
    ToolCall(id="call_1", name="get_time", arguments='{"zone":"CET"}'),
)
# The turn after the calls: the conversation with the calls and their results.
FOLLOW_UP = (
    Message(role="user", content="Weather and time in Paris?"),
    Message(role="assistant", content="", tool_calls=CALLS),
    Message(role="tool", content='{"temp": 18}', tool_call_id=SIGNED_ID),
    Message(role="tool", content="14:05", tool_call_id="call_1"),
)


def endpoint(upstream: UpstreamServer) -> Endpoint:
    return Endpoint(base_url=upstream.url, api_key=API_KEY)


def test_a_signature_rides_in_the_id_and_comes_back_exactly() -> None:
    assert SIGNATURE == "CiQB0e2KdGhpbmtpbmctc3RhdGUtb2YtdGhlLWNhbGz//g=="
    assert tool_call_id_signed("call_0", SIGNATURE) == SIGNED_ID
    assert tool_call_id_split(SIGNED_ID) == ("call_0", SIGNATURE)
    assert tool_call_id_own(SIGNED_ID) == "call_0"
    # Only letters, digits, `_` and `-`: what Anthropic's tool_use ids accept.
    assert SIGNED_ID.replace("_", "").replace("-", "").isalnum()
    assert tool_call_id_signed("call_0", None) == "call_0"
    # Ids this gateway did not sign are left as they are.
    for other in ("call_0", "__thought__YzJsbg", "a__thought__!!", "a__thought__", None):
        assert tool_call_id_own(other) == other


async def test_gemini_complete_puts_the_signature_in_the_calls_id(
    upstream: UpstreamServer,
) -> None:
    upstream.reply("POST", f"{GEMINI_PATH}:generateContent", Reply.json(SIGNED_JSON))

    result = await GeminiAdapter().complete(
        endpoint(upstream),
        ChatRequest(
            model="gemini-3-flash-preview",
            messages=(Message(role="user", content="Weather and time in Paris?"),),
        ),
    )

    assert result == ChatResult(
        text="",
        model="gemini-3-flash-preview",
        # The thinking is billed as output: 18 tokens of answer and 40 of thoughts.
        usage=Usage(input=64, output=58),
        finish_reason="tool_calls",
        tool_calls=CALLS,
    )


async def test_gemini_stream_puts_the_signature_in_the_calls_id(upstream: UpstreamServer) -> None:
    upstream.reply("POST", f"{GEMINI_PATH}:streamGenerateContent", Reply.sse(SIGNED_SSE))

    chunks = await collect(
        GeminiAdapter(),
        endpoint(upstream),
        ChatRequest(
            model="gemini-3-flash-preview",
            messages=(Message(role="user", content="Weather and time in Paris?"),),
        ),
    )

    assert [piece for chunk in chunks for piece in chunk.tool_calls] == [
        ToolCallDelta(index=0, id=SIGNED_ID, name="get_weather", arguments='{"city":"Paris"}'),
        ToolCallDelta(index=1, id="call_1", name="get_time", arguments='{"zone":"CET"}'),
    ]


async def test_gemini_gets_the_signature_back_beside_its_call(upstream: UpstreamServer) -> None:
    upstream.reply(
        "POST",
        f"{GEMINI_PATH}:generateContent",
        Reply.json(fixture("gemini/generate_content.json")),
    )

    await GeminiAdapter().complete(
        endpoint(upstream), ChatRequest(model="gemini-3-flash-preview", messages=FOLLOW_UP)
    )

    [sent] = upstream.requests
    assert sent.json()["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIGNATURE,
                },
                {"functionCall": {"name": "get_time", "args": {"zone": "CET"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "14:05"}}},
            ],
        },
    ]


async def test_openai_compatible_gets_the_calls_own_id(upstream: UpstreamServer) -> None:
    upstream.reply(
        "POST", "/v1/chat/completions", Reply.json(fixture("openai/chat_completion.json"))
    )

    await OpenAICompatibleAdapter().complete(
        Endpoint(base_url=f"{upstream.url}/v1", api_key=API_KEY),
        ChatRequest(model="gpt-4o-mini", messages=FOLLOW_UP),
    )

    [sent] = upstream.requests
    messages = sent.json()["messages"]
    assert [call["id"] for call in messages[1]["tool_calls"]] == ["call_0", "call_1"]
    assert [m["tool_call_id"] for m in messages[2:]] == ["call_0", "call_1"]


@pytest.mark.parametrize("streamed", [False, True])
async def test_anthropic_gets_the_calls_own_id(upstream: UpstreamServer, streamed: bool) -> None:
    if streamed:
        upstream.reply("POST", "/v1/messages", Reply.sse(fixture("anthropic/messages_stream.sse")))
    else:
        upstream.reply("POST", "/v1/messages", Reply.json(fixture("anthropic/message.json")))
    adapter = AnthropicMessagesAdapter()
    request = ChatRequest(model="claude-sonnet-4-20250514", messages=FOLLOW_UP, max_tokens=64)

    if streamed:
        await collect(adapter, endpoint(upstream), request)
    else:
        await adapter.complete(endpoint(upstream), request)

    [sent] = upstream.requests
    messages = sent.json()["messages"]
    assert [block["id"] for block in messages[1]["content"]] == ["call_0", "call_1"]
    assert [block["tool_use_id"] for block in messages[2]["content"]] == ["call_0", "call_1"]


# Google's OpenAI-compatible endpoint: the signature is the call's `extra_content`.
GOOGLE_CALLS = (
    ToolCall(
        id="function-call-1__thought__Q2lRQjBlMktkR2hwYm10cGJtY3RjM1JoZEdVdGIyWXRkR2hsTFdOaGJHei8vZz09",
        name="get_weather",
        arguments='{"city":"Paris"}',
    ),
    ToolCall(id="function-call-2", name="get_time", arguments='{"zone":"CET"}'),
)


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "whole"])
async def test_an_openai_compatible_google_call_keeps_its_signature_in_its_id(
    upstream: UpstreamServer, streamed: bool
) -> None:
    upstream.reply(
        "POST",
        "/v1/chat/completions",
        Reply.sse(fixture("openai/chat_stream_tool_calls_google.sse"))
        if streamed
        else Reply.json(fixture("openai/chat_completion_tool_calls_google.json")),
    )
    adapter = OpenAICompatibleAdapter()
    request = ChatRequest(
        model="gemini-3-flash-preview",
        messages=(Message(role="user", content="Weather and time in Paris?"),),
    )
    at = Endpoint(base_url=f"{upstream.url}/v1", api_key=API_KEY)

    if streamed:
        chunks = await collect(adapter, at, request)
        calls = tool_calls_join(piece for chunk in chunks for piece in chunk.tool_calls)
    else:
        calls = (await adapter.complete(at, request)).tool_calls

    assert calls == GOOGLE_CALLS
    assert tool_call_id_split(GOOGLE_CALLS[0].id) == ("function-call-1", SIGNATURE)


@pytest.mark.parametrize(
    ("adapter", "extra"),
    [
        (OpenAICompatibleAdapter(), {"google": {"thought_signature": SIGNATURE}}),
        # OpenAI's own API knows no such field.
        (OpenAIChatAdapter(), None),
    ],
    ids=["openai-compatible", "openai"],
)
def test_a_signed_call_goes_back_with_its_signature_where_the_endpoint_takes_it(
    adapter: OpenAIChatAdapter, extra: dict[str, Any] | None
) -> None:
    body = adapter.payload(ChatRequest(model="m", messages=FOLLOW_UP), stream=False)

    signed, unsigned = body["messages"][1]["tool_calls"]
    assert signed["id"] == "call_0"
    assert signed.get("extra_content") == extra
    assert unsigned == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_time", "arguments": '{"zone":"CET"}'},
    }
