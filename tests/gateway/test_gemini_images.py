"""Images at the Gemini door: `inlineData` parts (or `inline_data`, by proto names) in user turns
reach a model that accepts images, as Gemini's own parts, through the live web process and
google-genai; a request no enabled model can read is refused in Google's error shape, and a
`fileData` URI, a bad media type or bad base64 is refused naming the part. Each request is
logged exactly once."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from google import genai
from google.genai import types

from analytics.models import RequestLog
from analytics.pricing import tokens_estimate
from providers.models import LLMModel, Provider
from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.conftest import _fresh_routing_cache  # noqa: F401  (autouse)
from tests.routing.gateway_support import (
    every_task_to,
    gateway_registry,
    new_key,
    settle_config,
    upstream_models,
    wait_rows,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GENERATE = "/v1beta/models/auto:generateContent"
EYE_PATH = "/google/v1beta/models/gemini-eye:streamGenerateContent"
# `+` and `/` in standard base64 (`-` and `_` in URL-safe), so the alphabet a client sends
# and the one the provider gets can be told apart.
PNG_BYTES = b"\x89PNG\r\n\x1a\n\xfb\xff\xbf"
JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\xfe"
PNG = base64.b64encode(PNG_BYTES).decode()
JPEG = base64.b64encode(JPEG_BYTES).decode()
NO_READER = (
    "this request carries 1 image, and no enabled model accepts images "
    "(mark one that does in the admin: accepts images)"
)


def client(live_server_url: str, key: str) -> genai.Client:
    return genai.Client(
        vertexai=False,
        api_key=key,
        http_options=types.HttpOptions(base_url=live_server_url, api_version="v1beta"),
    )


def inline(mime_type: str, data: str) -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime_type, "data": data}}


def seeing_registry(upstream: UpstreamServer) -> None:
    """`alpha` (text only) first for every task, then `google:gemini-eye`, a Gemini model on
    the local upstream that accepts images."""
    cache.clear()
    models = upstream_models(upstream)
    provider = Provider.objects.create(
        name="google", kind="gemini", base_url=f"{upstream.url}/google", locality="cloud"
    )
    eye = LLMModel.objects.create(
        provider=provider,
        name="gemini-eye",
        tier="standard",
        context_window=1_000_000,
        input_price_per_mtok_usd=Decimal("0.30"),
        output_price_per_mtok_usd=Decimal("2.50"),
        accepts_images=True,
    )
    every_task_to("seeing-policy", models["alpha"], eye)
    settle_config()


def post(live_server_url: str, body: Any, key: str, path: str = GENERATE) -> httpx.Response:
    return httpx.post(f"{live_server_url}{path}", json=body, headers={"x-goog-api-key": key})


def test_sdk_images_reach_the_model_that_reads_them(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    seeing_registry(upstream)
    upstream.reply("POST", EYE_PATH, Reply.sse(fixture("gemini/stream.sse")))
    key = new_key()

    gemini = client(live_server_url, key)
    response = gemini.models.generate_content(
        model="auto",
        contents=[
            types.Part.from_bytes(data=PNG_BYTES, mime_type="image/png"),
            types.Part.from_bytes(data=JPEG_BYTES, mime_type="image/jpeg"),
            "Which is bigger?",
        ],
        config=types.GenerateContentConfig(system_instruction="Be exact."),
    )

    assert response.text == "The capital of France is Paris."
    assert response.model_version == "google:gemini-eye"
    (sent,) = upstream.requests
    assert sent.path == EYE_PATH
    assert sent.json() == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    inline("image/png", PNG),
                    inline("image/jpeg", JPEG),
                    {"text": "Which is bigger?"},
                ],
            }
        ],
        "systemInstruction": {"parts": [{"text": "Be exact."}]},
    }
    (row,) = wait_rows(1, entry_point="gemini")
    assert (row.status, row.model_name) == (RequestLog.Status.SUCCESS, "gemini-eye")
    assert RequestLog.objects.count() == 1


def test_proto_names_and_url_safe_base64_are_read_as_google_reads_them(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    seeing_registry(upstream)
    upstream.reply("POST", EYE_PATH, Reply.sse(fixture("gemini/stream.sse")))
    key = new_key()
    url_safe = base64.urlsafe_b64encode(PNG_BYTES).decode().rstrip("=")
    assert url_safe != PNG.rstrip("=")
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [{"inline_data": {"mime_type": "image/png", "data": url_safe}}],
            }
        ]
    }

    response = post(live_server_url, body, key)

    assert response.status_code == 200, response.text
    (sent,) = upstream.requests
    assert sent.json() == {"contents": [{"role": "user", "parts": [inline("image/png", PNG)]}]}
    (row,) = wait_rows(1, request_id=response.headers["x-orchestrator-request-id"])
    assert (row.entry_point, row.status) == ("gemini", RequestLog.Status.SUCCESS)


def test_a_request_no_model_can_read_is_refused_and_logged(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()
    body = {"contents": [{"role": "user", "parts": [{"text": "What?"}, inline("image/png", PNG)]}]}

    response = post(live_server_url, body, key)

    assert response.status_code == 400, response.text
    request_id = response.headers["x-orchestrator-request-id"]
    assert response.json() == {
        "error": {
            "code": 400,
            "message": NO_READER,
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id}
            ],
        }
    }
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.error_code) == (
        "gemini",
        "invalid",
        "IMAGES_NOT_SUPPORTED",
    )
    assert RequestLog.objects.count() == 1
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [
                            {"text": "What is this?"},
                            {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a"}},
                        ],
                    }
                ]
            },
            "contents[0].parts[1].fileData: file URIs are not supported: this gateway does not "
            "fetch files or images; send an image inline as inlineData (mimeType and base64 data)",
        ),
        (
            {
                "contents": [
                    {
                        "parts": [
                            {"file_data": {"mime_type": "image/png", "file_uri": "gs://b/a.png"}}
                        ]
                    }
                ]
            },
            "contents[0].parts[0].fileData: file URIs are not supported",
        ),
        (
            {"contents": [{"role": "user", "parts": [inline("application/pdf", PNG)]}]},
            "contents[0].parts[0].inlineData: media type must be one of image/png, image/jpeg, "
            "image/gif, image/webp, not 'application/pdf'",
        ),
        (
            {"contents": [{"role": "user", "parts": [inline("image/png", "not base64!")]}]},
            "contents[0].parts[0].inlineData: image data is not valid base64",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"inlineData": "iVBO"}]}]},
            "contents[0].parts[0].inlineData: must be an object with mimeType and data",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "Look."}]},
                    {"role": "model", "parts": [inline("image/png", PNG)]},
                ]
            },
            "contents[1].parts[0].inlineData: images are accepted in user turns only, not in "
            "model turns",
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "Look."}]}],
                "systemInstruction": {"parts": [inline("image/png", PNG)]},
            },
            "systemInstruction.parts[0].inlineData: images are accepted in user turns only, not "
            "in systemInstruction",
        ),
    ],
    ids=["file-data", "file-data-proto", "media-type", "base64", "blob-string", "model", "system"],
)
def test_an_image_the_door_cannot_pass_on_is_refused_naming_the_part(
    live_server_url: str, upstream: UpstreamServer, body: Any, message: str
) -> None:
    seeing_registry(upstream)
    key = new_key()

    response = post(live_server_url, body, key)

    assert response.status_code == 400, response.text
    request_id = response.headers["x-orchestrator-request-id"]
    got = response.json()
    assert (got["error"]["code"], got["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert got["error"]["message"].startswith(message)
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.error_code) == ("gemini", "invalid", "INVALID_REQUEST")
    assert upstream.requests == []


def test_count_tokens_counts_each_image_as_the_pipeline_plans_it(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    seeing_registry(upstream)
    key = new_key()

    gemini = client(live_server_url, key)
    counted = gemini.models.count_tokens(
        model="auto",
        contents=[types.Part.from_bytes(data=PNG_BYTES, mime_type="image/png"), "What is it?"],
    )

    assert counted.total_tokens == tokens_estimate("user: What is it?") + 1600
    assert upstream.requests == []
