"""The Gemini door (`/v1beta/models/{model}:generateContent`, `:streamGenerateContent`,
`/v1beta/models`): the real google-genai client against the live web process (pointed at it by
`http_options.base_url`, so it never reaches Google), the exact bytes of its answers and errors,
and the one request-log row of every request, a client's hang-up included."""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from analytics.models import RequestLog
from analytics.pricing import Prices, cost_usd, usage_estimate
from gateway.gemini import method_split
from orchestrator_site.asgi import application
from orchestrator_site.logging import JsonFormatter
from providers.adapters.types import Usage
from tests.asgi_client import asgi_request
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.conftest import _fresh_routing_cache  # noqa: F401  (autouse)
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse
from tests.routing.test_client_disconnect import (
    assert_closed,
    budget_with_period,
    raw_post,
    read_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GENERATE = "/v1beta/models/auto:generateContent"
STREAM = "/v1beta/models/auto:streamGenerateContent"
ALPHA_PRICES = Prices(Decimal("1.25"), Decimal("10"))
AUTH_ERROR = {
    "error": {
        "code": 401,
        "message": "Missing, invalid or revoked API key (x-goog-api-key header or key= parameter).",
        "status": "UNAUTHENTICATED",
    }
}


def client(live_server_url: str, key: str) -> genai.Client:
    return genai.Client(
        vertexai=False,
        api_key=key,
        http_options=types.HttpOptions(base_url=live_server_url, api_version="v1beta"),
    )


def post(
    live_server_url: str, path: str, body: Any, *, key: str | None, **headers: str
) -> httpx.Response:
    if key is not None:
        headers["x-goog-api-key"] = key
    return httpx.post(f"{live_server_url}{path}", json=body, headers=headers, timeout=30)


def hello(text: str = "Say hello") -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def request_info(request_id: str) -> list[dict[str, str]]:
    return [{"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id}]


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """The events of an SSE body, each exactly `data: <json>\\r\\n\\r\\n`, as Google sends."""
    assert raw.endswith(b"\r\n\r\n")
    events = []
    for frame in raw[:-4].split(b"\r\n\r\n"):
        assert frame.startswith(b"data: ") and b"\n" not in frame
        events.append(json.loads(frame[6:]))
    return events


def chunk(text: str, model: str, response_id: str) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}],
        "modelVersion": model,
        "responseId": response_id,
    }


def last_chunk(
    model: str, response_id: str, usage: tuple[int, int], finish: str = "STOP"
) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": ""}], "role": "model"},
                "finishReason": finish,
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": usage[0],
            "candidatesTokenCount": usage[1],
            "totalTokenCount": usage[0] + usage[1],
        },
        "modelVersion": model,
        "responseId": response_id,
    }


def test_model_and_method_split_at_the_last_colon() -> None:
    assert method_split("auto:generateContent") == ("auto", "generateContent")
    assert method_split("openai:gpt-4o:generateContent") == ("openai:gpt-4o", "generateContent")
    assert method_split("ollama:llama3.2:3b:streamGenerateContent") == (
        "ollama:llama3.2:3b",
        "streamGenerateContent",
    )
    assert method_split("openai:gpt-4o") == ("openai:gpt-4o", None)
    assert method_split("auto:embedContent") == ("auto", "embedContent")


