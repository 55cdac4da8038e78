"""The privacy agent reads `POST /v1/embeddings` inputs as it reads a chat's messages: text it
keeps off cloud models in a chat never reaches a cloud embedding model either."""

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

SECRET = "Reply to jane.doe@acme-corp.com about the invoice"


def test_flagged_input_never_reaches_a_cloud_embedding_model(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    embedding_registry(upstream)  # its only embedding model is in the cloud
    upstream.reply("POST", EMBED_PATH, vectors_reply([[0.5, -0.25, 1.0]], 4))
    sdk = client(live_server_url, new_key())

    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model="auto", input=["a plain text", SECRET], encoding_format="float")
    plain = sdk.embeddings.create(model="auto", input="a plain text", encoding_format="float")

    body = refused.value.body
    assert isinstance(body, dict)
    assert body["code"] == "PRIVACY_NO_LOCAL_MODEL"
    assert body["message"] == (
        "the request is kept on local models, and no enabled local embedding model can answer it"
    )
    assert [d.embedding for d in plain.data] == [[0.5, -0.25, 1.0]]
    (sent,) = upstream.requests
    assert sent.json()["input"] == ["a plain text"]
    refused_row, answered_row = sorted(
        wait_rows(2, entry_point="embeddings"), key=lambda row: row.created_at
    )
    assert (refused_row.status, refused_row.error_code) == (
        RequestLog.Status.INVALID,
        "PRIVACY_NO_LOCAL_MODEL",
    )
    assert refused_row.decision_trace["privacy"] == {
        "triggered": ["email"],
        "local_only": [],
        "action": "local_only",
    }
    assert "jane.doe" not in str(refused_row.decision_trace)
    assert answered_row.status == RequestLog.Status.SUCCESS


def test_flagged_input_naming_a_cloud_model_is_refused(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    embedding_registry(upstream)

    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server_url, new_key()).embeddings.create(
            model="emb:emb-model", input=SECRET, encoding_format="float"
        )

    body = refused.value.body
    assert isinstance(body, dict)
    assert body["code"] == "PRIVACY_NO_LOCAL_MODEL"
    assert body["message"] == (
        "the request is kept on local models, and 'emb:emb-model' is not local"
    )
    assert upstream.requests == []
