from __future__ import annotations

import pytest

from providers.adapters.ollama import OllamaAdapter
from providers.adapters.types import (
    Adapter,
    ChatChunk,
    ChatRequest,
    ChatResult,
    Endpoint,
    Image,
    Message,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    Usage,
)
from tests.providers.adapter_cases import collect
from tests.providers.upstream_server import Reply, fixture

ADAPTER: Adapter = OllamaAdapter()
REQUEST = ChatRequest(
    model="llama3.2",
    messages=(
        Message(role="system", content="Answer in one sentence."),
        Message(role="user", content="What is the capital of France?"),
    ),
    max_tokens=64,
    temperature=0.2,
    top_p=0.9,
    stop=("\n\n",),
)
FIXTURE_USAGE = Usage(input=31, output=8, cached=0)


def endpoint(upstream) -> Endpoint:
    return Endpoint(base_url=upstream.url)


async def test_stream_sends_the_documented_request(upstream):
    upstream.reply("POST", "/api/chat", Reply.ndjson(fixture("ollama/chat_stream.ndjson")))

    await collect(ADAPTER, endpoint(upstream), REQUEST)

    [sent] = upstream.requests
    assert sent.json() == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "stream": True,
        "options": {"num_predict": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\n"]},
    }
    assert "authorization" not in sent.headers


async def test_images_ride_beside_their_message_as_base64(upstream):
    upstream.reply("POST", "/api/chat", Reply.json(fixture("ollama/chat.json")))
    png = "iVBORw0KGgo="
    gif = "R0lGODlhAQABAAAAACw="
    request = ChatRequest(
        model="llava",
        messages=(
            Message(role="system", content="Answer in one sentence."),
            Message(
                role="user",
                content="What is in these?",
                images=(Image("image/png", png), Image("image/gif", gif)),
            ),
        ),
    )

    await ADAPTER.complete(endpoint(upstream), request)

    [sent] = upstream.requests
    assert sent.json() == {
        "model": "llava",
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "What is in these?", "images": [png, gif]},
        ],
        "stream": False,
    }


async def test_stream_chunks_and_counts(upstream):
    upstream.reply("POST", "/api/chat", Reply.ndjson(fixture("ollama/chat_stream.ndjson")))

    chunks = await collect(ADAPTER, endpoint(upstream), REQUEST)

    assert chunks == [
        ChatChunk(text="The"),
        ChatChunk(text=" capital"),
        ChatChunk(text=" of"),
        ChatChunk(text=" France"),
        ChatChunk(text=" is"),
        ChatChunk(text=" Paris"),
        ChatChunk(text="."),
        ChatChunk(text="", usage=FIXTURE_USAGE, finish_reason="stop"),
    ]


async def test_complete_reads_text_and_counts(upstream):
    upstream.reply("POST", "/api/chat", Reply.json(fixture("ollama/chat.json")))

    result = await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert result == ChatResult(
        text="The capital of France is Paris.",
        model="llama3.2",
        usage=FIXTURE_USAGE,
        finish_reason="stop",
    )
    assert upstream.requests[0].json()["stream"] is False


async def test_error_line_mid_stream_is_typed(upstream):
    upstream.reply("POST", "/api/chat", Reply.ndjson(fixture("ollama/chat_stream_error.ndjson")))
    received: list[ChatChunk] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in ADAPTER.stream(endpoint(upstream), REQUEST):
            received.append(chunk)

    assert received == [ChatChunk(text="The")]
    assert type(caught.value) is ProviderUnavailable
    assert caught.value.message == (
        "an error was encountered while running the model: unexpected EOF"
    )


async def test_model_not_pulled_is_rejected(upstream):
    upstream.reply("POST", "/api/chat", Reply.json(fixture("ollama/error_404.json"), status=404))

    with pytest.raises(ProviderRejected) as caught:
        await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert caught.value.status == 404
    assert caught.value.retryable is False
    assert caught.value.message == 'model "llama3.3" not found, try pulling it first'


async def test_list_models_from_tags(upstream):
    upstream.reply("GET", "/api/tags", Reply.json(fixture("ollama/tags.json")))

    assert await ADAPTER.list_models(endpoint(upstream)) == [
        "llama3.2:latest",
        "qwen2.5-coder:7b",
    ]
