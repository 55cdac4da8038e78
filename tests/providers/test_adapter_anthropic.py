from __future__ import annotations

import pytest

from providers.adapters.anthropic_messages import AnthropicMessagesAdapter
from providers.adapters.types import (
    Adapter,
    ChatChunk,
    ChatRequest,
    ChatResult,
    ContextTooLong,
    Endpoint,
    Image,
    Message,
    ProviderError,
    ProviderUnavailable,
    Usage,
)
from tests.providers.adapter_cases import API_KEY, collect
from tests.providers.upstream_server import Reply, fixture

ADAPTER: Adapter = AnthropicMessagesAdapter()
PATH = "/v1/messages"
REQUEST = ChatRequest(
    model="claude-sonnet-4-20250514",
    messages=(
        Message(role="system", content="Answer in one sentence."),
        Message(role="system", content="Be exact."),
        Message(role="user", content="What is the capital of France?"),
    ),
    max_tokens=64,
    temperature=0.2,
    top_p=0.9,
    stop=("\n\nHuman:",),
)
FIXTURE_USAGE = Usage(input=25, output=10, cached=1830)


def endpoint(upstream) -> Endpoint:
    return Endpoint(base_url=upstream.url, api_key=API_KEY)


async def test_stream_sends_system_top_level_and_the_documented_headers(upstream):
    upstream.reply("POST", PATH, Reply.sse(fixture("anthropic/messages_stream.sse")))

    await collect(ADAPTER, endpoint(upstream), REQUEST)

    [sent] = upstream.requests
    assert sent.json() == {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 64,
        "system": "Answer in one sentence.\n\nBe exact.",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "stream": True,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["\n\nHuman:"],
    }
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers


async def test_images_go_as_base64_blocks_before_the_text(upstream):
    upstream.reply("POST", PATH, Reply.json(fixture("anthropic/message.json")))
    seeing = ChatRequest(
        model="claude-sonnet-4-20250514",
        messages=(
            Message(role="system", content="Be exact."),
            Message(
                role="user",
                content="Which is bigger?",
                images=(Image("image/png", "iVBORw0KGgo="), Image("image/jpeg", "/9j/4AAQ")),
            ),
            Message(role="assistant", content="The first."),
            Message(role="user", content="", images=(Image("image/webp", "UklGRg=="),)),
        ),
        max_tokens=32,
    )

    await ADAPTER.complete(endpoint(upstream), seeing)

    [sent] = upstream.requests
    assert sent.json() == {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 32,
        "system": "Be exact.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/jpeg",
                            "data": "/9j/4AAQ",
                        },
                    },
                    {"type": "text", "text": "Which is bigger?"},
                ],
            },
            {"role": "assistant", "content": "The first."},
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/webp",
                            "data": "UklGRg==",
                        },
                    }
                ],
            },
        ],
        "stream": False,
    }


async def test_stream_chunks_usage_and_stop_reason(upstream):
    upstream.reply("POST", PATH, Reply.sse(fixture("anthropic/messages_stream.sse")))

    chunks = await collect(ADAPTER, endpoint(upstream), REQUEST)

    assert chunks == [
        ChatChunk(text="The capital"),
        ChatChunk(text=" of France"),
        ChatChunk(text=" is Paris."),
        ChatChunk(text="", usage=FIXTURE_USAGE, finish_reason="stop"),
    ]


async def test_max_tokens_defaults_when_request_leaves_it_open(upstream):
    upstream.reply("POST", PATH, Reply.json(fixture("anthropic/message.json")))
    open_ended = ChatRequest(model=REQUEST.model, messages=REQUEST.messages[2:])

    await ADAPTER.complete(endpoint(upstream), open_ended)

    body = upstream.requests[0].json()
    assert body["max_tokens"] == 4096
    assert "system" not in body


async def test_complete_reads_text_stop_reason_and_usage(upstream):
    upstream.reply("POST", PATH, Reply.json(fixture("anthropic/message.json")))

    result = await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert result == ChatResult(
        text="The capital of France is Paris.",
        model="claude-sonnet-4-20250514",
        usage=FIXTURE_USAGE,
        finish_reason="stop",
    )
    assert upstream.requests[0].json()["stream"] is False


async def test_overloaded_error_event_mid_stream_is_retryable(upstream):
    upstream.reply("POST", PATH, Reply.sse(fixture("anthropic/messages_stream_overloaded.sse")))
    received: list[ChatChunk] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in ADAPTER.stream(endpoint(upstream), REQUEST):
            received.append(chunk)

    assert received == [ChatChunk(text="The capital")]
    assert type(caught.value) is ProviderUnavailable
    assert caught.value.status == 529
    assert caught.value.message == "Overloaded"


async def test_529_status_is_unavailable(upstream):
    upstream.reply("POST", PATH, Reply.json(fixture("anthropic/error_529.json"), status=529))

    with pytest.raises(ProviderError) as caught:
        await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert type(caught.value) is ProviderUnavailable
    assert caught.value.status == 529


async def test_prompt_too_long_is_context_too_long(upstream):
    upstream.reply(
        "POST", PATH, Reply.json(fixture("anthropic/error_context_length.json"), status=400)
    )

    with pytest.raises(ContextTooLong) as caught:
        await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert caught.value.message == "prompt is too long: 208310 tokens > 200000 maximum"


async def test_list_models_follows_pages(upstream):
    upstream.reply(
        "GET",
        "/v1/models",
        Reply.json(fixture("anthropic/models_page1.json")),
        Reply.json(fixture("anthropic/models_page2.json")),
    )

    models = await ADAPTER.list_models(endpoint(upstream))

    assert models == [
        "claude-sonnet-4-20250514",
        "claude-3-5-haiku-20241022",
        "claude-3-haiku-20240307",
    ]
    first, second = upstream.requests
    assert first.query == {"limit": ["1000"]}
    assert second.query == {"limit": ["1000"], "after_id": ["claude-3-5-haiku-20241022"]}
    assert second.headers["x-api-key"] == API_KEY
