"""`dimensions` on `POST /v1/embeddings`: passed to the model, and the client never receives
vectors of another length than the one it asked for (or the model's `embedding_dimensions`)."""

from __future__ import annotations

import openai
import pytest

from analytics.models import RequestLog
from tests.gateway.test_openai_embeddings import (
    EMBED_PATH,
    client,
    embedding_registry,
    vectors_reply,
)
from tests.providers.upstream_server import UpstreamServer
from tests.routing.gateway_support import new_key, wait_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_dimensions_reach_the_model_and_its_shorter_vectors_the_client(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    embedding_registry(upstream)
    upstream.reply("POST", EMBED_PATH, vectors_reply([[0.5, -0.25]], 7))

    answer = client(live_server_url, new_key()).embeddings.create(
        model="auto", input="hello", encoding_format="float", dimensions=2
    )

    assert [d.embedding for d in answer.data] == [[0.5, -0.25]]
    (sent,) = upstream.requests
    assert sent.json() == {
        "model": "emb-model",
        "input": ["hello"],
        "encoding_format": "float",
        "dimensions": 2,
    }


def test_a_model_that_ignores_dimensions_is_not_passed_on(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    embedding_registry(upstream)
    upstream.reply("POST", EMBED_PATH, vectors_reply([[0.5, -0.25, 1.0]], 7))

    with pytest.raises(openai.APIStatusError) as failed:
        client(live_server_url, new_key()).embeddings.create(
            model="auto", input="hello", encoding_format="float", dimensions=2
        )

    assert failed.value.status_code == 502
    body = failed.value.body
    assert isinstance(body, dict)
    assert body["code"] == "INVALID_RESPONSE"
    assert body["message"] == "emb:emb-model answered vectors of 3 dimensions; 2 were expected"
    (row,) = wait_rows(1, entry_point="embeddings")
    assert (row.status, row.error_code) == (RequestLog.Status.ERROR, "INVALID_RESPONSE")
    assert row.request_id.hex == body["trace_id"].replace("-", "")


def test_a_wrong_embedding_dimensions_is_not_passed_on(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    embedding_registry(upstream)
    upstream.reply("POST", EMBED_PATH, vectors_reply([[0.5, -0.25]], 7))

    with pytest.raises(openai.APIStatusError) as failed:
        client(live_server_url, new_key()).embeddings.create(
            model="emb:emb-model", input="hello", encoding_format="float"
        )

    assert failed.value.status_code == 502
    body = failed.value.body
    assert isinstance(body, dict)
    assert body["message"] == "emb:emb-model answered vectors of 2 dimensions; 3 were expected"


def test_more_dimensions_than_any_model_gives_is_refused_as_the_field(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    embedding_registry(upstream)

    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server_url, new_key()).embeddings.create(
            model="auto", input="hello", encoding_format="float", dimensions=4
        )

    body = refused.value.body
    assert isinstance(body, dict)
    assert (body["code"], body["param"]) == ("INVALID_REQUEST", "dimensions")
    assert body["message"] == "no enabled embedding model gives 4 dimensions (the most is 3)"
    assert upstream.requests == []
