"""`POST /v1/embeddings` answered by an Ollama embedding model: the door's OpenAI shape over
Ollama's `/api/embed` wire format, costed from its `prompt_eval_count`."""

from __future__ import annotations

import base64
import struct
from decimal import Decimal

import pytest

from analytics.models import RequestLog
from providers.models import LLMModel, Provider
from tests.gateway.test_openai_embeddings import client
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import gateway_registry, new_key, settle_config, wait_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_ollama_embed_behind_the_openai_door(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    provider = Provider.objects.create(
        name="oll", kind="ollama", base_url=f"{upstream.url}/oll", locality="cloud"
    )
    LLMModel.objects.create(
        provider=provider,
        name="nomic-embed-text",
        tier="standard",
        input_price_per_mtok_usd=Decimal("0.10"),
        output_price_per_mtok_usd=Decimal("0"),
        embedding_dimensions=2,
        answers_chat=False,
    )
    settle_config()
    upstream.reply(
        "POST",
        "/oll/api/embed",
        Reply.json(
            {
                "model": "nomic-embed-text",
                "embeddings": [[0.25, -0.5], [1.5, 0.0]],
                "prompt_eval_count": 20,
            }
        ),
    )
    sdk = client(live_server_url, new_key())

    raw = sdk.embeddings.with_raw_response.create(
        model="oll:nomic-embed-text", input=["one", "two"], encoding_format="base64"
    )

    wire = raw.http_response.json()
    assert wire["data"] == [
        {
            "object": "embedding",
            "index": 0,
            "embedding": base64.b64encode(struct.pack("<2f", 0.25, -0.5)).decode(),
        },
        {
            "object": "embedding",
            "index": 1,
            "embedding": base64.b64encode(struct.pack("<2f", 1.5, 0.0)).decode(),
        },
    ]
    assert wire["model"] == "oll:nomic-embed-text"
    assert wire["usage"] == {"prompt_tokens": 20, "total_tokens": 20}
    (sent,) = upstream.requests
    assert sent.path == "/oll/api/embed"
    assert sent.json() == {"model": "nomic-embed-text", "input": ["one", "two"]}
    (row,) = wait_rows(1, entry_point="embeddings")
    assert row.status == RequestLog.Status.SUCCESS
    assert (row.input_tokens, row.output_tokens) == (20, 0)
    assert row.cost_usd == Decimal("0.00000200")
    assert row.model_name == "nomic-embed-text"