def test_sdk_generate_content_with_system_turns_and_config(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST", chat_path("alpha"), Reply.sse(openai_sse(["Hel", "lo!"], usage=(1000, 200)))
    )
    key = new_key()

    gemini = client(live_server_url, key)
    response = gemini.models.generate_content(
        model="auto",
        contents=[
            types.Content(role="user", parts=[types.Part(text="Hi")]),
            types.Content(role="model", parts=[types.Part(text="Hello.")]),
            types.Content(role="user", parts=[types.Part(text="Say"), types.Part(text="hello")]),
        ],
        config=types.GenerateContentConfig(
            system_instruction="Be brief.",
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            max_output_tokens=64,
            stop_sequences=["END"],
            candidate_count=1,
            safety_settings=[
                types.SafetySetting(
                    category=types.HarmCategory.HARM_CATEGORY_HARASSMENT,
                    threshold=types.HarmBlockThreshold.BLOCK_ONLY_HIGH,
                )
            ],
        ),
    )

    assert response.text == "Hello!"
    assert response.candidates is not None
    (candidate,) = response.candidates
    assert (candidate.finish_reason, candidate.index) == (types.FinishReason.STOP, 0)
    assert candidate.content is not None and candidate.content.role == "model"
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (
        1000,
        200,
        1200,
    )
    assert response.model_version == "alpha:alpha-model"
    assert response.sdk_http_response is not None and response.sdk_http_response.headers
    request_id = response.sdk_http_response.headers["x-orchestrator-request-id"]
    assert response.response_id == request_id.replace("-", "")
    (sent,) = [r.json() for r in upstream.requests if r.path == chat_path("alpha")]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Say\n\nhello"},
    ]
    assert (sent["max_tokens"], sent["stop"], sent["temperature"], sent["top_p"]) == (
        64,
        ["END"],
        0.5,
        0.9,
    )
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status) == ("gemini", RequestLog.Status.SUCCESS)
    assert (row.input_tokens, row.output_tokens) == (1000, 200)
    assert row.cost_usd == Decimal("0.00325000")
    assert row.requested_model == "auto"
    assert row.api_key_id is not None


def test_sdk_stream_and_its_final_usage(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["a", "b", "c"], usage=(7, 3))))
    key = new_key()

    gemini = client(live_server_url, key)
    chunks = list(
        gemini.models.generate_content_stream(
            model="auto",
            contents="abc",
            config=types.GenerateContentConfig(system_instruction="Be brief."),
        )
    )

    assert "".join(c.text or "" for c in chunks) == "abc"
    final = chunks[-1]
    assert final.candidates is not None
    assert final.candidates[0].finish_reason == types.FinishReason.STOP
    assert final.usage_metadata is not None
    assert (final.usage_metadata.prompt_token_count, final.usage_metadata.total_token_count) == (
        7,
        10,
    )
    assert all(c.model_version == "alpha:alpha-model" for c in chunks)
    (row,) = wait_rows(1, entry_point="gemini")
    assert (row.status, row.input_tokens, row.output_tokens) == ("success", 7, 3)
    assert row.cost_usd == cost_usd(Usage(input=7, output=3), ALPHA_PRICES)


async def test_async_sdk_with_a_policy_and_a_named_model(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(gateway_registry)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["from alpha"])))
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["from beta"])))
    key = await sync_to_async(new_key)()
    gemini = client(live_server_url, key)

    by_policy = await gemini.aio.models.generate_content(model="gateway-policy", contents="x")
    # `provider:model` in the path: models/beta:beta-model:generateContent.
    by_name = await gemini.aio.models.generate_content(model="beta:beta-model", contents="x")
    streamed = [
        c.text
        async for c in await gemini.aio.models.generate_content_stream(
            model="models/beta:beta-model", contents="x"
        )
    ]

    assert (by_policy.text, by_policy.model_version) == ("from alpha", "alpha:alpha-model")
    assert (by_name.text, by_name.model_version) == ("from beta", "beta:beta-model")
    assert "".join(t or "" for t in streamed) == "from beta"
    rows = await sync_to_async(wait_rows)(3, entry_point="gemini")
    assert sorted(r.requested_model for r in rows) == [
        "beta:beta-model",
        "beta:beta-model",
        "gateway-policy",
    ]


