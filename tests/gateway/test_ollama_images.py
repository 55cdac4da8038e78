"""Images at the Ollama door: `images` (base64, no media type) on a chat message and on a
generate request, through the `ollama` library and the live server, to a model that reads
images; refused naming the field when they cannot be read, and with IMAGES_NOT_SUPPORTED when no
enabled model reads them. The upstream is OpenAI-compatible: it receives data URLs."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import ollama
import pytest

from analytics.models import RequestLog
from tests.gateway.images_support import GIF, PNG, b64, image_part, images_registry
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def client(live_server_url: str, key: str) -> ollama.Client:
    return ollama.Client(host=live_server_url, headers={"Authorization": f"Bearer {key}"})


def post(live_server_url: str, path: str, body: Any, key: str) -> httpx.Response:
    return httpx.post(
        f"{live_server_url}{path}",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_chat_and_generate_images_reach_the_model_that_reads_them_intact(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    images_registry(upstream, alpha_reads_images=True)
    upstream.reply(
        "POST", chat_path("alpha"), Reply.sse(openai_sse(["Two dots."], usage=(3210, 3)))
    )
    key = new_key()
    ollama_client = client(live_server_url, key)

    # The library base64-encodes the bytes it is given.
    chat = ollama_client.chat(
        model="auto",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is in these?", "images": [PNG, GIF]},
        ],
        stream=False,
    )
    generated = list(
        ollama_client.generate(model="auto", prompt="And this?", images=[b64(GIF)], stream=True)
    )

    assert chat.message.content == "Two dots."
    assert "".join(p.response or "" for p in generated) == "Two dots."
    first, second = [r.json() for r in upstream.requests]
    assert first["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                image_part("image/png", PNG),
                image_part("image/gif", GIF),
                {"type": "text", "text": "What is in these?"},
            ],
        },
    ]
    urls = [part["image_url"]["url"] for part in first["messages"][1]["content"][:2]]
    assert [base64.b64decode(url.split(",", 1)[1]) for url in urls] == [PNG, GIF]
    assert second["messages"] == [
        {
            "role": "user",
            "content": [image_part("image/gif", GIF), {"type": "text", "text": "And this?"}],
        }
    ]
    rows = wait_rows(2)
    time.sleep(0.3)  # a third row, if one were coming, would land by now
    assert RequestLog.objects.count() == 2
    assert [(r.entry_point, r.status, r.model_name) for r in rows] == [
        ("ollama", RequestLog.Status.SUCCESS, "alpha-model")
    ] * 2


def test_show_lists_vision_for_a_model_that_reads_images(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    images_registry(upstream, alpha_reads_images=True)
    ollama_client = client(live_server_url, new_key())

    assert ollama_client.show("alpha:alpha-model").capabilities == ["completion", "vision"]
    assert ollama_client.show("beta-model").capabilities == ["completion"]


def test_images_when_no_enabled_model_reads_them_are_refused_and_logged(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    images_registry(upstream, alpha_reads_images=False)
    key = new_key()

    with pytest.raises(ollama.ResponseError) as refused:
        client(live_server_url, key).chat(
            model="auto",
            messages=[{"role": "user", "content": "What is this?", "images": [PNG]}],
            stream=False,
        )

    assert refused.value.status_code == 400
    assert refused.value.error == (
        "this request carries 1 image, and no enabled model accepts images "
        "(mark one that does in the admin: accepts images)"
    )
    (row,) = wait_rows(1)
    assert (row.entry_point, row.status, row.error_code) == (
        "ollama",
        RequestLog.Status.INVALID,
        "IMAGES_NOT_SUPPORTED",
    )
    assert upstream.requests == []


def _chat(*images: Any, role: str = "user") -> dict[str, Any]:
    return {
        "model": "auto",
        "messages": [{"role": role, "content": "What is this?", "images": list(images)}],
    }


NOT_AN_IMAGE = "is not a PNG, JPEG, GIF or WEBP image (read from its bytes)"
BAD_IMAGES = [
    # (path, body, error)
    (
        "/api/chat",
        _chat(b64(PNG), b64(b"%PDF-1.7")),
        f"messages[0].images[1] {NOT_AN_IMAGE}",
    ),
    ("/api/chat", _chat("not base64!"), "messages[0].images[0] image data is not valid base64"),
    (
        "/api/chat",
        _chat(f"data:image/png;base64,{b64(PNG)}"),
        "messages[0].images[0] image data is not valid base64",
    ),
    (
        "/api/chat",
        _chat(7),
        "messages[0].images[0] image data must be a non-empty base64 string",
    ),
    (
        "/api/chat",
        {"model": "auto", "messages": [{"role": "user", "content": "hi", "images": b64(PNG)}]},
        "messages[0].images must be a list of base64 images",
    ),
    (
        "/api/chat",
        _chat(b64(PNG), role="system"),
        "messages[0].images are read only in user messages, not in system",
    ),
    (
        "/api/chat",
        _chat(b64(PNG), role="assistant"),
        "messages[0].images are read only in user messages, not in assistant",
    ),
    (
        "/api/generate",
        {"model": "auto", "prompt": "What is this?", "images": [b64(b"hello")]},
        f"images[0] {NOT_AN_IMAGE}",
    ),
]


def test_images_that_cannot_be_read_are_refused_naming_the_field(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    images_registry(upstream, alpha_reads_images=True)
    key = new_key()

    answers = [post(live_server_url, path, body, key) for path, body, _ in BAD_IMAGES]

    for answer, (_, _, error) in zip(answers, BAD_IMAGES, strict=True):
        assert answer.status_code == 400, answer.text
        assert answer.json() == {"error": error}
    rows = wait_rows(len(BAD_IMAGES))
    assert len(rows) == len(BAD_IMAGES)
    assert {(r.entry_point, r.status, r.error_code) for r in rows} == {
        ("ollama", "invalid", "INVALID_REQUEST")
    }
    assert upstream.requests == []
