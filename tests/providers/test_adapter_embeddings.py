"""Each embeddings protocol's exact wire format against a local HTTP server."""

from __future__ import annotations

import pytest

from providers.adapters.embeddings import (
    EmbeddingRequest,
    EmbeddingResult,
    gemini_embed,
    ollama_embed,
    openai_embed,
)
from providers.adapters.types import (
    Endpoint,
    InvalidResponse,
    ProviderRejected,
    ProviderUnavailable,
    Usage,
)
from tests.providers.upstream_server import Reply, UpstreamServer

REQUEST = EmbeddingRequest(model="embed-small", inputs=("first", "second"))


async def test_openai_sends_texts_and_reads_vectors_in_index_order(
    upstream: UpstreamServer,
) -> None:
    upstream.reply(
        "POST",
        "/v1/embeddings",
        Reply.json(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 1, "embedding": [3, 4.5]},
                    {"object": "embedding", "index": 0, "embedding": [1.0, -2.0]},
                ],
                "model": "embed-small",
                "usage": {"prompt_tokens": 7, "total_tokens": 7},
            }
        ),
    )

    result = await openai_embed(
        Endpoint(base_url=f"{upstream.url}/v1", api_key="sk-test"),
        EmbeddingRequest(model="embed-small", inputs=("first", "second"), dimensions=2),
    )

    assert result == EmbeddingResult(((1.0, -2.0), (3.0, 4.5)), Usage(input=7))
    (sent,) = upstream.requests
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.json() == {
        "model": "embed-small",
        "input": ["first", "second"],
        "encoding_format": "float",
        "dimensions": 2,
    }


async def test_ollama_api_embed(upstream: UpstreamServer) -> None:
    upstream.reply(
        "POST",
        "/api/embed",
        Reply.json(
            {
                "model": "embed-small",
                "embeddings": [[0.25, 0.5], [0.75, 1.0]],
                "total_duration": 14143917,
                "load_duration": 1019500,
                "prompt_eval_count": 9,
            }
        ),
    )

    result = await ollama_embed(Endpoint(base_url=upstream.url), REQUEST)

    assert result == EmbeddingResult(((0.25, 0.5), (0.75, 1.0)), Usage(input=9))
    (sent,) = upstream.requests
    assert sent.json() == {"model": "embed-small", "input": ["first", "second"]}


async def test_gemini_batch_embed_contents(upstream: UpstreamServer) -> None:
    upstream.reply(
        "POST",
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        Reply.json({"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}),
    )

    result = await gemini_embed(
        Endpoint(base_url=upstream.url, api_key="g-key"),
        EmbeddingRequest(model="text-embedding-004", inputs=("first", "second"), dimensions=2),
    )

    assert result == EmbeddingResult(((0.1, 0.2), (0.3, 0.4)), None)
    (sent,) = upstream.requests
    assert sent.headers["x-goog-api-key"] == "g-key"
    assert sent.json() == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "first"}]},
                "outputDimensionality": 2,
            },
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "second"}]},
                "outputDimensionality": 2,
            },
        ]
    }


async def test_errors_are_typed(upstream: UpstreamServer) -> None:
    upstream.reply(
        "POST",
        "/v1/embeddings",
        Reply.json({"error": {"message": "no such model"}}, status=404),
        Reply.json({"error": {"message": "overloaded"}}, status=503),
        Reply.json({"data": [{"index": 0, "embedding": [1.0]}], "usage": {}}),
    )
    endpoint = Endpoint(base_url=f"{upstream.url}/v1")

    with pytest.raises(ProviderRejected) as missing:
        await openai_embed(endpoint, REQUEST)
    with pytest.raises(ProviderUnavailable) as busy:
        await openai_embed(endpoint, REQUEST)
    with pytest.raises(InvalidResponse) as short:
        await openai_embed(endpoint, REQUEST)

    assert missing.value.status == 404
    assert busy.value.status == 503
    assert short.value.message == "1 embeddings for 2 inputs"
