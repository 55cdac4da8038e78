"""A real generation through the OpenAI-compatible adapter, against the bundled SmolLM2 model
served by llama.cpp's server."""

from __future__ import annotations

import pytest

from providers.adapters.registry import adapter_for
from providers.adapters.types import ChatRequest, Endpoint, Message
from providers.local_model import MODEL_ALIAS, runtime_installed
from tests.providers.adapter_cases import collect

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not runtime_installed(), reason="local model runtime missing: run `make local-model`"
    ),
]

REQUEST = ChatRequest(
    model=MODEL_ALIAS,
    messages=(Message(role="user", content="Name one colour."),),
    max_tokens=16,
    temperature=0.0,
)


async def test_streaming_generation_has_text_and_no_usage(local_model_url):
    adapter = adapter_for("openai_compatible")

    chunks = await collect(adapter, Endpoint(base_url=local_model_url), REQUEST)

    text = "".join(c.text for c in chunks)
    assert text.strip() != ""
    assert chunks[-1].finish_reason in {"stop", "length"}
    # llama.cpp's server ignores stream_options.include_usage: the caller counts instead.
    assert chunks[-1].usage is None
    assert all(c.finish_reason is None for c in chunks[:-1])


async def test_non_streaming_generation_reports_usage(local_model_url):
    adapter = adapter_for("openai_compatible")

    result = await adapter.complete(Endpoint(base_url=local_model_url), REQUEST)

    assert result.text.strip() != ""
    assert result.finish_reason in {"stop", "length"}
    assert result.usage is not None
    assert result.usage.input > 0
    assert 0 < result.usage.output <= 16
    assert result.usage.cached == 0


async def test_max_tokens_is_honoured(local_model_url):
    adapter = adapter_for("openai_compatible")
    one_token = ChatRequest(model=MODEL_ALIAS, messages=REQUEST.messages, max_tokens=1)

    result = await adapter.complete(Endpoint(base_url=local_model_url), one_token)

    assert result.finish_reason == "length"
    assert result.usage is not None and result.usage.output == 1


async def test_lists_the_served_model(local_model_url):
    assert await adapter_for("openai_compatible").list_models(
        Endpoint(base_url=local_model_url)
    ) == [MODEL_ALIAS]


async def test_the_same_server_embeds_one_mean_pooled_vector_per_input(local_model_url):
    from providers.adapters.embeddings import EmbeddingRequest, openai_embed
    from providers.local_model import EMBEDDING_DIMENSIONS

    result = await openai_embed(
        Endpoint(base_url=local_model_url),
        EmbeddingRequest(model=MODEL_ALIAS, inputs=("hello world", "second")),
    )

    assert [len(v) for v in result.vectors] == [EMBEDDING_DIMENSIONS, EMBEDDING_DIMENSIONS]
    assert result.vectors[0] != result.vectors[1]
    assert result.usage is not None
    assert result.usage.input == 3
