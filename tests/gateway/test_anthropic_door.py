"""The Anthropic Messages door (`/v1/messages`, `/v1/messages/count_tokens`): the official
anthropic SDK against the live web process, the exact bytes of its answers and errors, and the
one request-log row of every request, a client's hang-up included."""

from __future__ import annotations

import contextlib
import io
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from asgiref.sync import sync_to_async

from analytics.models import RequestLog
from analytics.pricing import Prices, cost_usd, tokens_estimate, usage_estimate
from orchestrator_site.asgi import application
from providers.adapters.types import Usage
from tests.asgi_client import asgi_request
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.conftest import _fresh_routing_cache  # noqa: F401  (autouse)
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse
from tests.routing.test_client_disconnect import (
    assert_closed,
    budget_with_period,
    eventually,
    locked,
    raw_post,
    read_until,
    waiting_on_locks,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = "/v1/messages"
ALPHA_PRICES = Prices(Decimal("1.25"), Decimal("10"))


def client(live_server_url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live_server_url, api_key=key, max_retries=0)


def frames(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The `(event, data)` pairs of an SSE body, each frame exactly `event: …\\ndata: …`."""
    assert raw.endswith(b"\n\n")
    pairs = []
    for frame in raw[:-2].split(b"\n\n"):
        event_line, data_line = frame.split(b"\n")
        assert event_line.startswith(b"event: ") and data_line.startswith(b"data: ")
        pairs.append((event_line[7:].decode(), json.loads(data_line[6:])))
    return pairs


def post(live_server_url: str, body: Any, *, key: str | None, **headers: str) -> httpx.Response:
    if key is not None:
        headers["x-api-key"] = key
    return httpx.post(f"{live_server_url}{MESSAGES}", json=body, headers=headers, timeout=30)


def test_sdk_non_streamed_message_with_system_turns_and_sampling(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST", chat_path("alpha"), Reply.sse(openai_sse(["Hel", "lo!"], usage=(1000, 200)))
    )
    key = new_key()

    raw = client(live_server_url, key).messages.with_raw_response.create(
        model="auto",
        max_tokens=64,
        system="Be brief.",
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
            {"role": "system", "content": "Answer in English."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": "hello"}],
            },
        ],
        stop_sequences=["END"],
        metadata={"user_id": "u-7"},
        # Older SDKs had these as arguments; this one sends them as extra fields.
        extra_body={"temperature": 0.5, "top_p": 0.9},
    )
    message = raw.parse()

    assert message.id == f"msg_{raw.headers['x-orchestrator-request-id'].replace('-', '')}"
    assert (message.type, message.role, message.model) == (
        "message",
        "assistant",
        "alpha:alpha-model",
    )
    assert [(block.type, block.text) for block in message.content] == [("text", "Hello!")]  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (1000, 200)
    assert raw.headers["request-id"] == raw.headers["x-orchestrator-request-id"]
    assert raw.headers["x-orchestrator-model"] == "alpha:alpha-model"
    assert Decimal(message.model_extra["orchestrator"]["cost_usd"]) == Decimal("0.00325")  # type: ignore[index]
    (sent,) = [r.json() for r in upstream.requests if r.path == chat_path("alpha")]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "Say\n\nhello"},
    ]
    assert (sent["max_tokens"], sent["stop"], sent["temperature"], sent["top_p"]) == (
        64,
        ["END"],
        0.5,
        0.9,
    )
    (row,) = wait_rows(1, request_id=raw.headers["x-orchestrator-request-id"])
    assert (row.entry_point, row.status) == ("anthropic", RequestLog.Status.SUCCESS)
    assert (row.input_tokens, row.output_tokens) == (1000, 200)
    assert row.cost_usd == Decimal("0.00325000")
    assert (row.session_id, row.requested_model) == ("u-7", "auto")
    assert row.api_key_id is not None


def test_sdk_streamed_message_and_its_final_usage(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["a", "b", "c"], usage=(7, 3))))
    key = new_key()

    with client(live_server_url, key).messages.stream(
        model="auto",
        max_tokens=16,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[{"role": "user", "content": "abc"}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert "".join(pieces) == "abc"
    assert final.content[0].text == "abc"  # type: ignore[union-attr]
    assert (final.stop_reason, final.model) == ("end_turn", "alpha:alpha-model")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 3)
    (sent,) = [r.json() for r in upstream.requests if r.path == chat_path("alpha")]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief.\n\nBe kind."}
    (row,) = wait_rows(1, entry_point="anthropic")
    assert (row.status, row.input_tokens, row.output_tokens) == ("success", 7, 3)
    assert row.cost_usd == cost_usd(Usage(input=7, output=3), ALPHA_PRICES)


async def test_async_sdk_with_bearer_auth_a_policy_and_a_named_model(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    await sync_to_async(gateway_registry)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["alpha"], usage=(5, 1))))
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["beta here"], usage=(5, 2))))
    key = await sync_to_async(new_key)()
    aclient = anthropic.AsyncAnthropic(base_url=live_server_url, auth_token=key, max_retries=0)
    hi: Any = [{"role": "user", "content": "hi"}]

    by_policy = await aclient.messages.create(model="gateway-policy", max_tokens=8, messages=hi)
    named = await aclient.messages.create(model="beta:beta-model", max_tokens=8, messages=hi)
    async with aclient.messages.stream(model="beta-model", max_tokens=8, messages=hi) as stream:
        streamed = await stream.get_final_message()

    assert (by_policy.model, by_policy.content[0].text) == ("alpha:alpha-model", "alpha")  # type: ignore[union-attr]
    assert (named.model, named.content[0].text) == ("beta:beta-model", "beta here")  # type: ignore[union-attr]
    assert streamed.content[0].text == "beta here"  # type: ignore[union-attr]
    rows = await sync_to_async(wait_rows)(3, entry_point="anthropic")
    assert [r.requested_model for r in rows] == ["gateway-policy", "beta:beta-model", "beta-model"]
    assert [r.model_name for r in rows] == ["alpha-model", "beta-model", "beta-model"]


def test_count_tokens_is_the_gateways_estimate_and_calls_nothing(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()

    counted = client(live_server_url, key).messages.count_tokens(
        model="auto",
        system="Be brief.",
        messages=[{"role": "user", "content": "How many tokens is this?"}],
    )

    expected = tokens_estimate("system: Be brief.\n\nuser: How many tokens is this?")
    assert counted.input_tokens == expected
    assert upstream.requests == []
    time.sleep(0.3)
    assert RequestLog.objects.count() == 0


def test_a_length_stop_is_max_tokens(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    cut = openai_sse(["Once upon"], usage=(4, 2)).replace(
        b'"finish_reason": "stop"', b'"finish_reason": "length"'
    )
    upstream.reply("POST", chat_path("alpha"), Reply.sse(cut))
    key = new_key()

    message = client(live_server_url, key).messages.create(
        model="auto", max_tokens=2, messages=[{"role": "user", "content": "A story"}]
    )

    assert message.stop_reason == "max_tokens"


def test_the_streamed_wire_format_event_by_event(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    # Pieces 50 ms apart: each upstream read, and so each delta, holds one.
    answer = openai_sse(["Hel", "lo"], usage=(9, 2))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(answer, chunk_delay_s=0.05))
    key = new_key()

    response = post(
        live_server_url,
        {
            "model": "auto",
            "max_tokens": 32,
            "stream": True,
            "messages": [{"role": "user", "content": "Say hello"}],
        },
        key=key,
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    request_id = response.headers["request-id"]
    events = frames(response.content)
    message_id = f"msg_{request_id.replace('-', '')}"
    extension = events[-2][1].pop("orchestrator")
    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": "alpha:alpha-model",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hel"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "lo"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "input_tokens": 9,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 2,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert extension["request_id"] == request_id
    # Compact JSON, one frame per event, as Anthropic sends them.
    assert response.content.startswith(
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"'
    )
    assert b'event: ping\ndata: {"type":"ping"}\n\n' in response.content
    assert response.content.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_the_non_streamed_wire_format(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi!"], usage=(3, 1))))
    key = new_key()

    response = post(
        live_server_url,
        {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]},
        key=key,
    )

    body = response.json()
    extension = body.pop("orchestrator")
    request_id = response.headers["request-id"]
    assert body == {
        "id": f"msg_{request_id.replace('-', '')}",
        "type": "message",
        "role": "assistant",
        "model": "alpha:alpha-model",
        "content": [{"type": "text", "text": "Hi!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        },
    }
    assert (extension["request_id"], extension["cost_state"]) == (request_id, "reported")


def test_an_error_after_the_first_token_is_an_error_event(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    # The role chunk and "Hel", then the connection is reset.
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["Hel", "lo"], usage=(9, 2)), reset_after_chunks=2),
    )
    key = new_key()
    body: Any = {
        "model": "auto",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "Say hello"}],
    }

    response = post(live_server_url, body | {"stream": True}, key=key)
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        client(live_server_url, key).messages.stream(**body) as stream,
    ):
        stream.until_done()

    assert response.status_code == 200
    events = frames(response.content)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ]
    error = events[-1][1]
    assert error["type"] == "error"
    assert error["request_id"] == response.headers["request-id"]
    # The upstream cut off: no model could finish (MODEL_UNAVAILABLE, 503).
    assert error["error"]["type"] == "overloaded_error"
    assert error["error"]["message"]
    assert raised.value.body["error"]["type"] == error["error"]["type"]  # type: ignore[index]
    rows = wait_rows(2, entry_point="anthropic")
    assert [r.status for r in rows] == ["partial", "partial"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: must be a JSON object"),
        ({"max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}, "model: is required"),
        (
            {"model": "auto", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: is required",
        ),
        (
            {"model": "auto", "max_tokens": "8", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: must be an integer from 1 to 1,000,000",
        ),
        ({"model": "auto", "max_tokens": 8, "messages": "x"}, "messages: must be a non-empty list"),
        (
            {"model": "auto", "max_tokens": 8, "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].role: must be 'user', 'assistant' or 'system'",
        ),
        (
            {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": 5}]},
            "messages[0].content: must be a string or a list of content blocks",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
                "temperature": "hot",
            },
            "temperature: must be a number between 0 and 1",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
                "stream": "yes",
            },
            "stream: must be a boolean",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
                "stop_sequences": "END",
            },
            "stop_sequences: must be a list of non-empty strings",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
                "metadata": {"user_id": 5},
            },
            "metadata.user_id: must be a string",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
                "system": [{"type": "text", "text": 1}],
            },
            "system[0].text: must be a string",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools[0].type: 'web_search_20250305' is not supported: this gateway offers its "
            "models custom tools only (name, description, input_schema), not tools Anthropic's "
            "servers run or define (web search, code execution, computer use, bash, text editor)",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 8,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {
                                "type": "document",
                                "source": {
                                    "type": "base64",
                                    "media_type": "application/pdf",
                                    "data": "AA==",
                                },
                            },
                        ],
                    }
                ],
            },
            "messages[0].content[1]: document blocks are not supported: this gateway passes text "
            "and images only to its models, so a request with one is refused rather than answered "
            "without it",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 8,
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
                ],
            },
            "messages[1].content[0]: tool_result blocks are read only in user turns",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": [{"type": "thinking", "thinking": "hm"}]}],
            },
            "messages[0].content[0].type: only 'text', 'image', 'tool_use' (assistant turns) and "
            "'tool_result' (user turns) content blocks are supported (no documents, thinking or "
            "server tool blocks)",
        ),
    ],
    ids=[
        "not-an-object",
        "no-model",
        "no-max-tokens",
        "max-tokens-string",
        "messages-string",
        "tool-role",
        "content-number",
        "temperature-string",
        "stream-string",
        "stop-sequences-string",
        "user-id-number",
        "system-block-text",
        "server-tool",
        "document",
        "tool-result-in-assistant-turn",
        "thinking",
    ],
)
def test_bad_input_is_an_invalid_request_error_and_logged(
    live_server_url: str, upstream: UpstreamServer, body: Any, message: str
) -> None:
    gateway_registry(upstream)
    key = new_key()

    response = post(live_server_url, body, key=key)

    assert response.status_code == 400
    request_id = response.headers["request-id"]
    got = response.json()
    assert got["type"] == "error"
    assert got["request_id"] == request_id
    assert got["error"]["type"] == "invalid_request_error"
    assert got["error"]["message"].startswith(message)
    assert set(got) == {"type", "error", "request_id"}
    assert set(got["error"]) == {"type", "message"}
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.error_code) == (
        "anthropic",
        "invalid",
        "INVALID_REQUEST",
    )
    assert upstream.requests == []


def test_the_sdk_sees_a_bad_request_error(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    key = new_key()

    with pytest.raises(anthropic.BadRequestError) as raised:
        client(live_server_url, key).messages.create(
            model="auto",
            max_tokens=8,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://example.com/cat.png"},
                        }
                    ],
                }
            ],
        )

    assert raised.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert raised.value.body["error"]["message"] == (  # type: ignore[index]
        "messages[0].content[0].source: image source type 'url' is not supported: this gateway "
        "does not fetch images (URLs or files); send the image inline as "
        '{"type": "base64", "media_type": "image/png", "data": "<base64>"}'
    )


def test_an_unknown_model_is_refused_and_logged(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()

    response = post(
        live_server_url,
        {"model": "claude-nope", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]},
        key=key,
    )

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "unknown model or policy 'claude-nope'",
        },
        "request_id": response.headers["request-id"],
    }
    (row,) = wait_rows(1, entry_point="anthropic")
    assert (row.status, row.requested_model) == ("invalid", "claude-nope")


def test_a_missing_or_wrong_key_is_an_authentication_error(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    body: Any = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}

    missing = post(live_server_url, body, key=None)
    wrong = post(live_server_url, body, key=None, authorization="Bearer orch-wrong")
    with pytest.raises(anthropic.AuthenticationError):
        client(live_server_url, "orch-wrong").messages.create(**body)

    expected = {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "Missing, invalid or revoked API key (x-api-key or Authorization: Bearer).",
        },
    }
    assert (missing.status_code, missing.json()) == (401, expected)
    assert (wrong.status_code, wrong.json()) == (401, expected)
    time.sleep(0.3)
    assert RequestLog.objects.count() == 0


def test_a_rate_limited_key_gets_a_rate_limit_error(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["ok"], usage=(3, 1))))
    key = new_key(rpm_limit=1)
    body = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}

    first = post(live_server_url, body, key=key)
    second = post(live_server_url, body, key=key)

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["error"]["type"] == "rate_limit_error"
    assert int(second.headers["retry-after"]) >= 1
    rows = wait_rows(2, entry_point="anthropic")
    assert [r.status for r in rows] == ["success", "rate_limited"]


def test_an_oversized_body_is_request_too_large(live_server_url: str, settings: Any) -> None:
    # The web process's limit is the default 2 MiB.
    payload = json.dumps(
        {
            "model": "auto",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "x" * 3_000_000}],
        }
    ).encode()

    declared = httpx.post(
        f"{live_server_url}{MESSAGES}",
        content=payload,
        headers={"x-api-key": "orch-any", "content-type": "application/json"},
        timeout=30,
    )
    chunked = httpx.post(
        f"{live_server_url}{MESSAGES}",
        content=iter([payload[:1_000_000], payload[1_000_000:]]),
        headers={"x-api-key": "orch-any", "content-type": "application/json"},
        timeout=30,
    )

    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert declared.status_code == 413
    assert declared.json() == {
        "type": "error",
        "error": {
            "type": "request_too_large",
            "message": f"Request body of {len(payload)} bytes is over the limit of {limit} bytes.",
        },
    }
    assert chunked.status_code == 413
    assert chunked.json()["error"] == {
        "type": "request_too_large",
        "message": f"Request body is over the limit of {limit} bytes.",
    }


def test_other_methods_and_paths_answer_in_anthropics_shape(live_server_url: str) -> None:
    get = httpx.get(f"{live_server_url}{MESSAGES}", timeout=30)
    batches = httpx.post(f"{live_server_url}/v1/messages/batches", json={}, timeout=30)

    assert (get.status_code, get.json()) == (
        405,
        {"type": "error", "error": {"type": "invalid_request_error", "message": "Use POST."}},
    )
    assert (batches.status_code, batches.json()) == (
        404,
        {
            "type": "error",
            "error": {
                "type": "not_found_error",
                "message": "Unknown endpoint /v1/messages/batches.",
            },
        },
    )


async def test_a_foreign_host_is_refused_in_anthropics_shape() -> None:
    response = await asgi_request(application, "POST", MESSAGES, host=b"evil.example")

    assert response.status == 400
    assert json.loads(response.body) == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Host 'evil.example' is not served here (ALLOWED_HOSTS).",
        },
    }


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_hang_up_mid_answer_leaves_one_cancelled_row_charged_for_what_was_received(
    live_server_url: str, upstream: UpstreamServer, streamed: bool
) -> None:
    budget, _ = budget_with_period()
    gateway_registry(upstream)
    # The role chunk and "Hel", then silence.
    answer = openai_sse(["Hel", "lo", " there"], usage=(9, 3))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(answer, stall_after_chunks=2, stall_s=5))
    key = new_key()
    body = {
        "model": "auto",
        "max_tokens": 100,
        "stream": streamed,
        "messages": [{"role": "user", "content": "Say hello"}],
    }

    sock = raw_post(live_server_url, MESSAGES, body, key)
    if streamed:
        read_until(sock, b'"text":"Hel"')
    else:
        deadline = time.monotonic() + 10
        while not upstream.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # "Hel" has reached the gateway
    sock.close()

    (row,) = assert_closed([budget], 1)
    assert (row.entry_point, row.status, row.error_code) == ("anthropic", "cancelled", "CANCELLED")
    assert row.cost_state == "estimated"
    counted = usage_estimate(prompt="user: Say hello", completion="Hel")
    assert (row.input_tokens, row.output_tokens) == (counted.input, counted.output)
    assert row.cost_usd == cost_usd(counted, ALPHA_PRICES)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_hang_up_while_the_caller_is_being_authenticated_leaves_one_cancelled_row(
    live_server_url: str, upstream: UpstreamServer, streamed: bool
) -> None:
    """The hang-up waits until the door has handed the request to the pipeline (its path is
    one of routing/hang_up.py's DOOR_PATHS), so the request still ends as one row."""
    budget, _ = budget_with_period()
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi"], usage=(3, 1))))
    key = new_key()  # never looked up yet: the server reads it from the database
    body = {
        "model": "auto",
        "max_tokens": 100,
        "stream": streamed,
        "messages": [{"role": "user", "content": "Say hello"}],
    }

    with locked("LOCK TABLE routing_apikey IN ACCESS EXCLUSIVE MODE"):
        sock = raw_post(live_server_url, MESSAGES, body, key)
        eventually(lambda: waiting_on_locks() == 1)
        sock.close()
        time.sleep(0.3)  # the server sees the hang-up while the key's lookup still waits

    (row,) = assert_closed([budget], 1)
    assert (row.entry_point, row.status, row.cost_usd) == ("anthropic", "cancelled", None)
    assert upstream.requests == []


def test_the_sdk_snippet_of_the_docs_runs(live_server_url: str, upstream: UpstreamServer) -> None:
    """docs/api.md's anthropic SDK example, run as written against the live server."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text[text.index("## Anthropic Messages") :]
    start = section.index("```python\n") + len("```python\n")
    snippet = section[start : section.index("\n```", start)]
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi", "!"], usage=(4, 2))))
    key = new_key()
    code = snippet.replace("http://127.0.0.1:8000", live_server_url).replace("<the key>", key)
    printed = io.StringIO()

    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/api.md", "exec"), {})

    assert printed.getvalue().startswith("Hi! ")
    assert printed.getvalue().endswith("Hi!")
    rows = wait_rows(2, entry_point="anthropic")
    assert [r.status for r in rows] == ["success", "success"]
