"""The seed's error codes on the SDK doors and the chat: a named model that is disabled is
`MODEL_UNAVAILABLE` naming the model and the reason (each door's 503), and a request no window
can hold is `TOKEN_LIMIT_EXCEEDED` with the numbers (each door's 400), before any call."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async

from providers.models import LLMModel
from tests.chat.test_consumer import ask, connect, frames_until, wait_log
from tests.providers.upstream_server import UpstreamServer
from tests.routing.conftest import _fresh_routing_cache  # noqa: F401  (autouse)
from tests.routing.gateway_support import gateway_registry, new_key, wait_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

UNAVAILABLE = "model 'premium:big' is unavailable: model disabled"
TOO_LONG = "more than the context window of any enabled model (8192 tokens)"


def post(url: str, path: str, body: Any, key: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{url}{path}", content=json.dumps(body), headers=headers, timeout=30)


def test_sdk_doors_answer_model_unavailable_and_token_limit_in_their_own_shape(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)  # alpha and beta: 8192-token windows; premium:big is disabled
    key = new_key()
    hello = [{"role": "user", "content": "hi"}]
    contents = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}

    anthropic_off = post(
        live_server_url,
        "/v1/messages",
        {"model": "premium:big", "max_tokens": 5, "messages": hello},
        key,
    )
    anthropic_long = post(
        live_server_url,
        "/v1/messages",
        {"model": "auto", "max_tokens": 1_000_000, "messages": hello},
        key,
    )
    gemini_off = post(live_server_url, "/v1beta/models/premium:big:generateContent", contents, key)
    gemini_long = post(
        live_server_url,
        "/v1beta/models/auto:generateContent",
        contents | {"generationConfig": {"maxOutputTokens": 1_000_000}},
        key,
    )
    ollama_off = post(
        live_server_url,
        "/api/chat",
        {"model": "premium:big", "messages": hello, "stream": False},
        key,
    )
    ollama_long = post(
        live_server_url,
        "/api/chat",
        {
            "model": "auto",
            "messages": hello,
            "stream": False,
            "options": {"num_predict": 1_000_000},
        },
        key,
    )

    assert anthropic_off.status_code == 503, anthropic_off.text
    assert anthropic_off.json()["error"] == {"type": "overloaded_error", "message": UNAVAILABLE}
    assert anthropic_long.status_code == 400, anthropic_long.text
    assert anthropic_long.json()["error"]["type"] == "invalid_request_error"
    assert TOO_LONG in anthropic_long.json()["error"]["message"]
    assert gemini_off.status_code == 503, gemini_off.text
    error = gemini_off.json()["error"]
    assert (error["code"], error["status"], error["message"]) == (503, "UNAVAILABLE", UNAVAILABLE)
    assert gemini_long.status_code == 400, gemini_long.text
    assert gemini_long.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert TOO_LONG in gemini_long.json()["error"]["message"]
    assert ollama_off.status_code == 503, ollama_off.text
    assert ollama_off.json() == {"error": UNAVAILABLE}
    assert ollama_long.status_code == 400, ollama_long.text
    assert TOO_LONG in ollama_long.json()["error"]
    assert upstream.requests == []
    rows = wait_rows(6)
    assert sorted((r.entry_point, r.status, r.error_code) for r in rows) == [
        ("anthropic", "error", "MODEL_UNAVAILABLE"),
        ("anthropic", "invalid", "TOKEN_LIMIT_EXCEEDED"),
        ("gemini", "error", "MODEL_UNAVAILABLE"),
        ("gemini", "invalid", "TOKEN_LIMIT_EXCEEDED"),
        ("ollama", "error", "MODEL_UNAVAILABLE"),
        ("ollama", "invalid", "TOKEN_LIMIT_EXCEEDED"),
    ]


async def test_the_chat_names_a_disabled_model_as_unavailable(upstream: UpstreamServer) -> None:
    await database_sync_to_async(gateway_registry)(upstream)
    _, socket = await connect("ana")

    await socket.send_json_to(ask("hi", model="premium:big"))
    frames = await frames_until(socket, "chat.error", "chat.done")

    error = frames[-1]
    assert (error["type"], error["code"], error["message"]) == (
        "chat.error",
        "MODEL_UNAVAILABLE",
        UNAVAILABLE,
    )
    row = await wait_log(error["request_id"])
    assert (row.status, row.error_code) == ("error", "MODEL_UNAVAILABLE")
    assert await LLMModel.objects.filter(provider__name="premium", enabled=False).aexists()
    assert upstream.requests == []
    await socket.disconnect()
