from __future__ import annotations

import pytest

from providers.adapters.openai_chat import OpenAIChatAdapter, OpenAICompatibleAdapter
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
    ProviderUnavailable,
    Usage,
)
from tests.providers.adapter_cases import API_KEY, collect
from tests.providers.upstream_server import Reply, fixture

ADAPTER: Adapter = OpenAIChatAdapter()
COMPATIBLE: Adapter = OpenAICompatibleAdapter()
PATH = "/v1/chat/completions"
REQUEST = ChatRequest(
    model="gpt-4o-mini",
    messages=(
        Message(role="system", content="Answer in one sentence."),
        Message(role="user", content="What is the capital of France?"),
    ),
    max_tokens=64,
    temperature=0.2,
    top_p=0.9,
    stop=("\n\n",),
)
EXPECTED_MESSAGES = [
    {"role": "system", "content": "Answer in one sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
# 1310 prompt tokens of which 1152 were cached: Usage keeps the two apart.
FIXTURE_USAGE = Usage(input=158, output=7, cached=1152)


def endpoint(upstream, api_key: str | None = API_KEY) -> Endpoint:
    return Endpoint(base_url=f"{upstream.url}/v1", api_key=api_key)


async def test_stream_sends_the_documented_request(upstream):
    upstream.reply("POST", PATH, Reply.sse(fixture("openai/chat_stream.sse")))

    await collect(ADAPTER, endpoint(upstream), REQUEST)

    [sent] = upstream.requests
    assert sent.json() == {
        "model": "gpt-4o-mini",
        "messages": EXPECTED_MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
    }
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["accept"] == "text/event-stream"
    assert sent.headers["content-type"] == "application/json"


PNG = Image(media_type="image/png", data="iVBORw0KGgo=")
GIF = Image(media_type="image/gif", data="R0lGODlhAQABAAAAACw=")


async def test_images_go_before_the_text_as_data_url_parts(upstream):
    upstream.reply("POST", PATH, Reply.json(fixture("openai/chat_completion.json")))
    request = ChatRequest(
        model="gpt-4o-mini",
        messages=(
            Message(role="system", content="Answer in one sentence."),
            Message(role="user", content="What is in these?", images=(PNG, GIF)),
            Message(role="assistant", content="A dot and a dot."),
            Message(role="user", content="", images=(GIF,)),
        ),
    )

    await COMPATIBLE.complete(endpoint(upstream, api_key=None), request)

    [sent] = upstream.requests
    assert sent.json() == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG.data}"},
                    },
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/gif;base64,{GIF.data}"},
                    },
                    {"type": "text", "text": "What is in these?"},
                ],
            },
            {"role": "assistant", "content": "A dot and a dot."},
            # No text: no text part.
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/gif;base64,{GIF.data}"}}
                ],
            },
        ],
        "stream": False,
    }


async def test_stream_chunks_and_usage_with_cached_tokens(upstream):
    # Events that arrive apart come as chunks of their own.
    upstream.reply("POST", PATH, Reply.sse(fixture("openai/chat_stream.sse"), chunk_delay_s=0.05))

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


async def test_events_that_arrive_together_come_as_one_chunk(upstream):
    raw = fixture("openai/chat_stream.sse")
    upstream.reply("POST", PATH, Reply.chunked(raw, len(raw), content_type="text/event-stream"))

    chunks = await collect(ADAPTER, endpoint(upstream), REQUEST)

    assert chunks == [
        ChatChunk(text="The capital of France is Paris.", usage=FIXTURE_USAGE, finish_reason="stop")
    ]


async def test_stream_with_crlf_line_endings(upstream):
    crlf = fixture("openai/chat_stream.sse").replace(b"\n", b"\r\n")
    upstream.reply("POST", PATH, Reply.sse(crlf))

    chunks = await collect(ADAPTER, endpoint(upstream), REQUEST)

    assert "".join(c.text for c in chunks) == "The capital of France is Paris."
    # The end comes with whatever text arrived in the same read as `[DONE]`.
    assert (chunks[-1].usage, chunks[-1].finish_reason) == (FIXTURE_USAGE, "stop")


async def test_stream_without_usage_chunk_reports_usage_none(upstream):
    """What llama.cpp's server does: it ignores stream_options and sends no usage."""
    events = fixture("openai/chat_stream.sse").split(b"\n\n")
    without_usage = b"\n\n".join(e for e in events if b'"usage":{' not in e)
    upstream.reply("POST", PATH, Reply.sse(without_usage))

    chunks = await collect(COMPATIBLE, endpoint(upstream, api_key=None), REQUEST)

    assert (chunks[-1].usage, chunks[-1].finish_reason) == (None, "stop")
    assert "".join(c.text for c in chunks) == "The capital of France is Paris."


async def test_compatible_server_gets_max_tokens_and_no_auth_without_key(upstream):
    upstream.reply("POST", PATH, Reply.json(fixture("openai/chat_completion.json")))

    await COMPATIBLE.complete(endpoint(upstream, api_key=None), REQUEST)

    [sent] = upstream.requests
    body = sent.json()
    assert body["max_tokens"] == 64
    assert "max_completion_tokens" not in body
    assert body["stream"] is False
    assert "stream_options" not in body
    assert "authorization" not in sent.headers


async def test_complete_reads_text_finish_reason_and_usage(upstream):
    upstream.reply("POST", PATH, Reply.json(fixture("openai/chat_completion.json")))

    result = await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert result == ChatResult(
        text="The capital of France is Paris.",
        model="gpt-4o-mini-2024-07-18",
        usage=FIXTURE_USAGE,
        finish_reason="stop",
    )
    assert upstream.requests[0].json()["stream"] is False


async def test_error_event_inside_stream_is_typed(upstream):
    first = fixture("openai/chat_stream.sse").split(b"\n\n")[1] + b"\n\n"
    error = (
        b'data: {"error":{"message":"The server had an error while processing your request.",'
        b'"type":"server_error","param":null,"code":null}}\n\n'
    )
    upstream.reply("POST", PATH, Reply.sse(first + error))
    received: list[ChatChunk] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in ADAPTER.stream(endpoint(upstream), REQUEST):
            received.append(chunk)

    assert received == [ChatChunk(text="The")]
    assert type(caught.value) is ProviderUnavailable
    assert caught.value.message == "The server had an error while processing your request."


async def test_context_too_long_is_not_retryable(upstream):
    upstream.reply(
        "POST", PATH, Reply.json(fixture("openai/error_context_length.json"), status=400)
    )

    with pytest.raises(ContextTooLong) as caught:
        await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert caught.value.status == 400
    assert caught.value.retryable is False
    assert caught.value.code == "TOKEN_LIMIT_EXCEEDED"


async def test_401_message_keeps_the_words_but_not_the_masked_key(upstream):
    upstream.reply("POST", PATH, Reply.json(fixture("openai/error_401.json"), status=401))

    with pytest.raises(ProviderAuthFailed) as caught:
        await ADAPTER.complete(endpoint(upstream), REQUEST)

    assert caught.value.message == (
        "Incorrect API key provided: [redacted] You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )


async def test_list_models(upstream):
    upstream.reply("GET", "/v1/models", Reply.json(fixture("openai/models.json")))

    models = await ADAPTER.list_models(endpoint(upstream))

    assert models == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    [sent] = upstream.requests
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
