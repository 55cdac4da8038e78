"""Images at the Anthropic door: `image` blocks with a base64 source in user turns reach a model
that accepts images, as Anthropic's own content blocks, through the live web process and the
anthropic SDK; a request no enabled model can read is refused in Anthropic's error shape, and a
URL source, a bad media type or bad base64 is refused naming the block. Each request is logged
exactly once."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import pytest
from django.core.cache import cache

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

MESSAGES = "/v1/messages"
CLAUDE_PATH = "/claude/v1/messages"
# `+` and `/` in standard base64, so a change of alphabet on the way would show.
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\xfb\xff\xbf").decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0\x00\x10JFIF").decode()
NO_READER = (
    "this request carries 1 image, and no enabled model accepts images "
    "(mark one that does in the admin: accepts images)"
)


def image(media_type: str, data: str) -> Any:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def seeing_registry(upstream: UpstreamServer) -> None:
    """`alpha` (text only) first for every task, then `claude:claude-eye`, an Anthropic model
    on the local upstream that accepts images."""
    cache.clear()
    models = upstream_models(upstream)
    provider = Provider.objects.create(
        name="claude", kind="anthropic", base_url=f"{upstream.url}/claude", locality="cloud"
    )
    eye = LLMModel.objects.create(
        provider=provider,
        name="claude-eye",
        tier="standard",
        context_window=200_000,
        input_price_per_mtok_usd=Decimal("3"),
        output_price_per_mtok_usd=Decimal("15"),
        accepts_images=True,
    )
    every_task_to("seeing-policy", models["alpha"], eye)
    settle_config()


def post(live_server_url: str, body: Any, key: str) -> httpx.Response:
    return httpx.post(f"{live_server_url}{MESSAGES}", json=body, headers={"x-api-key": key})


def test_sdk_images_reach_the_model_that_reads_them(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    seeing_registry(upstream)
    upstream.reply("POST", CLAUDE_PATH, Reply.sse(fixture("anthropic/messages_stream.sse")))
    key = new_key()

    raw = anthropic.Anthropic(
        base_url=live_server_url, api_key=key, max_retries=0
    ).messages.with_raw_response.create(
        model="auto",
        max_tokens=64,
        system="Be exact.",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Which"},
                    image("image/png", PNG),
                    {"type": "text", "text": "is bigger?"},
                    image("image/jpeg", JPEG),
                ],
            }
        ],
    )
    message = raw.parse()

    assert message.model == "claude:claude-eye"
    assert [(block.type, block.text) for block in message.content] == [  # type: ignore[union-attr]
        ("text", "The capital of France is Paris.")
    ]
    (sent,) = upstream.requests
    assert sent.path == CLAUDE_PATH
    assert sent.json() == {
        "model": "claude-eye",
        "max_tokens": 64,
        "system": "Be exact.",
        "messages": [
            {
                "role": "user",
                "content": [
                    image("image/png", PNG),
                    image("image/jpeg", JPEG),
                    {"type": "text", "text": "Which\n\nis bigger?"},
                ],
            }
        ],
        "stream": True,
    }
    (row,) = wait_rows(1, request_id=raw.headers["x-orchestrator-request-id"])
    assert (row.entry_point, row.status, row.model_name) == (
        "anthropic",
        RequestLog.Status.SUCCESS,
        "claude-eye",
    )
    assert RequestLog.objects.count() == 1


def test_a_request_no_model_can_read_is_refused_and_logged(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()
    body = {
        "model": "auto",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": [image("image/png", PNG)]}],
    }

    response = post(live_server_url, body, key)

    assert response.status_code == 400, response.text
    request_id = response.headers["request-id"]
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": NO_READER},
        "request_id": request_id,
    }
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.error_code) == (
        "anthropic",
        "invalid",
        "IMAGES_NOT_SUPPORTED",
    )
    assert RequestLog.objects.count() == 1
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("messages", "system", "message"),
    [
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://example.com/cat.png"},
                        },
                    ],
                }
            ],
            None,
            "messages[0].content[1].source: image source type 'url' is not supported: this "
            "gateway does not fetch images (URLs or files); send the image inline as "
            '{"type": "base64", "media_type": "image/png", "data": "<base64>"}',
        ),
        (
            [{"role": "user", "content": [image("image/tiff", PNG)]}],
            None,
            "messages[0].content[0].source: media type must be one of image/png, image/jpeg, "
            "image/gif, image/webp, not 'image/tiff'",
        ),
        (
            [{"role": "user", "content": [image("image/png", "not base64!")]}],
            None,
            "messages[0].content[0].source: image data is not valid base64",
        ),
        (
            [{"role": "user", "content": [{"type": "image", "source": "x"}]}],
            None,
            "messages[0].content[0].source: must be an object",
        ),
        (
            [
                {"role": "user", "content": "Look."},
                {"role": "assistant", "content": [image("image/png", PNG)]},
            ],
            None,
            "messages[1].content[0]: image blocks are accepted in user turns only, not in "
            "assistant turns",
        ),
        (
            [{"role": "system", "content": [image("image/png", PNG)]}],
            None,
            "messages[0].content[0]: image blocks are accepted in user turns only, not in "
            "system turns",
        ),
        (
            [{"role": "user", "content": "Look."}],
            [image("image/png", PNG)],
            "system[0]: image blocks are accepted in user turns only, not in system",
        ),
    ],
    ids=["url", "media-type", "base64", "source-string", "assistant", "system-turn", "system"],
)
def test_an_image_the_door_cannot_pass_on_is_refused_naming_the_block(
    live_server_url: str,
    upstream: UpstreamServer,
    messages: list[dict[str, Any]],
    system: Any,
    message: str,
) -> None:
    seeing_registry(upstream)
    key = new_key()
    body: dict[str, Any] = {"model": "auto", "max_tokens": 8, "messages": messages}
    if system is not None:
        body["system"] = system

    response = post(live_server_url, body, key)

    assert response.status_code == 400, response.text
    request_id = response.headers["request-id"]
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
        "request_id": request_id,
    }
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.error_code) == (
        "anthropic",
        "invalid",
        "INVALID_REQUEST",
    )
    assert upstream.requests == []


def test_count_tokens_counts_each_image_as_the_pipeline_plans_it(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    seeing_registry(upstream)
    key = new_key()

    counted = anthropic.Anthropic(
        base_url=live_server_url, api_key=key, max_retries=0
    ).messages.count_tokens(
        model="auto",
        messages=[
            {
                "role": "user",
                "content": [image("image/png", PNG), {"type": "text", "text": "What is it?"}],
            }
        ],
    )

    assert counted.input_tokens == tokens_estimate("user: What is it?") + 1600
    assert upstream.requests == []
