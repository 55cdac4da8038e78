"""Google Gemini (`{base}/v1beta/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse`), `base_url` without the version, e.g.
`https://generativelanguage.googleapis.com`.

Each SSE event is a whole `GenerateContentResponse`. The protocol has no closing sentinel:
a stream is complete when a candidate carries `finishReason` (or the prompt is blocked),
so a body that ends before that is a cut stream. `usageMetadata` is cumulative; the last
one seen is the request's usage.

Tools are translated exactly: functions become `functionDeclarations`, `tool_choice` the
`toolConfig.functionCallingConfig` (AUTO, NONE, ANY, ANY with the one allowed name), an
assistant turn's tool calls `functionCall` parts, the `tool` turns answering them
`functionResponse` parts of one user turn, and the answer's `functionCall` parts tool calls
(finish reason `tool_calls`). A call's `thoughtSignature` (a thinking model's, which Gemini 3
requires back with the call in later turns) rides in the call's id (`tool_call_id_signed`) and
goes back beside its `functionCall` part. Gemini calls several functions at once as it sees fit:
`parallel_tool_calls: false` is refused. A JSON answer is `responseMimeType`
`application/json`, with the schema of a `json_schema` answer as its `responseSchema`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote

from providers.adapters.framing import sse_events
from providers.adapters.types import (
    ChatChunk,
    ChatRequest,
    ChatResult,
    Endpoint,
    FeatureUnsupported,
    InvalidResponse,
    Message,
    ProviderRejected,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
    json_text,
    tool_arguments_object,
    tool_call_id_signed,
    tool_call_id_split,
)
from providers.adapters.upstream import join_url, loads, open_stream, provider_error, request_json

MODEL_PAGES_MAX = 20
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
ROLES = {"user": "user", "assistant": "model", "tool": "user"}
CALLING_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}


class GeminiAdapter:
    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {"accept": "application/json"}
        if endpoint.api_key:
            headers["x-goog-api-key"] = endpoint.api_key
        return headers

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"contents": _contents(request.messages)}
        if request.tools:
            if request.parallel_tool_calls is False:
                raise FeatureUnsupported(
                    "parallel_tool_calls: Gemini calls several functions at once as it sees "
                    "fit; false is not carried",
                    code="TOOLS_NOT_SUPPORTED",
                )
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {"name": tool.name}
                        | (
                            {"description": tool.description}
                            if tool.description is not None
                            else {}
                        )
                        | ({"parameters": tool.parameters} if tool.parameters is not None else {})
                        for tool in request.tools
                    ]
                }
            ]
            if request.tool_choice is not None:
                body["toolConfig"] = {"functionCallingConfig": _calling(request.tool_choice)}
        system = [{"text": m.content} for m in request.messages if m.role == "system"]
        if system:
            body["systemInstruction"] = {"parts": system}
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.top_p is not None:
            config["topP"] = request.top_p
        if request.stop:
            config["stopSequences"] = list(request.stop)
        form = request.response_format
        if form is not None:
            config["responseMimeType"] = "application/json"
            if form.type == "json_schema" and form.schema is not None:
                config["responseSchema"] = form.schema
        if config:
            body["generationConfig"] = config
        return body

    def model_url(self, endpoint: Endpoint, model: str, method: str) -> str:
        name = model.removeprefix("models/")
        return join_url(endpoint.base_url, f"v1beta/models/{quote(name, safe='')}:{method}")

    async def stream(
        self, endpoint: Endpoint, request: ChatRequest
    ) -> AsyncGenerator[ChatChunk, None]:
        url = self.model_url(endpoint, request.model, "streamGenerateContent")
        headers = self.headers(endpoint) | {"accept": "text/event-stream"}
        usage: Usage | None = None
        finish_reason: str | None = None
        called = 0
        async with open_stream(
            endpoint,
            url,
            json_body=self.payload(request),
            headers=headers,
            frames=sse_events,
            params={"alt": "sse"},
        ) as events:
            async for event in events:
                data = loads(event.data)
                if not isinstance(data, dict):
                    raise InvalidResponse("stream event is not a JSON object")
                if "error" in data:
                    raise _error(data, endpoint)
                if data.get("usageMetadata"):
                    usage = _usage(data["usageMetadata"])
                text, reason, calls = _candidate(data, first_call=called)
                if text or calls:
                    pieces = tuple(
                        ToolCallDelta(index=called + i, id=c.id, name=c.name, arguments=c.arguments)
                        for i, c in enumerate(calls)
                    )
                    called += len(calls)
                    yield ChatChunk(text=text, tool_calls=pieces)
                finish_reason = reason or finish_reason
                if called and finish_reason == "stop":
                    finish_reason = "tool_calls"
            if finish_reason is not None:
                yield ChatChunk(usage=usage, finish_reason=finish_reason)
                return
        raise InvalidResponse("stream ended before any candidate had a finishReason")

    async def complete(self, endpoint: Endpoint, request: ChatRequest) -> ChatResult:
        body = await request_json(
            endpoint,
            "POST",
            self.model_url(endpoint, request.model, "generateContent"),
            headers=self.headers(endpoint),
            json_body=self.payload(request),
        )
        if not isinstance(body, dict):
            raise InvalidResponse("response is not a JSON object")
        text, reason, calls = _candidate(body, first_call=0)
        if reason is None:
            raise InvalidResponse("response has no candidate with a finishReason")
        return ChatResult(
            text=text,
            model=body.get("modelVersion") or request.model,
            usage=_usage(body["usageMetadata"]) if body.get("usageMetadata") else None,
            finish_reason="tool_calls" if calls and reason == "stop" else reason,
            tool_calls=calls,
        )

    async def list_models(self, endpoint: Endpoint) -> list[str]:
        url = join_url(endpoint.base_url, "v1beta/models")
        models: list[str] = []
        params: dict[str, str] = {"pageSize": "1000"}
        for _ in range(MODEL_PAGES_MAX):
            body = await request_json(
                endpoint, "GET", url, headers=self.headers(endpoint), params=params
            )
            try:
                for model in body["models"]:
                    methods = model.get("supportedGenerationMethods")
                    # Embedding and other non-chat models are listed too; skip them.
                    if methods is None or "generateContent" in methods:
                        models.append(str(model["name"]).removeprefix("models/"))
            except (KeyError, TypeError, AttributeError):
                raise InvalidResponse("model list has no models[].name") from None
            token = body.get("nextPageToken")
            if not token:
                break
            params = {"pageSize": "1000", "pageToken": str(token)}
        return models


def _contents(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """The turns but the system's. The `tool` turns that answer one turn's calls go back
    together, as the `functionResponse` parts of one user turn, each named by its call's
    function (Gemini matches them to the calls by name and order)."""
    names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for message in messages:
        # The latest call of an id names its result (ids may repeat from turn to turn).
        names |= {call.id: call.name for call in message.tool_calls}
        if message.role == "system":
            continue
        if message.role == "tool":
            part = {"functionResponse": _function_response(message, names)}
            last = contents[-1] if contents else None
            if last is not None and all("functionResponse" in p for p in last["parts"]):
                last["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
            continue
        contents.append({"role": ROLES[message.role], "parts": _parts(message)})
    return contents


def _function_response(message: Message, names: dict[str, str]) -> dict[str, Any]:
    """A tool turn's result: its text as `response.content`, or the object it holds when it
    is a JSON object (what Gemini's examples send)."""
    name = names.get(message.tool_call_id or "")
    if name is None:
        raise ProviderRejected(
            f"tool message {message.tool_call_id!r} answers no tool call of the conversation",
            status=400,
        )
    try:
        value = json.loads(message.content)
    except ValueError:
        value = None
    response = value if isinstance(value, dict) else {"content": message.content}
    return {"name": name, "response": response}


def _calling(choice: ToolChoice) -> dict[str, Any]:
    config: dict[str, Any] = {"mode": CALLING_MODES[choice.mode]}
    if choice.mode == "function":
        config["allowedFunctionNames"] = [choice.name]
    return config


def _args(call: ToolCall) -> dict[str, Any]:
    value = tool_arguments_object(call)
    if value is None:
        raise ProviderRejected(
            f"tool call {call.id}: its arguments are not a JSON object", status=400
        )
    return value


def _parts(message: Message) -> list[dict[str, Any]]:
    """A turn's parts: its text, after its images when it carries any (as Google recommends),
    by the JSON names the rest of the body uses; an empty text is left out beside images."""
    if message.tool_calls:
        calls = [_function_call(call) for call in message.tool_calls]
        return ([{"text": message.content}] if message.content else []) + calls
    if not message.images:
        return [{"text": message.content}]
    parts: list[dict[str, Any]] = [
        {"inlineData": {"mimeType": image.media_type, "data": image.data}}
        for image in message.images
    ]
    if message.content:
        parts.append({"text": message.content})
    return parts


def _function_call(call: ToolCall) -> dict[str, Any]:
    """An assistant turn's call as its `functionCall` part, with its thought signature beside
    it when its id carries one."""
    part: dict[str, Any] = {"functionCall": {"name": call.name, "args": _args(call)}}
    _, signature = tool_call_id_split(call.id)
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def _candidate(
    data: Mapping[str, Any], *, first_call: int
) -> tuple[str, str | None, tuple[ToolCall, ...]]:
    """The first candidate's text, normalised finish reason (None while unfinished) and
    function calls; a call Gemini gave no id is named by its place in the answer (`call_<n>`,
    n counted from 0: `first_call` calls came before), and a call's id carries the thought
    signature of its part."""
    candidates = data.get("candidates") or []
    if not candidates:
        if (data.get("promptFeedback") or {}).get("blockReason"):
            return "", "content_filter", ()
        return "", None, ()
    try:
        first = candidates[0]
        parts = (first.get("content") or {}).get("parts") or []
        # Thought summaries are not part of the answer.
        text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
        found = [p for p in parts if p.get("functionCall")]
        calls = tuple(
            ToolCall(
                id=tool_call_id_signed(
                    str(part["functionCall"].get("id") or f"call_{first_call + n}"),
                    _signature(part),
                ),
                name=str(part["functionCall"]["name"]),
                arguments=json_text(part["functionCall"].get("args") or {}),
            )
            for n, part in enumerate(found)
        )
        reason = first.get("finishReason")
    except (AttributeError, TypeError, KeyError):
        raise InvalidResponse("candidate is not an object with content.parts[]") from None
    if not reason or reason == "FINISH_REASON_UNSPECIFIED":
        return text, None, calls
    return text, FINISH_REASONS.get(reason, str(reason).lower()), calls


def _signature(part: Mapping[str, Any]) -> str | None:
    signature = part.get("thoughtSignature")
    return signature if isinstance(signature, str) and signature else None


def _usage(raw: Mapping[str, Any]) -> Usage:
    try:
        prompt = int(raw.get("promptTokenCount") or 0)
        cached = int(raw.get("cachedContentTokenCount") or 0)
        # Thinking tokens are billed as output.
        output = int(raw.get("candidatesTokenCount") or 0) + int(raw.get("thoughtsTokenCount") or 0)
    except (TypeError, ValueError, AttributeError):
        raise InvalidResponse(f"unreadable usageMetadata: {raw!r}") from None
    # promptTokenCount includes the cached tokens; Usage keeps them apart.
    return Usage(input=prompt - cached, output=output, cached=cached)


def _error(data: Mapping[str, Any], endpoint: Endpoint) -> Exception:
    error = data.get("error")
    code = error.get("code") if isinstance(error, Mapping) else None
    status = code if isinstance(code, int) and code >= 400 else None
    return provider_error(status=status, body=dict(data), secret=endpoint.api_key)
