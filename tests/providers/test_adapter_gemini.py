from __future__ import annotations

import pytest

from providers.adapters.gemini import GeminiAdapter
from providers.adapters.types import (
    Adapter,
    ChatChunk,
    ChatRequest,
    ChatResult,
    ContextTooLong,
    Endpoint,
    Image,
    Message,
    ProviderAuthFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    Usage,
)
from tests.providers.adapter_cases import API_KEY, collect
from tests.providers.upstream_server import Reply, fixture

ADAPTER: Adapter = GeminiAdapter()
STREAM_PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
COMPLETE_PATH = "/v1beta/models/gemini-2.5-flash:generateContent"
REQUEST = ChatRequest(
    model="gemini-2.5-flash",
    messages=(
        Message(role="system", content="Answer in one sentence."),
        Message(role="user", content="Hello"),
        Message(role="assistant", content="Hello! How can I help?"),
        Message(role="user", content="What is the capital of France?"),
    ),
    max_tokens=64,
    temperature=0.2,
    top_p=0.9,
    stop=("END",),
)
# promptTokenCount 2070 includes 2048 cached; output is 8 answer + 12 thinking tokens.
FIXTURE_USAGE = Usage(input=22, output=20, cached=2048)


def endpoint(upstream) -> Endpoint:
    return Endpoint(base_url=upstream.url, api_key=API_KEY)


async def test_stream_sends_contents_system_instruction_and_config(upstream):
    upstream.reply("POST", STREAM_PATH, Reply.sse(fixture("gemini/stream.sse")))

    await collect(ADAPTER, endpoint(upstream), REQUEST)

    [sent] = upstream.requests
    assert sent.query == {"alt": ["sse"]}
    assert sent.json() == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}]},
            {"role": "model", "parts": [{"text": "Hello! How can I help?"}]},
            {"role": "user", "parts": [{"text": "What is the capital of France?"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Answer in one sentence."}]},
        "generationConfig": {
            "maxOutputTokens": 64,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
    }
    assert sent.headers["x-goog-api-key"] == API_KEY
    assert "key" not in sent.query, "the key travels in a header, never in the URL"


async def test_images_go_as_inline_data_parts_before_the_text(upstream):
    upstream.reply("POST", COMPLETE_PATH, Reply.json(fixture("gemini/generate_content.json")))
    seeing = ChatRequest(
        model="gemini-2.5-flash",
        messages=(
            Message(role="system", content="Be exact."),
            Message(
                role="user",
                content="Which is bigger?",
                images=(Image("image/png", "iVBORw0KGgo="), Image("image/jpeg", "/9j/4AAQ")),
            ),
            Message(role="assistant", content="The first."),
            Message(role="user", content="", images=(Image("image/gif", "R0lGODlh"),)),
        ),
    )

    await ADAPTER.complete(endpoint(upstream), seeing)

    [sent] = upstream.requests
    assert sent.json() == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
                    {"text": "Which is bigger?"},
                ],
            },
            {"role": "model", "parts": [{"text": "The first."}]},
            {
                "role": "user",
                "parts": [{"inlineData": {"mimeType": "image/gif", "data": "R0lGODlh"}}],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be exact."}]},
    }


async def test_stream_chunks_and_cumulative_usage(upstream):
    upstream.reply("POST", STREAM_PATH, Reply.sse(fixture("gemini/stream.sse")))

    chunks = await collect(ADAPTER, endpoint(upstream), REQUEST)

    assert chunks == [
        ChatChunk(text="The capital"),
        ChatChunk(text=" of France"),
        ChatChunk(text=" is Paris."),
        ChatChunk(text="", usage=FIXTURE_USAGE, finish_reason="stop"),
    ]


async def test_complete_reads_text_finish_reason_and_usage(upstream):
    upstream.reply("POST", COMPLETE_PATH, Reply.json(fixture("gemini/generate_content.json")))

    result = await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert result == ChatResult(
        text="The capital of France is Paris.",
        model="gemini-2.5-flash",
        usage=FIXTURE_USAGE,
        finish_reason="stop",
    )
    assert upstream.requests[0].query == {}


async def test_max_tokens_finish_is_length(upstream):
    body = fixture("gemini/generate_content.json").replace(b'"STOP"', b'"MAX_TOKENS"')
    upstream.reply("POST", COMPLETE_PATH, Reply.json(body))

    result = await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert result.finish_reason == "length"


async def test_blocked_prompt_ends_the_stream_as_content_filter(upstream):
    blocked = (
        b'data: {"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":'
        b'{"promptTokenCount":9,"totalTokenCount":9},"modelVersion":"gemini-2.5-flash"}\r\n\r\n'
    )
    upstream.reply("POST", STREAM_PATH, Reply.sse(blocked))

    chunks = await collect(ADAPTER, endpoint(upstream), REQUEST)

    assert chunks == [
        ChatChunk(usage=Usage(input=9, output=0, cached=0), finish_reason="content_filter")
    ]


async def test_invalid_key_answered_with_400_is_an_auth_failure(upstream):
    upstream.reply(
        "POST", COMPLETE_PATH, Reply.json(fixture("gemini/error_400_api_key.json"), status=400)
    )

    with pytest.raises(ProviderAuthFailed) as caught:
        await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert caught.value.status == 400
    assert caught.value.message == "API key not valid. Please pass a valid API key."


async def test_429_retry_delay_from_body_when_no_header(upstream):
    upstream.reply("POST", STREAM_PATH, Reply.json(fixture("gemini/error_429.json"), status=429))

    with pytest.raises(ProviderRateLimited) as caught:
        await collect(ADAPTER, endpoint(upstream), REQUEST)

    assert caught.value.retry_after_s == 17.0


async def test_503_overloaded_is_unavailable(upstream):
    upstream.reply("POST", COMPLETE_PATH, Reply.json(fixture("gemini/error_503.json"), status=503))

    with pytest.raises(ProviderError) as caught:
        await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert type(caught.value) is ProviderUnavailable
    assert caught.value.message == "The model is overloaded. Please try again later."


async def test_error_object_inside_stream_is_typed(upstream):
    first = fixture("gemini/stream.sse").split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    error = b'data: {"error":{"code":500,"message":"Internal error","status":"INTERNAL"}}\r\n\r\n'
    upstream.reply("POST", STREAM_PATH, Reply.sse(first + error))
    received: list[ChatChunk] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in ADAPTER.stream(endpoint(upstream), REQUEST):
            received.append(chunk)

    assert received == [ChatChunk(text="The capital")]
    assert type(caught.value) is ProviderUnavailable
    assert caught.value.status == 500


async def test_input_over_the_limit_is_context_too_long(upstream):
    upstream.reply(
        "POST", COMPLETE_PATH, Reply.json(fixture("gemini/error_context_length.json"), status=400)
    )

    with pytest.raises(ContextTooLong):
        await ADAPTER.complete(endpoint(upstream), REQUEST)


async def test_list_models_follows_pages_and_skips_non_chat_models(upstream):
    upstream.reply(
        "GET",
        "/v1beta/models",
        Reply.json(fixture("gemini/models_page1.json")),
        Reply.json(fixture("gemini/models_page2.json")),
    )

    models = await ADAPTER.list_models(endpoint(upstream))

    assert models == ["gemini-2.5-flash", "gemini-2.5-pro"]
    first, second = upstream.requests
    assert first.query == {"pageSize": ["1000"]}
    assert second.query == {
        "pageSize": ["1000"],
        "pageToken": ["Chltb2RlbHMvZ2VtaW5pLTIuNS1mbGFzaA=="],
    }
    assert second.headers["x-goog-api-key"] == API_KEY
