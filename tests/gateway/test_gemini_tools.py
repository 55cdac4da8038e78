"""Function calling and JSON mode at the Gemini door, end to end: google-genai (and raw HTTP, for
the exact bytes) against the live web process, routed to local upstreams that answer in their
own wire formats (an OpenAI-compatible one streaming its calls in pieces, a Gemini one sending
them whole). `functionDeclarations`, `toolConfig`, `functionCall` / `functionResponse` parts
and `responseMimeType` / `responseSchema` reach each provider as its own protocol has them; the
answer's calls come back as `functionCall` parts, each streamed call once it is whole. Only
models marked for tools (or JSON output) are routed to, the answer is costed and logged and
never cached, and what cannot be carried is refused naming the field."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from analytics.models import RequestLog
from analytics.pricing import tokens_estimate
from routing.engine.tokens import estimate_tokens
from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.conftest import _fresh_routing_cache  # noqa: F401  (autouse)
from tests.routing.gateway_support import (
    chat_path,
    gateway_registry,
    gemini_tools_registry,
    new_key,
    tools_registry,
    wait_rows,
)
from tests.routing.streams import openai_sse, unreadable_call_stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GENERATE = "/v1beta/models/auto:generateContent"
STREAM = "/v1beta/models/auto:streamGenerateContent"
GOOGLE_STREAM = "/google/v1beta/models/gemini-tool:streamGenerateContent"
OPENAI_CALLS = fixture("openai/chat_stream_tool_calls.sse")
GEMINI_CALLS = fixture("gemini/stream_function_call.sse")
WEATHER_ID = "call_DdmO9pD3xa9XTPNJ32zg2hcA"
TIME_ID = "call_Q8hWQ3uCg2sZmdlp1mS1HRc2"
QUESTION = {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]}
# The declarations as a REST client writes them: one with Google's Schema (`parameters`), one
# with JSON Schema (`parametersJsonSchema`).
WEATHER_DECLARATION: Any = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "parameters": {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING", "description": "The city"}},
        "required": ["city"],
    },
}
TIME_DECLARATION: Any = {
    "name": "get_time",
    "parametersJsonSchema": {"type": "object", "properties": {"zone": {"type": "string"}}},
}
TOOLS = [{"functionDeclarations": [WEATHER_DECLARATION, TIME_DECLARATION]}]
# The same functions as OpenAI's tools: what an OpenAI-compatible upstream receives.
OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
        },
    },
]
WEATHER_CALL = {
    "functionCall": {"id": WEATHER_ID, "name": "get_weather", "args": {"city": "Paris"}}
}
TIME_CALL = {"functionCall": {"id": TIME_ID, "name": "get_time", "args": {"zone": "CET"}}}


def client(live_server_url: str, key: str) -> genai.Client:
    return genai.Client(
        vertexai=False,
        api_key=key,
        http_options=types.HttpOptions(base_url=live_server_url, api_version="v1beta"),
    )


def post(live_server_url: str, path: str, body: Any, key: str) -> httpx.Response:
    return httpx.post(
        f"{live_server_url}{path}", json=body, headers={"x-goog-api-key": key}, timeout=30
    )


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    assert raw.endswith(b"\r\n\r\n")
    return [json.loads(frame.removeprefix(b"data: ")) for frame in raw[:-4].split(b"\r\n\r\n")]


def test_sdk_function_calling_round_trip_through_an_openai_upstream(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_tools",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(OPENAI_CALLS))
    gemini = client(live_server_url, new_key())
    declarations = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                description="Current weather of a city",
                parameters=types.Schema(
                    type=types.Type.OBJECT,
                    properties={
                        "city": types.Schema(type=types.Type.STRING, description="The city")
                    },
                    required=["city"],
                ),
            ),
            types.FunctionDeclaration(
                name="get_time",
                parameters_json_schema={
                    "type": "object",
                    "properties": {"zone": {"type": "string"}},
                },
            ),
        ]
    )
    config = types.GenerateContentConfig(
        tools=[declarations],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.AUTO
            )
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    question = types.Content(role="user", parts=[types.Part(text="Weather and time in Paris?")])

    asked = gemini.models.generate_content(model="auto", contents=[question], config=config)

    assert asked.function_calls == [
        types.FunctionCall(id=WEATHER_ID, name="get_weather", args={"city": "Paris"}),
        types.FunctionCall(id=TIME_ID, name="get_time", args={"zone": "CET"}),
    ]
    assert asked.candidates is not None
    (candidate,) = asked.candidates
    assert candidate.finish_reason == types.FinishReason.STOP
    assert asked.model_version == "beta:beta-model"
    usage = asked.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count) == (82, 47)
    (sent,) = upstream.requests
    assert sent.path == chat_path("beta")
    assert sent.json() == {
        "model": "beta-model",
        "messages": [{"role": "user", "content": "Weather and time in Paris?"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": OPENAI_TOOLS,
        "tool_choice": "auto",
    }
    assert asked.sdk_http_response is not None and asked.sdk_http_response.headers
    request_id = asked.sdk_http_response.headers["x-orchestrator-request-id"]
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.model_name) == ("gemini", "success", "beta-model")
    assert (row.input_tokens, row.output_tokens) == (82, 47)
    # 82 tokens at $0.15 and 47 at $0.60 per million.
    assert row.cost_usd == Decimal("0.00004050")
    assert row.cost_state == "reported"

    # The model's turn goes back as it came, with the functions' results after it.
    upstream.reset()
    upstream.reply(
        "POST", chat_path("beta"), Reply.sse(openai_sse(["18°C at 14:05."], usage=(120, 9)))
    )
    assert candidate.content is not None
    answered = gemini.models.generate_content(
        model="auto",
        contents=[
            question,
            candidate.content,
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(
                        name="get_weather", response={"temperature": "18°C"}
                    ),
                    types.Part.from_function_response(name="get_time", response={"time": "14:05"}),
                ],
            ),
        ],
        config=config,
    )

    assert answered.text == "18°C at 14:05."
    (sent,) = upstream.requests
    assert sent.json()["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": WEATHER_ID,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": TIME_ID,
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"zone":"CET"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": WEATHER_ID, "content": '{"temperature":"18°C"}'},
        {"role": "tool", "tool_call_id": TIME_ID, "content": '{"time":"14:05"}'},
    ]
    assert sent.json()["tools"] == OPENAI_TOOLS


def test_the_answers_function_calls_are_googles_parts_exactly(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(OPENAI_CALLS))

    response = post(
        live_server_url,
        GENERATE,
        {
            "contents": [QUESTION],
            "tools": TOOLS,
            "tool_config": {
                "function_calling_config": {
                    "mode": "ANY",
                    "allowed_function_names": ["get_weather"],
                }
            },
        },
        new_key(),
    )

    assert response.status_code == 200
    body = response.json()
    request_id = response.headers["x-orchestrator-request-id"]
    orchestrator = body.pop("orchestrator")
    assert body == {
        "candidates": [
            {
                "content": {"parts": [WEATHER_CALL, TIME_CALL], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 82,
            "candidatesTokenCount": 47,
            "totalTokenCount": 129,
        },
        "modelVersion": "alpha:alpha-model",
        "responseId": request_id.replace("-", ""),
    }
    assert orchestrator["decision"]["request"]["needs"] == ["tools"]
    assert orchestrator["decision"]["cache"] == {"result": "skipped", "reason": "tools"}
    (sent,) = upstream.requests
    assert sent.json()["tools"] == OPENAI_TOOLS
    assert sent.json()["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("sse", [True, False], ids=["alt-sse", "json-array"])
def test_streamed_calls_are_sent_each_once_whole(
    live_server_url: str, upstream: UpstreamServer, sse: bool
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    # One upstream event per read, so the calls' arguments reach the door in pieces.
    upstream.reply("POST", chat_path("alpha"), Reply.sse(OPENAI_CALLS).but(chunk_delay_s=0.03))

    response = post(
        live_server_url,
        STREAM + ("?alt=sse" if sse else ""),
        {"contents": [QUESTION], "tools": TOOLS},
        new_key(),
    )

    assert response.status_code == 200
    request_id = response.headers["x-orchestrator-request-id"]
    if sse:
        assert response.headers["content-type"] == "text/event-stream"
        chunks = sse_events(response.content)
    else:
        assert response.content.startswith(b"[{") and response.content.endswith(b"}]")
        chunks = json.loads(response.content)
    assert chunks[-1].pop("orchestrator")["decision"]["request"]["needs"] == ["tools"]
    response_id = request_id.replace("-", "")
    assert chunks == [
        # The first call, once the second starts.
        {
            "candidates": [{"content": {"parts": [WEATHER_CALL], "role": "model"}, "index": 0}],
            "modelVersion": "alpha:alpha-model",
            "responseId": response_id,
        },
        # The second, whole at the end, with the finish reason and the usage.
        {
            "candidates": [
                {
                    "content": {"parts": [TIME_CALL], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 82,
                "candidatesTokenCount": 47,
                "totalTokenCount": 129,
            },
            "modelVersion": "alpha:alpha-model",
            "responseId": response_id,
        },
    ]
    (sent,) = upstream.requests
    assert sent.json()["tools"] == OPENAI_TOOLS
    assert "tool_choice" not in sent.json()
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.status, row.input_tokens, row.output_tokens) == ("success", 82, 47)


def test_sdk_stream_through_a_gemini_upstream_with_its_conversation(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gemini_tools_registry(upstream)
    upstream.reply("POST", GOOGLE_STREAM, Reply.sse(GEMINI_CALLS))
    key = new_key()
    # An earlier call without an id, answered by name; the SDK's own parts.
    contents = [
        types.Content(role="user", parts=[types.Part(text="Weather in Rome?")]),
        types.Content(
            role="model",
            parts=[
                types.Part(text="Let me look."),
                types.Part.from_function_call(name="get_weather", args={"city": "Rome"}),
            ],
        ),
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name="get_weather", response={"temp": 21}),
                types.Part(text="And Paris, with the time there?"),
            ],
        ),
    ]

    gemini = client(live_server_url, key)
    chunks = list(
        gemini.models.generate_content_stream(
            model="auto",
            contents=contents,
            config=types.GenerateContentConfig(
                tools=[types.Tool.model_validate(TOOLS[0])],
                tool_config=types.ToolConfig(
                    function_calling_config=types.FunctionCallingConfig(
                        mode=types.FunctionCallingConfigMode.ANY
                    )
                ),
            ),
        )
    )

    # Gemini sent both calls whole in one event: the first goes out as the second starts.
    assert [chunk.function_calls for chunk in chunks] == [
        [types.FunctionCall(id="call_0", name="get_weather", args={"city": "Paris"})],
        [types.FunctionCall(id="call_1", name="get_time", args={"zone": "CET"})],
    ]
    assert chunks[-1].candidates is not None
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].model_version == "google:gemini-tool"
    (sent,) = upstream.requests
    assert sent.path == GOOGLE_STREAM
    assert sent.json() == {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Rome?"}]},
            {
                "role": "model",
                "parts": [
                    {"text": "Let me look."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}],
            },
            {"role": "user", "parts": [{"text": "And Paris, with the time there?"}]},
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Current weather of a city",
                        "parameters": OPENAI_TOOLS[0]["function"]["parameters"],
                    },
                    {"name": "get_time", "parameters": TIME_DECLARATION["parametersJsonSchema"]},
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    }
    (row,) = wait_rows(1, entry_point="gemini")
    assert (row.status, row.model_name, row.input_tokens, row.output_tokens) == (
        "success",
        "gemini-tool",
        64,
        18,
    )
    # 64 tokens at $0.30 and 18 at $2.50 per million.
    assert row.cost_usd == Decimal("0.00006420")


def test_sdk_json_mode_with_a_schema_goes_to_a_json_model(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    tools_registry(upstream, beta=("accepts_json_output",))
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(['{"city":', '"Paris"}'])))

    gemini = client(live_server_url, new_key())
    response = gemini.models.generate_content(
        model="auto",
        contents="Which city is the capital of France?",
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=types.Schema(
                type=types.Type.OBJECT,
                properties={
                    "city": types.Schema(type=types.Type.STRING),
                    "population": types.Schema(type=types.Type.INTEGER, nullable=True),
                },
                required=["city"],
                property_ordering=["city", "population"],
            ),
        ),
    )

    assert response.text == '{"city":"Paris"}'
    assert response.parsed == {"city": "Paris"}
    assert response.model_version == "beta:beta-model"
    (sent,) = upstream.requests
    assert sent.json()["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "schema": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "population": {"type": ["integer", "null"]},
                },
                "required": ["city"],
                "propertyOrdering": ["city", "population"],
            },
        },
    }


@pytest.mark.parametrize(
    ("config", "response_format"),
    [
        ({"responseMimeType": "application/json"}, {"type": "json_object"}),
        (
            {
                "response_mime_type": "application/json",
                "response_json_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "response",
                    "schema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "additionalProperties": False,
                    },
                },
            },
        ),
    ],
    ids=["any-json", "json-schema"],
)
def test_json_mode_reaches_the_upstream_as_its_response_format(
    live_server_url: str,
    upstream: UpstreamServer,
    config: dict[str, Any],
    response_format: dict[str, Any],
) -> None:
    tools_registry(upstream, alpha=("accepts_json_output",))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(['{"city":"Paris"}'])))

    response = post(
        live_server_url, GENERATE, {"contents": [QUESTION], "generationConfig": config}, new_key()
    )

    assert response.status_code == 200
    assert response.json()["candidates"][0]["content"]["parts"] == [{"text": '{"city":"Paris"}'}]
    decision = response.json()["orchestrator"]["decision"]
    assert decision["cache"] == {"result": "skipped", "reason": "response_format"}
    (sent,) = upstream.requests
    assert sent.json()["response_format"] == response_format


@pytest.mark.parametrize(
    ("body", "message", "code"),
    [
        (
            {"contents": [QUESTION], "tools": TOOLS},
            "this request uses tools (tools, tool_calls or tool messages), and no enabled model "
            "accepts tools (mark one that does in the admin: accepts tools)",
            "TOOLS_NOT_SUPPORTED",
        ),
        (
            {"contents": [QUESTION], "generationConfig": {"responseMimeType": "application/json"}},
            "this request asks for a JSON answer (response_format), and no enabled model accepts "
            "JSON output (mark one that does in the admin: accepts json output)",
            "JSON_OUTPUT_NOT_SUPPORTED",
        ),
    ],
    ids=["tools", "json"],
)
def test_what_no_model_accepts_is_refused_in_googles_shape(
    live_server_url: str, upstream: UpstreamServer, body: dict[str, Any], message: str, code: str
) -> None:
    gateway_registry(upstream)

    response = post(live_server_url, GENERATE, body, new_key())

    assert response.status_code == 400
    request_id = response.headers["x-orchestrator-request-id"]
    assert response.json() == {
        "error": {
            "code": 400,
            "message": message,
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id}
            ],
        }
    }
    assert upstream.requests == []
    (row,) = wait_rows(1, request_id=request_id)
    assert (row.entry_point, row.status, row.error_code) == ("gemini", "invalid", code)


def test_the_sdk_sees_a_google_tool_refused(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)

    gemini = client(live_server_url, new_key())
    with pytest.raises(errors.ClientError) as raised:
        gemini.models.generate_content(
            model="auto",
            contents="News of today?",
            config=types.GenerateContentConfig(
                tools=[types.Tool(google_search=types.GoogleSearch())]
            ),
        )

    assert raised.value.code == 400
    assert raised.value.status == "INVALID_ARGUMENT"
    assert raised.value.message == (
        "tools[0].googleSearch: is not supported by this gateway: only functionDeclarations "
        "(function calling) are"
    )
    assert upstream.requests == []


MODEL_CALLED = {
    "role": "model",
    "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
}


def answer(**response: Any) -> dict[str, Any]:
    return {"role": "user", "parts": [{"functionResponse": response}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"tools": [{"codeExecution": {}}]},
            "tools[0].codeExecution: is not supported by this gateway: only functionDeclarations "
            "(function calling) are",
        ),
        ({"tools": {"functionDeclarations": []}}, "tools: must be a list of Tool objects"),
        (
            {"tools": [{"functionDeclarations": [{"name": "get weather"}]}]},
            "tools[0].functionDeclarations[0].name: must be 1 to 64 letters, digits, "
            "underscores, dots, colons or dashes",
        ),
        (
            {"tools": [{"functionDeclarations": [{"name": "f"}, {"name": "f"}]}]},
            "tools: two functionDeclarations are named 'f'",
        ),
        (
            {
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {"type": "OBJECT"},
                                "parametersJsonSchema": {},
                            }
                        ]
                    }
                ]
            },
            "tools[0].functionDeclarations[0].parametersJsonSchema: is mutually exclusive with "
            "parameters",
        ),
        (
            {
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {
                                    "type": "OBJECT",
                                    "properties": {"a": {"type": "TEXT"}},
                                },
                            }
                        ]
                    }
                ]
            },
            "tools[0].functionDeclarations[0].parameters.properties.a.type: must be one of "
            "STRING, NUMBER, INTEGER, BOOLEAN, ARRAY, OBJECT, NULL",
        ),
        (
            {"tools": [{"functionDeclarations": [{"name": "f", "response": {"type": "STRING"}}]}]},
            "tools[0].functionDeclarations[0].response: is not supported by this gateway",
        ),
        (
            {
                "tools": TOOLS,
                "toolConfig": {"functionCallingConfig": {"mode": "VALIDATED"}},
            },
            "toolConfig.functionCallingConfig.mode: must be AUTO, ANY or NONE (VALIDATED is not "
            "supported by this gateway",
        ),
        (
            {
                "tools": TOOLS,
                "toolConfig": {
                    "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["nope"]}
                },
            },
            "toolConfig.functionCallingConfig.allowedFunctionNames: names 'nope', which is not "
            "among the functionDeclarations",
        ),
        (
            {
                "tools": TOOLS,
                "toolConfig": {
                    "functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["get_time"]}
                },
            },
            "toolConfig.functionCallingConfig.allowedFunctionNames: is read only with mode ANY",
        ),
        (
            {"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}},
            "toolConfig.functionCallingConfig.mode: ANY is read only with functionDeclarations",
        ),
        (
            {"toolConfig": {"retrievalConfig": {"languageCode": "en"}}},
            "toolConfig.retrievalConfig: is not supported by this gateway",
        ),
        (
            {"contents": [QUESTION, answer(name="get_weather", response={"t": 1})]},
            "contents[1].parts[0].functionResponse.name: answers no open functionCall to "
            "'get_weather' of the model turn before it",
        ),
        (
            {
                "contents": [
                    QUESTION,
                    MODEL_CALLED,
                    answer(id="call_9", name="get_weather", response={"t": 1}),
                ]
            },
            "contents[2].parts[0].functionResponse.id: 'call_9' names no open functionCall of "
            "the model turn before it",
        ),
        (
            {
                "contents": [
                    QUESTION,
                    MODEL_CALLED,
                    answer(name="get_weather", response="18°C"),
                ]
            },
            "contents[2].parts[0].functionResponse.response: must be an object (the function's "
            "result)",
        ),
        (
            {
                "contents": [
                    QUESTION,
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": [1]}}]},
                ]
            },
            "contents[1].parts[0].functionCall.args: must be an object",
        ),
        (
            {"contents": [QUESTION, {"role": "model", "parts": [answer(name="f")["parts"][0]]}]},
            "contents[1].parts[0].functionResponse: is read only in user turns",
        ),
        (
            {
                "contents": [
                    QUESTION,
                    {"role": "model", "parts": [{"executableCode": {"code": "print(1)"}}]},
                ]
            },
            "contents[1].parts[0].executableCode: code execution is not supported",
        ),
        (
            {"systemInstruction": {"parts": [MODEL_CALLED["parts"][0]]}},
            "systemInstruction.parts[0].functionCall: is read only in contents",
        ),
        (
            {"generationConfig": {"responseMimeType": "text/x.enum"}},
            "generationConfig.responseMimeType: must be text/plain or application/json (other "
            "types, text/x.enum among them, are not supported by this gateway)",
        ),
        (
            {"generationConfig": {"responseSchema": {"type": "OBJECT"}}},
            "generationConfig.responseSchema: is read only with responseMimeType application/json",
        ),
        (
            {
                "generationConfig": {
                    "responseMimeType": "application/json",
                    "responseSchema": {"type": "OBJECT"},
                    "responseJsonSchema": {"type": "object"},
                }
            },
            "generationConfig.responseJsonSchema: is mutually exclusive with responseSchema",
        ),
        (
            {
                "generationConfig": {
                    "responseMimeType": "application/json",
                    "responseSchema": {"type": "OBJECT", "additionalProperties": False},
                }
            },
            "generationConfig.responseSchema.additionalProperties: is not a field of this request",
        ),
    ],
    ids=[
        "code-execution-tool",
        "tools-object",
        "function-name",
        "same-name",
        "two-schemas",
        "schema-type",
        "declared-response",
        "validated",
        "allowed-unknown",
        "allowed-with-auto",
        "any-without-tools",
        "retrieval-config",
        "response-without-call",
        "response-wrong-id",
        "response-not-object",
        "args-not-object",
        "response-in-model-turn",
        "code-part",
        "call-in-system",
        "enum-mime",
        "schema-without-json",
        "two-response-schemas",
        "not-a-google-schema-field",
    ],
)
def test_what_cannot_be_carried_is_refused_naming_the_field(
    live_server_url: str, upstream: UpstreamServer, body: dict[str, Any], message: str
) -> None:
    tools_registry(upstream, alpha=("accepts_tools", "accepts_json_output"))

    response = post(live_server_url, GENERATE, {"contents": [QUESTION]} | body, new_key())

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"].startswith(message)
    (row,) = wait_rows(1, request_id=response.headers["x-orchestrator-request-id"])
    assert (row.status, row.error_code) == (RequestLog.Status.INVALID, "INVALID_REQUEST")
    assert upstream.requests == []


def test_count_tokens_counts_the_functions_and_calls_as_the_pipeline_plans_them(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    contents = [QUESTION, MODEL_CALLED, answer(name="get_weather", response={"c": 18})]

    response = post(
        live_server_url,
        "/v1beta/models/auto:countTokens",
        {"contents": contents, "tools": TOOLS},
        new_key(),
    )

    assert response.status_code == 200
    prompt = 'user: Weather and time in Paris?\n\nassistant: \n\ntool: {"c":18}'
    functions = (
        '[{"name":"get_weather","description":"Current weather of a city","parameters":'
        '{"type":"object","properties":{"city":{"type":"string","description":"The city"}},'
        '"required":["city"]}},{"name":"get_time","description":null,"parameters":'
        '{"type":"object","properties":{"zone":{"type":"string"}}}}]'
    )
    calls = 'get_weather{"city":"Paris"}'
    assert response.json() == {
        "totalTokens": tokens_estimate(prompt) + estimate_tokens(functions + calls)
    }
    assert upstream.requests == []


def test_a_call_whose_arguments_are_no_object_is_an_invalid_answer_and_falls_back(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    """A functionCall part cannot carry arguments that are no JSON object: that answer is the
    model's invalid answer, retried and then answered by the next model."""
    models = tools_registry(upstream, alpha=("accepts_tools",), beta=("accepts_tools",))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(unreadable_call_stream()))
    upstream.reply("POST", chat_path("beta"), Reply.sse(OPENAI_CALLS))

    response = post(live_server_url, GENERATE, {"contents": [QUESTION], "tools": TOOLS}, new_key())

    assert response.status_code == 200
    parts = response.json()["candidates"][0]["content"]["parts"]
    assert [part["functionCall"]["args"] for part in parts] == [{"city": "Paris"}, {"zone": "CET"}]
    assert [r.path for r in upstream.requests] == [chat_path("alpha")] * 2 + [chat_path("beta")]
    (row,) = wait_rows(1, request_id=response.headers["x-orchestrator-request-id"])
    assert (row.status, row.model_id, row.fallbacks, row.attempts) == (
        "success",
        models["beta"].pk,
        1,
        3,
    )
    assert [a["outcome"] for a in row.decision_trace["attempts"]] == [
        "INVALID_RESPONSE",
        "INVALID_RESPONSE",
        "ok",
    ]


@pytest.mark.parametrize("path", [GENERATE, f"{STREAM}?alt=sse"], ids=["whole", "streamed"])
def test_a_call_whose_arguments_are_no_object_from_every_model_is_an_error(
    live_server_url: str, upstream: UpstreamServer, path: str
) -> None:
    tools_registry(upstream, alpha=("accepts_tools",))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(unreadable_call_stream()))

    response = post(live_server_url, path, {"contents": [QUESTION], "tools": TOOLS}, new_key())

    request_id = response.headers["x-orchestrator-request-id"]
    error = {
        "code": 502,
        "message": "the model called get_weather (call_bad) with arguments that are not a JSON "
        "object: 'Paris'",
        "status": "UNAVAILABLE",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id}
        ],
    }
    (row,) = wait_rows(1, request_id=request_id)
    if path == GENERATE:
        assert response.status_code == 502
        assert response.json() == {"error": error}
        assert (row.status, row.error_code) == ("error", "INVALID_RESPONSE")
    else:
        # The headers went out before the call was whole; the call itself never did: the
        # stream is the error alone.
        assert response.status_code == 200
        assert sse_events(response.content) == [{"error": error}]
        assert (row.status, row.error_code) == ("partial", "INVALID_RESPONSE")
