"""`POST /v1/embeddings` through the official openai SDK against the live ASGI server: routed to
embedding models only, costed, budgeted and logged like chat."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from analytics.models import RequestLog
from providers.models import LLMModel, Provider
from routing.models import Budget
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import (
    chat_path,
    gateway_registry,
    new_key,
    settle_config,
    wait_rows,
)
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EMBED_PATH = "/emb/v1/embeddings"


def client(live_server_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0)


def embedding_registry(upstream: UpstreamServer) -> LLMModel:
    """The chat registry of the gateway tests, plus `emb:emb-model`: embedding-only, 3
    dimensions, $0.02 per 1M input tokens, and the cheapest model of all."""
    gateway_registry(upstream)
    provider = Provider.objects.create(
        name="emb", kind="openai_compatible", base_url=f"{upstream.url}/emb/v1", locality="cloud"
    )
    model = LLMModel.objects.create(
        provider=provider,
        name="emb-model",
        tier="standard",
        input_price_per_mtok_usd=Decimal("0.02"),
        output_price_per_mtok_usd=Decimal("0"),
        embedding_dimensions=3,
        answers_chat=False,
    )
    settle_config()
    return model


def vectors_reply(vectors: list[list[float]], tokens: int) -> Reply:
    return Reply.json(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": "emb-model",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def test_single_input_as_floats_is_costed_and_logged(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    embedding_registry(upstream)
    upstream.reply("POST", EMBED_PATH, vectors_reply([[0.5, -0.25, 1.0]], 1000))
    key = new_key()

    raw = client(live_server_url, key).embeddings.with_raw_response.create(
        model="auto", input="hello world", encoding_format="float"
    )
    answer = raw.parse()

    assert [d.embedding for d in answer.data] == [[0.5, -0.25, 1.0]]
    assert [d.index for d in answer.data] == [0]
    assert answer.object == "list"
    assert answer.model == "emb:emb-model"
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (1000, 1000)
    (sent,) = upstream.requests
    assert sent.path == EMBED_PATH
    assert sent.json() == {
        "model": "emb-model",
        "input": ["hello world"],
        "encoding_format": "float",
    }
    (row,) = wait_rows(1, request_id=raw.headers["x-orchestrator-request-id"])
    assert row.entry_point == "embeddings"
    assert row.status == RequestLog.Status.SUCCESS
    assert (row.input_tokens, row.output_tokens) == (1000, 0)
    assert row.cost_usd == Decimal("0.00002000")
    assert row.model_name == "emb-model"
    assert row.task_type == "embedding"


def test_batch_as_base64_counts_every_item(live_server_url: str, upstream: UpstreamServer) -> None:
    embedding_registry(upstream)
    upstream.reply("POST", EMBED_PATH, vectors_reply([[0.5, 0.25, 0.125], [-1.0, 2.0, 0.0]], 500))
    key = new_key()

    # The SDK asks for base64 when no encoding is named and decodes it back into floats.
    answer = client(live_server_url, key).embeddings.create(
        model="emb:emb-model", input=["first text", "second text"]
    )

    assert [d.embedding for d in answer.data] == [[0.5, 0.25, 0.125], [-1.0, 2.0, 0.0]]
    assert [d.index for d in answer.data] == [0, 1]
    assert answer.usage.prompt_tokens == 500
    (sent,) = upstream.requests
    assert sent.json()["input"] == ["first text", "second text"]
    (row,) = wait_rows(1, entry_point="embeddings")
    assert row.input_tokens == 500
    assert row.cost_usd == Decimal("0.00001000")
    assert row.requested_model == "emb:emb-model"


def test_budget_refusal(live_server_url: str, upstream: UpstreamServer) -> None:
    embedding_registry(upstream)
    Budget.objects.create(name="tiny", limit_usd=Decimal("0.00000001"))
    key = new_key()

    with pytest.raises(openai.APIStatusError) as refused:
        client(live_server_url, key).embeddings.create(
            model="auto", input="x " * 4000, encoding_format="float"
        )

    assert refused.value.status_code == 402
    assert refused.value.body["code"] == "BUDGET_EXCEEDED"  # type: ignore[index]
    assert upstream.requests == []
    (row,) = wait_rows(1, entry_point="embeddings")
    assert row.status == RequestLog.Status.BUDGET_REFUSED


def test_token_id_input_and_chat_models_are_refused(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    embedding_registry(upstream)
    key = new_key()
    sdk = client(live_server_url, key)

    with pytest.raises(openai.BadRequestError) as token_ids:
        sdk.embeddings.create(model="auto", input=[[1, 2, 3]], encoding_format="float")
    with pytest.raises(openai.BadRequestError) as chat_model:
        sdk.embeddings.create(model="alpha:alpha-model", input="hi", encoding_format="float")

    assert token_ids.value.body["param"] == "input"  # type: ignore[index]
    assert token_ids.value.body["message"].startswith(  # type: ignore[index]
        "input: token-id input is not supported"
    )
    assert chat_model.value.body["message"] == (  # type: ignore[index]
        "'alpha:alpha-model' is not an embedding model (it has no embedding_dimensions)"
    )
    assert upstream.requests == []


def test_chat_never_picks_the_embedding_model(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    embedding_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["hi"], usage=(3, 1))))
    key = new_key()
    sdk = client(live_server_url, key)

    routed = sdk.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hello"}]
    )
    with pytest.raises(openai.BadRequestError) as named:
        sdk.chat.completions.create(
            model="emb:emb-model", messages=[{"role": "user", "content": "hello"}]
        )

    assert routed.model == "alpha:alpha-model"
    assert named.value.body["message"] == (  # type: ignore[index]
        "'emb:emb-model' is an embedding model: does not answer chat; use /v1/embeddings"
    )
    assert [r.path for r in upstream.requests] == [chat_path("alpha")]
