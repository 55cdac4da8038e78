"""Ollama's native API (`POST {base}/api/chat`, `GET {base}/api/tags`), `base_url` being the
server root, e.g. `http://127.0.0.1:11434`.

A stream is NDJSON: one object per line with a `message.content` piece, ended by an object
with `"done": true` that carries `done_reason`, `prompt_eval_count` and `eval_count`.
Failures after the 200 status arrive as a line `{"error": "..."}`.

Tools are translated exactly: Ollama takes OpenAI's function tools as they are, an assistant
turn's tool calls with their arguments as an object, and a `tool` turn with the called
function's `tool_name`; its answer's `message.tool_calls` (arguments as an object, each call
whole in one line) become tool calls. Ollama chooses among the tools itself: `tool_choice`
`none` sends no tools and `auto` is its own behaviour; `required`, a named function and
`parallel_tool_calls: false` are refused. A JSON answer is its `format`: `"json"`, or the
schema of a `json_schema` answer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

from providers.adapters.framing import ndjson_lines
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
    Usage,
    json_text,
    tool_arguments_object,
)
from providers.adapters.upstream import join_url, loads, open_stream, provider_error, request_json


class OllamaAdapter:
    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        # Ollama itself has no auth; a key is for a proxy in front of it.
        headers = {"accept": "application/json"}
        if endpoint.api_key:
            headers["authorization"] = f"Bearer {endpoint.api_key}"
        return headers

    def payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.stop:
            options["stop"] = list(request.stop)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request.messages),
            "stream": stream,
        }
        if request.tools and (request.tool_choice is None or request.tool_choice.mode != "none"):
            _tool_choice_check(request)
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": tool.name}
                    | ({"description": tool.description} if tool.description is not None else {})
                    | ({"parameters": tool.parameters} if tool.parameters is not None else {}),
                }
                for tool in request.tools
            ]
        form = request.response_format
        if form is not None:
            body["format"] = "json" if form.type == "json_object" else (form.schema or "json")
        if options:
            body["options"] = options
        return body

    async def stream(
        self, endpoint: Endpoint, request: ChatRequest
    ) -> AsyncGenerator[ChatChunk, None]:
        url = join_url(endpoint.base_url, "api/chat")
        headers = self.headers(endpoint) | {"accept": "application/x-ndjson"}
        async with open_stream(
            endpoint,
            url,
            json_body=self.payload(request, stream=True),
            headers=headers,
            frames=ndjson_lines,
        ) as lines:
            called = 0
            async for line in lines:
                data = loads(line)
                if not isinstance(data, dict):
                    raise InvalidResponse("stream line is not a JSON object")
                if "error" in data:
                    raise provider_error(body=data, secret=endpoint.api_key)
                message = data.get("message") or {}
                text = message.get("content")
                calls = _tool_calls(message.get("tool_calls"), first=called)
                if text or calls:
                    pieces = tuple(
                        ToolCallDelta(index=called + i, id=c.id, name=c.name, arguments=c.arguments)
                        for i, c in enumerate(calls)
                    )
                    called += len(calls)
                    yield ChatChunk(text=text or "", tool_calls=pieces)
                if data.get("done") is True:
                    yield ChatChunk(usage=_usage(data), finish_reason=_finish_reason(data, called))
                    return
        raise InvalidResponse('stream ended without a "done": true line')

    async def complete(self, endpoint: Endpoint, request: ChatRequest) -> ChatResult:
        body = await request_json(
            endpoint,
            "POST",
            join_url(endpoint.base_url, "api/chat"),
            headers=self.headers(endpoint),
            json_body=self.payload(request, stream=False),
        )
        try:
            text = body["message"]["content"] or ""
            calls = _tool_calls(body["message"].get("tool_calls"), first=0)
        except (KeyError, TypeError, AttributeError):
            raise InvalidResponse("response has no message.content") from None
        if body.get("done") is not True:
            raise InvalidResponse('response is not "done": true')
        return ChatResult(
            text=text,
            model=body.get("model") or request.model,
            usage=_usage(body),
            finish_reason=_finish_reason(body, len(calls)),
            tool_calls=calls,
        )

    async def list_models(self, endpoint: Endpoint) -> list[str]:
        body = await request_json(
            endpoint, "GET", join_url(endpoint.base_url, "api/tags"), headers=self.headers(endpoint)
        )
        try:
            return [str(model["name"]) for model in body["models"]]
        except (KeyError, TypeError):
            raise InvalidResponse("tag list has no models[].name") from None


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    names: dict[str, str] = {}
    out = []
    for message in messages:
        # The latest call of an id names its result (ids may repeat from turn to turn).
        names |= {call.id: call.name for call in message.tool_calls}
        out.append(_message(message, names))
    return out


def _message(message: Message, names: dict[str, str]) -> dict[str, Any]:
    """A message as `/api/chat` takes it: with images, their base64 beside the text; an
    assistant turn's tool calls with their arguments as objects; a tool turn with the name of
    the function whose result it is (`names`: each call's function, by the call's id)."""
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        body["images"] = [image.data for image in message.images]
    if message.tool_calls:
        body["tool_calls"] = [
            {"function": {"name": call.name, "arguments": _arguments_object(call)}}
            for call in message.tool_calls
        ]
    if message.role == "tool" and message.tool_call_id in names:
        body["tool_name"] = names[message.tool_call_id]
    return body


def _arguments_object(call: ToolCall) -> dict[str, Any]:
    value = tool_arguments_object(call)
    if value is None:
        raise ProviderRejected(
            f"tool call {call.id}: its arguments are not a JSON object", status=400
        )
    return value


def _tool_choice_check(request: ChatRequest) -> None:
    choice = request.tool_choice
    if choice is not None and choice.mode in ("required", "function"):
        raise FeatureUnsupported(
            f"tool_choice: Ollama chooses among the tools itself; {choice.mode} is not carried",
            code="TOOLS_NOT_SUPPORTED",
        )
    if request.parallel_tool_calls is False:
        raise FeatureUnsupported(
            "parallel_tool_calls: Ollama may call several tools at once; false is not carried",
            code="TOOLS_NOT_SUPPORTED",
        )


def _tool_calls(raw: Any, *, first: int) -> tuple[ToolCall, ...]:
    """`message.tool_calls` as tool calls; a call Ollama gave no id is named by its place in
    the answer (`call_<n>`, n counted from 0)."""
    if not raw:
        return ()
    if not isinstance(raw, list):
        raise InvalidResponse(f"unreadable tool_calls: {raw!r}")
    calls = []
    for offset, item in enumerate(raw):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidResponse(f"unreadable tool call: {item!r}")
        arguments = function.get("arguments")
        calls.append(
            ToolCall(
                id=str(item.get("id") or f"call_{first + offset}"),
                name=function["name"],
                arguments=json_text(arguments if arguments is not None else {}),
            )
        )
    return tuple(calls)


def _usage(data: Mapping[str, Any]) -> Usage | None:
    if "prompt_eval_count" not in data and "eval_count" not in data:
        return None
    try:
        return Usage(
            input=int(data.get("prompt_eval_count") or 0),
            output=int(data.get("eval_count") or 0),
        )
    except (TypeError, ValueError):
        raise InvalidResponse("unreadable prompt_eval_count / eval_count") from None


def _finish_reason(data: Mapping[str, Any], calls: int = 0) -> str:
    """Ollama says `stop` after tool calls too: an answer that called tools ends with
    `tool_calls`, as OpenAI's does."""
    reason = str(data.get("done_reason") or "stop").lower()
    return "tool_calls" if calls and reason == "stop" else reason