def test_sdk_lists_gets_and_counts(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    key = new_key()
    gemini = client(live_server_url, key)

    listed = [m.name for m in gemini.models.list(config={"page_size": 2})]
    got = gemini.models.get(model="alpha:alpha-model")
    by_bare_name = gemini.models.get(model="beta-model")
    counted = gemini.models.count_tokens(model="auto", contents="Say hello")
    with pytest.raises(errors.ClientError) as raised:
        gemini.models.get(model="nope")

    assert listed == [
        "models/auto",
        "models/gateway-policy",
        "models/alpha:alpha-model",
        "models/beta:beta-model",
    ]
    assert (got.name, got.input_token_limit, got.output_token_limit) == (
        "models/alpha:alpha-model",
        8192,
        4096,
    )
    assert got.supported_actions == ["generateContent", "streamGenerateContent", "countTokens"]
    assert by_bare_name.name == "models/beta:beta-model"
    assert counted.total_tokens == usage_estimate(prompt="user: Say hello", completion="").input
    assert (raised.value.code, raised.value.status) == (404, "NOT_FOUND")
    time.sleep(0.3)
    assert RequestLog.objects.count() == 0
    assert upstream.requests == []


def test_the_sse_stream_byte_by_byte(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    # Pieces 50 ms apart: each upstream read, and so each chunk, holds one.
    answer = openai_sse(["Hel", "lo"], usage=(9, 2))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(answer, chunk_delay_s=0.05))
    key = new_key()

    response = post(live_server_url, f"{STREAM}?alt=sse", hello(), key=key)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    request_id = response.headers["x-orchestrator-request-id"]
    response_id = request_id.replace("-", "")
    events = sse_events(response.content)
    extension = events[-1].pop("orchestrator")
    assert events == [
        chunk("Hel", "alpha:alpha-model", response_id),
        chunk("lo", "alpha:alpha-model", response_id),
        last_chunk("alpha:alpha-model", response_id, (9, 2)),
    ]
    assert (extension["request_id"], extension["cost_state"]) == (request_id, "reported")
    # Compact JSON, Google's key order, one event per chunk.
    assert response.content.startswith(
        b'data: {"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],'
        b'"modelVersion":"alpha:alpha-model","responseId":"' + response_id.encode() + b'"}\r\n\r\n'
    )
    assert (
        b'"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":2,"totalTokenCount":11}'
        in response.content
    )
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.input_tokens, row.output_tokens) == (
        "gemini",
        "success",
        9,
        2,
    )


def test_the_json_array_stream_without_alt(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    answer = openai_sse(["Hel", "lo"], usage=(9, 2))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(answer, chunk_delay_s=0.05))
    key = new_key()

    response = post(live_server_url, STREAM, hello(), key=key)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    response_id = response.headers["x-orchestrator-request-id"].replace("-", "")
    raw = response.content
    # One array, its elements apart as Google writes them.
    assert raw.startswith(b'[{"candidates":') and raw.endswith(b"}]")
    assert raw.count(b"},\r\n{") == 2
    elements = json.loads(raw)
    elements[-1].pop("orchestrator")
    assert elements == [
        chunk("Hel", "alpha:alpha-model", response_id),
        chunk("lo", "alpha:alpha-model", response_id),
        last_chunk("alpha:alpha-model", response_id, (9, 2)),
    ]


def test_the_non_streamed_wire_format(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi!"], usage=(3, 1))))
    key = new_key()

    response = post(
        live_server_url,
        GENERATE,
        hello() | {"generationConfig": {"maxOutputTokens": 8}},
        key=key,
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    body = response.json()
    extension = body.pop("orchestrator")
    request_id = response.headers["x-orchestrator-request-id"]
    expected = last_chunk("alpha:alpha-model", request_id.replace("-", ""), (3, 1))
    expected["candidates"][0]["content"]["parts"] = [{"text": "Hi!"}]
    assert body == expected
    assert (extension["request_id"], extension["model"]) == (request_id, "alpha:alpha-model")
    assert response.headers["x-orchestrator-model"] == "alpha:alpha-model"


def test_a_length_stop_is_max_tokens(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    answer = openai_sse(["Once"], usage=(5, 2)).replace(
        b'"finish_reason": "stop"', b'"finish_reason": "length"'
    )
    upstream.reply("POST", chat_path("alpha"), Reply.sse(answer))
    key = new_key()

    gemini = client(live_server_url, key)
    response = gemini.models.generate_content(
        model="auto", contents="A story", config={"max_output_tokens": 2}
    )

    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


@pytest.mark.parametrize("alt", ["sse", "json"])
def test_an_error_after_the_first_token_ends_the_stream_with_an_error(
    live_server_url: str, upstream: UpstreamServer, alt: str
) -> None:
    gateway_registry(upstream)
    # The role chunk and "Hel", then the connection is reset.
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["Hel", "lo"], usage=(9, 2)), reset_after_chunks=2),
    )
    key = new_key()

    response = post(live_server_url, f"{STREAM}?alt={alt}", hello(), key=key)

    assert response.status_code == 200
    request_id = response.headers["x-orchestrator-request-id"]
    elements = sse_events(response.content) if alt == "sse" else json.loads(response.content)
    assert elements[0]["candidates"][0]["content"]["parts"] == [{"text": "Hel"}]
    error = elements[-1]["error"]
    assert (error["code"], error["status"]) == (503, "UNAVAILABLE")
    assert error["details"] == request_info(request_id)
    assert len(elements) == 2
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status) == ("gemini", "partial")


