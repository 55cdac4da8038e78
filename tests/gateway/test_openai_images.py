"""Images at the OpenAI door: `image_url` content parts holding a data URL, through the openai
SDK and the live server, to a model that reads images; refused naming the field when they cannot
be read, and with IMAGES_NOT_SUPPORTED when no enabled model reads them."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import openai
import pytest

from analytics.models import RequestLog
from tests.gateway.images_support import GIF, PNG, data_url, image_part, images_registry
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

QUESTION: list[Any] = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is "},
            {
                "type": "image_url",
                "image_url": {"url": data_url("image/png", PNG), "detail": "low"},
            },
            {"type": "text", "text": "in these?"},
            {"type": "image_url", "image_url": {"url": data_url("image/gif", GIF)}},
        ],
    }
]


def client(live_server_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0)


def test_images_reach_the_model_that_reads_them_intact_before_the_text(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    images_registry(upstream, alpha_reads_images=True)
    upstream.reply(
        "POST", chat_path("alpha"), Reply.sse(openai_sse(["Two dots."], usage=(3210, 3)))
    )
    key = new_key()

    raw = client(live_server_url, key).chat.completions.with_raw_response.create(
        model="auto", messages=QUESTION
    )
    completion = raw.parse()

    assert completion.choices[0].message.content == "Two dots."
    assert completion.model == "alpha:alpha-model"
    (sent,) = [r.json() for r in upstream.requests]
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                image_part("image/png", PNG),
                image_part("image/gif", GIF),
                {"type": "text", "text": "What is in these?"},
            ],
        }
    ]
    urls = [part["image_url"]["url"] for part in sent["messages"][0]["content"][:2]]
    assert [base64.b64decode(url.split(",", 1)[1]) for url in urls] == [PNG, GIF]
    # Beta reads no images: the chain kept alpha alone.
    assert completion.model_extra["orchestrator"]["decision"]["chain"] == ["alpha:alpha-model"]  # type: ignore[index]
    (row,) = wait_rows(1)
    time.sleep(0.3)  # a second row, if one were coming, would land by now
    assert RequestLog.objects.count() == 1
    assert (row.entry_point, row.status) == ("openai", RequestLog.Status.SUCCESS)
    assert str(row.request_id) == raw.headers["x-orchestrator-request-id"]
    assert (row.input_tokens, row.output_tokens) == (3210, 3)


def test_images_when_no_enabled_model_reads_them_are_images_not_supported(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    images_registry(upstream, alpha_reads_images=False)
    key = new_key()

    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server_url, key).chat.completions.create(model="auto", messages=QUESTION)

    (row,) = wait_rows(1)
    assert refused.value.status_code == 400
    assert refused.value.body == {
        "message": "this request carries 2 images, and no enabled model accepts images "
        "(mark one that does in the admin: accepts images)",
        "type": "invalid_request_error",
        "param": None,
        "code": "IMAGES_NOT_SUPPORTED",
        "trace_id": str(row.request_id),
    }
    assert (row.entry_point, row.status, row.error_code) == (
        "openai",
        RequestLog.Status.INVALID,
        "IMAGES_NOT_SUPPORTED",
    )
    assert upstream.requests == []


def _asking(*parts: dict[str, Any], role: str = "user") -> list[Any]:
    return [{"role": role, "content": [{"type": "text", "text": "What is this?"}, *parts]}]


def _image(url: str, **more: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **more}}


PNG_URL = data_url("image/png", PNG)
BAD_IMAGES = [
    # (messages, param, message)
    (
        _asking(_image("https://example.com/cat.png")),
        "messages[0].content[1].image_url.url",
        "image URLs are not fetched by this gateway; send the image inline "
        "(a data:image/...;base64,... URL or base64 data)",
    ),
    (
        _asking(_image(data_url("image/tiff", PNG))),
        "messages[0].content[1].image_url.url",
        "media type must be one of image/png, image/jpeg, image/gif, image/webp, not 'image/tiff'",
    ),
    (
        _asking(_image("data:image/png;base64,not base64!")),
        "messages[0].content[1].image_url.url",
        "image data is not valid base64",
    ),
    (
        _asking(_image(PNG_URL, detail="ultra")),
        "messages[0].content[1].image_url.detail",
        "must be one of auto, low, high",
    ),
    (
        _asking({"type": "image_url", "image_url": PNG_URL}),
        "messages[0].content[1].image_url",
        "must be an object with a url",
    ),
    (
        _asking(_image(PNG_URL), role="system"),
        "messages[0].content[1]",
        "images are read only in user messages, not in system",
    ),
    (
        [{"role": "user", "content": "Hi"}, *_asking(_image(PNG_URL), role="assistant")],
        "messages[1].content[1]",
        "images are read only in user messages, not in assistant",
    ),
    (
        _asking({"type": "input_audio", "input_audio": {"data": "aGk=", "format": "wav"}}),
        "messages[0].content[1]",
        "'input_audio' parts are not supported: only text and image_url content parts",
    ),
]


def test_images_that_cannot_be_read_are_refused_naming_the_field(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    images_registry(upstream, alpha_reads_images=True)
    key = new_key()

    answers = [
        httpx.post(
            f"{live_server_url}/v1/chat/completions",
            json={"model": "auto", "messages": messages},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        for messages, _, _ in BAD_IMAGES
    ]
    with pytest.raises(openai.BadRequestError) as by_sdk:
        client(live_server_url, key).chat.completions.create(
            model="auto", messages=_asking(_image("http://10.0.0.1/cat.png"))
        )

    assert by_sdk.value.status_code == 400
    assert by_sdk.value.param == "messages[0].content[1].image_url.url"
    assert by_sdk.value.code == "INVALID_REQUEST"
    for answer, (_, param, message) in zip(answers, BAD_IMAGES, strict=True):
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert (error["code"], error["param"]) == ("INVALID_REQUEST", param)
        assert error["message"] == f"{param}: {message}"
    rows = wait_rows(len(BAD_IMAGES) + 1)
    assert len(rows) == len(BAD_IMAGES) + 1
    assert {(r.entry_point, r.status, r.error_code) for r in rows} == {
        ("openai", "invalid", "INVALID_REQUEST")
    }
    assert upstream.requests == []
