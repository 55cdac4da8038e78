"""A Gemini thinking model's thought signatures end to end: a client of the OpenAI door and a
client of the Gemini door (the official SDKs, against the live web process) each make a tool
call with a Gemini model on a local upstream that signs its calls, then send the conversation
back with the call's result; the upstream gets the signature back beside the same call, exactly
as it sent it (Gemini 3 refuses the turn otherwise)."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest
from google import genai
from google.genai import types

from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.conftest import _fresh_routing_cache  # noqa: F401  (autouse)
from tests.routing.gateway_support import (
    WEATHER_TOOL,
    gemini_tools_registry,
    new_key,
    wait_rows,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GOOGLE = "/google/v1beta/models/gemini-tool"
SIGNED_SSE = fixture("gemini/stream_function_call_signed.sse")
SIGNED_JSON = fixture("gemini/generate_content_function_call_signed.json")
SIGNATURE = json.loads(SIGNED_JSON)["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
SIGNED_ID = "call_0__thought__Q2lRQjBlMktkR2hwYm10cGJtY3RjM1JoZEdVdGIyWXRkR2hsTFdOaGJHei8vZz09"
TIME_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
# What the upstream must get back in the second turn: the signed call with its signature.
MODEL_TURN = {
    "role": "model",
    "parts": [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": SIGNATURE,
        },
        {"functionCall": {"name": "get_time", "args": {"zone": "CET"}}},
    ],
}


def signing_gemini(upstream: UpstreamServer) -> None:
    """A Gemini model that accepts tools, answering with signed calls, then with text (the
    gateway streams from Gemini whether its client streams or not)."""
    gemini_tools_registry(upstream)
    upstream.reply(
        "POST",
        f"{GOOGLE}:streamGenerateContent",
        Reply.sse(SIGNED_SSE),
        Reply.sse(fixture("gemini/stream.sse")),
    )


def second_turn(upstream: UpstreamServer) -> Any:
    """The contents of the second of the two requests the upstream got."""
    _, second = upstream.requests
    assert second.path == f"{GOOGLE}:streamGenerateContent"
    return second.json()["contents"]


def answered(time_result: dict[str, Any]) -> list[dict[str, Any]]:
    """The second turn's contents: the question, the signed calls, their results."""
    return [
        {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
        MODEL_TURN,
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
                {"functionResponse": {"name": "get_time", "response": time_result}},
            ],
        },
    ]


def test_an_openai_client_hands_the_signature_back_inside_the_call_id(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    signing_gemini(upstream)
    client = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=new_key(), max_retries=0)
    question: Any = {"role": "user", "content": "Weather and time in Paris?"}

    stream: Any = client.chat.completions.create(
        model="auto", messages=[question], tools=[WEATHER_TOOL, TIME_TOOL], stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    for chunk in stream:
        for piece in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += piece.id or ""
            call["name"] += (piece.function and piece.function.name) or ""
            call["arguments"] += (piece.function and piece.function.arguments) or ""
    assert calls == {
        0: {"id": SIGNED_ID, "name": "get_weather", "arguments": '{"city":"Paris"}'},
        1: {"id": "call_1", "name": "get_time", "arguments": '{"zone":"CET"}'},
    }

    # The client sends the conversation back as OpenAI clients do: the calls by their ids.
    answer = client.chat.completions.create(
        model="auto",
        tools=[WEATHER_TOOL, TIME_TOOL],
        messages=[
            question,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call["arguments"]},
                    }
                    for call in calls.values()
                ],
            },
            {"role": "tool", "tool_call_id": SIGNED_ID, "content": '{"temp": 18}'},
            {"role": "tool", "tool_call_id": "call_1", "content": "14:05"},
        ],
    )

    assert answer.choices[0].message.content == "The capital of France is Paris."
    assert second_turn(upstream) == answered({"content": "14:05"})
    rows = wait_rows(2, entry_point="openai")
    assert [row.status for row in rows] == ["success", "success"]


def test_a_gemini_client_gets_the_signature_beside_the_call_and_sends_it_back(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    signing_gemini(upstream)
    gemini = genai.Client(
        vertexai=False,
        api_key=new_key(),
        http_options=types.HttpOptions(base_url=live_server_url, api_version="v1beta"),
    )
    config = types.GenerateContentConfig(
        tools=[
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration(
                        name=tool["function"]["name"],
                        description=tool["function"].get("description"),
                        parameters_json_schema=tool["function"]["parameters"],
                    )
                    for tool in (WEATHER_TOOL, TIME_TOOL)
                ]
            )
        ]
    )
    question = types.Content(role="user", parts=[types.Part(text="Weather and time in Paris?")])

    chunks = list(
        gemini.models.generate_content_stream(model="auto", contents=[question], config=config)
    )

    parts = [
        part
        for chunk in chunks
        for candidate in chunk.candidates or []
        for part in (candidate.content and candidate.content.parts) or []
    ]
    # As Gemini sends them: the call's own id, and its signature beside it (the SDK decodes it).
    assert [(p.function_call, p.thought_signature) for p in parts] == [
        (
            types.FunctionCall(id="call_0", name="get_weather", args={"city": "Paris"}),
            base64.b64decode(SIGNATURE),
        ),
        (types.FunctionCall(id="call_1", name="get_time", args={"zone": "CET"}), None),
    ]

    # The SDK's own history: the model's parts as they came, then the results.
    gemini.models.generate_content(
        model="auto",
        config=config,
        contents=[
            question,
            types.Content(role="model", parts=parts),
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(name="get_weather", response={"temp": 18}),
                    types.Part.from_function_response(name="get_time", response={"t": "14:05"}),
                ],
            ),
        ],
    )

    assert second_turn(upstream) == answered({"t": "14:05"})