def test_the_sdk_raises_on_an_error_mid_stream(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["Hel", "lo"], usage=(9, 2)), reset_after_chunks=2),
    )
    key = new_key()

    texts = []
    gemini = client(live_server_url, key)
    with pytest.raises(errors.ServerError) as raised:
        for piece in gemini.models.generate_content_stream(model="auto", contents="Say hello"):
            texts.append(piece.text)

    assert texts == ["Hel"]
    assert (raised.value.code, raised.value.status) == (503, "UNAVAILABLE")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "contents: must be a non-empty list"),
        ({"contents": "hi"}, "contents: must be a non-empty list"),
        ({"contents": [{"role": "user", "parts": [{"text": 7}]}]}, "contents[0].parts[0].text:"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "contents[0].role:"),
        ({"contents": [{"role": "user"}]}, "contents[0].parts: must be a non-empty list"),
        (
            hello() | {"generationConfig": {"temperature": "hot"}},
            "generationConfig.temperature: must be a number between 0 and 2",
        ),
        (
            hello() | {"generationConfig": {"candidateCount": 2}},
            "generationConfig.candidateCount: only 1 candidate is supported",
        ),
        (
            hello() | {"generation_config": {"max_output_tokens": 0}},
            "generationConfig.maxOutputTokens: must be an integer from 1",
        ),
        (
            hello() | {"generationConfig": {"stopSequences": ["a", "b", "c", "d", "e", "f"]}},
            "generationConfig.stopSequences: must be a list of up to 5",
        ),
        (
            hello() | {"generationConfig": {"responseMimeType": "text/x.enum"}},
            "generationConfig.responseMimeType: must be text/plain or application/json",
        ),
        (hello() | {"systemInstruction": "Be brief."}, "systemInstruction: must be a Content"),
        (hello() | {"promptz": 1}, "promptz: is not a field of this request"),
        (
            hello() | {"tools": [{"googleSearch": {}}]},
            "tools[0].googleSearch: is not supported by this gateway: only functionDeclarations",
        ),
        (
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [
                            {"file_data": {"mime_type": "image/png", "file_uri": "gs://b/c"}}
                        ],
                    }
                ]
            },
            "contents[0].parts[0].fileData: file URIs are not supported: this gateway does not "
            "fetch files or images; send an image inline as inlineData (mimeType and base64 data)",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"functionCall": {"name": "f"}}]}]},
            "contents[0].parts[0].functionCall: is read only in model turns",
        ),
        ([1, 2], "body: must be a JSON object"),
    ],
    ids=[
        "missing-contents",
        "contents-string",
        "text-int",
        "role",
        "no-parts",
        "temperature",
        "candidates",
        "max-tokens",
        "stops",
        "json-mode",
        "system-string",
        "unknown-field",
        "tools",
        "file-data",
        "function-call",
        "array",
    ],
)
def test_bad_input_is_invalid_argument_and_logged(
    live_server_url: str, upstream: UpstreamServer, body: Any, message: str
) -> None:
    gateway_registry(upstream)
    key = new_key()

    response = post(live_server_url, GENERATE, body, key=key)

    assert response.status_code == 400
    request_id = response.headers["x-orchestrator-request-id"]
    got = response.json()
    assert set(got) == {"error"}
    assert set(got["error"]) == {"code", "message", "status", "details"}
    assert (got["error"]["code"], got["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert got["error"]["message"].startswith(message)
    assert got["error"]["details"] == request_info(request_id)
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.error_code) == ("gemini", "invalid", "INVALID_REQUEST")
    assert upstream.requests == []


def test_a_body_that_is_not_json_is_refused(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    key = new_key()

    response = httpx.post(
        f"{live_server_url}{GENERATE}",
        content=b"{nope",
        headers={"x-goog-api-key": key, "content-type": "application/json"},
        timeout=30,
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("body: not valid JSON")
    (row,) = wait_rows(1, entry_point="gemini")
    assert row.status == "invalid"


def test_the_sdk_sees_a_file_uri_refused(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    key = new_key()

    gemini = client(live_server_url, key)
    with pytest.raises(errors.ClientError) as raised:
        gemini.models.generate_content(
            model="auto",
            contents=[
                types.Part.from_uri(file_uri="https://example.com/cat.png", mime_type="image/png"),
                "What?",
            ],
        )

    assert (raised.value.code, raised.value.status) == (400, "INVALID_ARGUMENT")
    assert raised.value.message == (
        "contents[0].parts[0].fileData: file URIs are not supported: this gateway does not "
        "fetch files or images; send an image inline as inlineData (mimeType and base64 data)"
    )


def test_an_unknown_model_is_not_found_and_logged(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()

    named = post(live_server_url, "/v1beta/models/nope:generateContent", hello(), key=key)
    override = post(live_server_url, "/v1beta/models/alpha:nope:generateContent", hello(), key=key)

    assert named.status_code == 404
    assert named.json() == {
        "error": {
            "code": 404,
            "message": "models/nope is not found for API version v1beta. Call ListModels "
            "(GET /v1beta/models) to see the models and policies this gateway serves. "
            "(unknown model or policy 'nope')",
            "status": "NOT_FOUND",
            "details": request_info(named.headers["x-orchestrator-request-id"]),
        }
    }
    assert override.status_code == 404
    assert override.json()["error"]["message"].startswith("models/alpha:nope is not found")
    rows = wait_rows(2, entry_point="gemini")
    assert sorted((r.status, r.requested_model) for r in rows) == [
        ("invalid", "alpha:nope"),
        ("invalid", "nope"),
    ]


def test_a_missing_or_wrong_key_is_unauthenticated(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    missing = post(live_server_url, GENERATE, hello(), key=None)
    wrong = post(live_server_url, GENERATE, hello(), key="orch-wrong")
    wrong_in_query = post(live_server_url, f"{GENERATE}?key=orch-wrong", hello(), key=None)
    listed = httpx.get(f"{live_server_url}/v1beta/models", timeout=30)
    gemini = client(live_server_url, "orch-wrong")
    with pytest.raises(errors.ClientError) as raised:
        gemini.models.generate_content(model="auto", contents="x")

    for response in (missing, wrong, wrong_in_query, listed):
        assert (response.status_code, response.json()) == (401, AUTH_ERROR)
    assert (raised.value.code, raised.value.status) == (401, "UNAUTHENTICATED")
    time.sleep(0.3)
    assert RequestLog.objects.count() == 0


def test_a_key_in_the_query_string_is_accepted(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["ok"], usage=(3, 1))))
    key = new_key()

    generated = post(live_server_url, f"{GENERATE}?key={key}", hello(), key=None)
    streamed = post(live_server_url, f"{STREAM}?alt=sse&key={key}", hello(), key=None)
    listed = httpx.get(f"{live_server_url}/v1beta/models?key={key}&pageSize=1", timeout=30)

    assert generated.status_code == 200
    assert generated.json()["candidates"][0]["content"]["parts"] == [{"text": "ok"}]
    assert sse_events(streamed.content)[0]["candidates"][0]["content"]["parts"] == [{"text": "ok"}]
    assert listed.json() == {
        "models": [
            {
                "name": "models/auto",
                "baseModelId": "auto",
                "version": "gateway",
                "displayName": "auto",
                "description": "The default routing policy.",
                "supportedGenerationMethods": [
                    "generateContent",
                    "streamGenerateContent",
                    "countTokens",
                ],
            }
        ],
        "nextPageToken": "1",
    }
    rows = wait_rows(2, entry_point="gemini")
    assert [r.status for r in rows] == ["success", "success"]


async def test_a_key_in_the_query_string_is_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "orch-secret-in-the-query"
    path = f"{GENERATE}?alt=sse&key={secret}"

    with caplog.at_level(logging.INFO):
        response = await asgi_request(
            application, "POST", path, body=b"{}", headers=[(b"content-type", b"application/json")]
        )

    assert response.status == 401
    lines = [JsonFormatter().format(record) for record in caplog.records]
    # Django logs the refusal with the request, whose full path it prints: without the key.
    (logged,) = [line for line in lines if "Unauthorized" in line]
    assert "/v1beta/models/auto:generateContent?alt=sse" in logged
    assert not [line for line in lines if secret in line]


def test_a_rate_limited_key_is_resource_exhausted(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["ok"], usage=(3, 1))))
    key = new_key(rpm_limit=1)

    first = post(live_server_url, GENERATE, hello(), key=key)
    second = post(live_server_url, GENERATE, hello(), key=key)

    assert first.status_code == 200
    assert second.status_code == 429
    error = second.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    retry = int(second.headers["retry-after"])
    assert retry >= 1
    assert error["details"][1]["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
    rows = wait_rows(2, entry_point="gemini")
    assert [r.status for r in rows] == ["success", "rate_limited"]


def test_an_oversized_body_is_refused_in_googles_shape(live_server_url: str, settings: Any) -> None:
    # The web process's limit is the default 2 MiB.
    payload = json.dumps(hello("x" * 3_000_000)).encode()

    declared = httpx.post(
        f"{live_server_url}{GENERATE}",
        content=payload,
        headers={"x-goog-api-key": "orch-any", "content-type": "application/json"},
        timeout=30,
    )
    chunked = httpx.post(
        f"{live_server_url}{GENERATE}",
        content=iter([payload[:1_000_000], payload[1_000_000:]]),
        headers={"x-goog-api-key": "orch-any", "content-type": "application/json"},
        timeout=30,
    )

    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert (declared.status_code, declared.json()) == (
        413,
        {
            "error": {
                "code": 413,
                "message": f"Request body of {len(payload)} bytes is over the limit of "
                f"{limit} bytes.",
                "status": "INVALID_ARGUMENT",
            }
        },
    )
    assert (chunked.status_code, chunked.json()) == (
        413,
        {
            "error": {
                "code": 413,
                "message": f"Request body is over the limit of {limit} bytes.",
                "status": "INVALID_ARGUMENT",
            }
        },
    )


def test_other_methods_and_paths_answer_in_googles_shape(live_server_url: str) -> None:
    get = httpx.get(f"{live_server_url}{GENERATE}", timeout=30)
    embed = httpx.post(f"{live_server_url}/v1beta/models/auto:embedContent", json={}, timeout=30)
    other = httpx.post(f"{live_server_url}/v1beta/cachedContents", json={}, timeout=30)
    # No model's name: refused before any key is looked up.
    odd = httpx.get(f"{live_server_url}/v1beta/models/a%20b", timeout=30)

    assert (get.status_code, get.json()) == (
        405,
        {"error": {"code": 405, "message": "Use POST.", "status": "INVALID_ARGUMENT"}},
    )
    assert (embed.status_code, embed.json()) == (
        404,
        {
            "error": {
                "code": 404,
                "message": "embedContent is not supported by this gateway.",
                "status": "NOT_FOUND",
            }
        },
    )
    assert (other.status_code, other.json()["error"]) == (
        404,
        {
            "code": 404,
            "message": "Unknown endpoint /v1beta/cachedContents.",
            "status": "NOT_FOUND",
        },
    )
    assert (odd.status_code, odd.json()) == (
        400,
        {
            "error": {
                "code": 400,
                "message": "models/a b: not a model name.",
                "status": "INVALID_ARGUMENT",
            }
        },
    )


async def test_a_foreign_host_is_refused_in_googles_shape() -> None:
    response = await asgi_request(application, "POST", GENERATE, host=b"evil.example")

    assert response.status == 400
    assert json.loads(response.body) == {
        "error": {
            "code": 400,
            "message": "Host 'evil.example' is not served here (ALLOWED_HOSTS).",
            "status": "INVALID_ARGUMENT",
        }
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
    path = f"{STREAM}?alt=sse" if streamed else GENERATE

    sock = raw_post(live_server_url, path, hello(), key)
    if streamed:
        read_until(sock, b'"text":"Hel"')
    else:
        deadline = time.monotonic() + 10
        while not upstream.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # "Hel" has reached the gateway
    sock.close()

    (row,) = assert_closed([budget], 1)
    assert (row.entry_point, row.status, row.error_code) == ("gemini", "cancelled", "CANCELLED")
    assert row.cost_state == "estimated"
    counted = usage_estimate(prompt="user: Say hello", completion="Hel")
    assert (row.input_tokens, row.output_tokens) == (counted.input, counted.output)
    assert row.cost_usd == cost_usd(counted, ALPHA_PRICES)
