"""Anthropic Messages (`POST {base}/v1/messages`), `base_url` without the version, e.g.
`https://api.anthropic.com`.

A stream is SSE with named events: `message_start` (input usage), `content_block_start` (a
`tool_use` block's id and name), `content_block_delta` (`text_delta` pieces, and
`input_json_delta` pieces of a tool call's arguments), `message_delta` (stop reason, cumulative
output usage), `message_stop` (the terminator), `ping`, and `error` for failures after the 200
status.

Tools are translated exactly: a function becomes a tool with its `input_schema`, an assistant
turn's tool calls `tool_use` blocks, a `tool` turn a `tool_result` block in a user turn, and the
answer's `tool_use` blocks tool calls (stop reason `tool_use`: finish reason `tool_calls`).
Anthropic has no JSON answer mode: a request for one is refused.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

from providers.adapters.framing import sse_events
from providers.adapters.types import (
    ChatChunk,
    ChatRequest,
    ChatResult,
    Endpoint,
    FeatureUnsupported,
    InvalidResponse,
    Message,
    ProviderError,
    ProviderRejected,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
    json_text,
    tool_arguments_object,
    tool_call_id_own,
)
from providers.adapters.upstream import join_url, loads, open_stream, provider_error, request_json

API_VERSION = "2023-06-01"
# The API requires max_tokens; this is used when the request leaves it open.
DEFAULT_MAX_TOKENS = 4096
MODEL_PAGES_MAX = 20
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Error event types carry no HTTP status; these are the statuses the same types come with
# on a plain error response, so one mapping serves both.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicMessagesAdapter:
    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {"accept": "application/json", "anthropic-version": API_VERSION}
        if endpoint.api_key:
            headers["x-api-key"] = endpoint.api_key
        return headers

    def payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        if request.response_format is not None:
            raise FeatureUnsupported(
                "response_format: Anthropic's Messages API has no JSON answer mode",
                code="JSON_OUTPUT_NOT_SUPPORTED",
            )
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": _messages(request.messages),
            "stream": stream,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.tools:
            body["tools"] = [
                {"name": tool.name}
                | ({"description": tool.description} if tool.description is not None else {})
                | {"input_schema": tool.parameters or {"type": "object", "properties": {}}}
                | ({"strict": tool.strict} if tool.strict is not None else {})
                for tool in request.tools
            ]
            choice = _tool_choice(request.tool_choice, request.parallel_tool_calls)
            if choice is not None:
                body["tool_choice"] = choice
        return body

    async def stream(
        self, endpoint: Endpoint, request: ChatRequest
    ) -> AsyncGenerator[ChatChunk, None]:
        url = join_url(endpoint.base_url, "v1/messages")
        headers = self.headers(endpoint) | {"accept": "text/event-stream"}
        usage: dict[str, Any] = {}
        finish_reason: str | None = None
        # A content block's index, for each tool_use block: the index of its tool call.
        calls: dict[int, int] = {}
        async with open_stream(
            endpoint,
            url,
            json_body=self.payload(request, stream=True),
            headers=headers,
            frames=sse_events,
        ) as events:
            async for event in events:
                data = loads(event.data)
                if not isinstance(data, dict):
                    raise InvalidResponse(f"{event.event} event is not a JSON object")
                kind = data.get("type", event.event)
                if kind == "message_start":
                    usage.update((data.get("message") or {}).get("usage") or {})
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    if block.get("type") == "tool_use":
                        calls[data.get("index", -1)] = len(calls)
                        yield ChatChunk(
                            tool_calls=(
                                ToolCallDelta(
                                    index=len(calls) - 1,
                                    id=str(block.get("id") or ""),
                                    name=str(block.get("name") or ""),
                                ),
                            )
                        )
                elif kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        yield ChatChunk(text=delta["text"])
                    elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                        call = calls.get(data.get("index", -1))
                        if call is None:
                            raise InvalidResponse("input_json_delta outside a tool_use block")
                        yield ChatChunk(
                            tool_calls=(ToolCallDelta(index=call, arguments=delta["partial_json"]),)
                        )
                elif kind == "message_delta":
                    # Its usage counts are cumulative, so they replace the earlier ones.
                    usage.update(data.get("usage") or {})
                    reason = (data.get("delta") or {}).get("stop_reason")
                    if reason:
                        finish_reason = _finish_reason(reason)
                elif kind == "message_stop":
                    yield ChatChunk(
                        usage=_usage(usage) if usage else None, finish_reason=finish_reason
                    )
                    return
                elif kind == "error":
                    raise _error_event(data, endpoint)
        raise InvalidResponse("stream ended without a message_stop event")

    async def complete(self, endpoint: Endpoint, request: ChatRequest) -> ChatResult:
        body = await request_json(
            endpoint,
            "POST",
            join_url(endpoint.base_url, "v1/messages"),
            headers=self.headers(endpoint),
            json_body=self.payload(request, stream=False),
        )
        try:
            text = "".join(
                block["text"] for block in body["content"] if block.get("type") == "text"
            )
            calls = tuple(
                ToolCall(id=block["id"], name=block["name"], arguments=json_text(block["input"]))
                for block in body["content"]
                if block.get("type") == "tool_use"
            )
        except (KeyError, TypeError, AttributeError):
            raise InvalidResponse("message has no content[] text or tool_use blocks") from None
        reason = body.get("stop_reason")
        return ChatResult(
            text=text,
            model=body.get("model") or request.model,
            usage=_usage(body["usage"]) if body.get("usage") else None,
            finish_reason=_finish_reason(reason) if reason else None,
            tool_calls=calls,
        )

    async def list_models(self, endpoint: Endpoint) -> list[str]:
        url = join_url(endpoint.base_url, "v1/models")
        models: list[str] = []
        params: dict[str, str] = {"limit": "1000"}
        for _ in range(MODEL_PAGES_MAX):
            body = await request_json(
                endpoint, "GET", url, headers=self.headers(endpoint), params=params
            )
            try:
                models.extend(str(model["id"]) for model in body["data"])
            except (KeyError, TypeError):
                raise InvalidResponse("model list has no data[].id") from None
            if not body.get("has_more") or not body.get("last_id"):
                break
            params = {"limit": "1000", "after_id": str(body["last_id"])}
        return models


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """The turns but the system's. The results of one turn's tool calls go back together, as
    `tool_result` blocks of one user turn (Anthropic wants them all in the turn after it)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": tool_call_id_own(message.tool_call_id),
                "content": message.content,
            }
            last = out[-1] if out else None
            if (
                last is not None
                and last["role"] == "user"
                and isinstance(last["content"], list)
                and all(block["type"] == "tool_result" for block in last["content"])
            ):
                last["content"].append(result)
            else:
                out.append({"role": "user", "content": [result]})
            continue
        if message.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": message.content}] if message.content else []
            )
            blocks += [
                {
                    "type": "tool_use",
                    "id": tool_call_id_own(call.id),
                    "name": call.name,
                    "input": _input(call),
                }
                for call in message.tool_calls
            ]
            out.append({"role": "assistant", "content": blocks})
            continue
        out.append({"role": message.role, "content": _content(message)})
    return out


def _input(call: ToolCall) -> Any:
    """A tool call's arguments as the object Anthropic takes (the JSON text parsed)."""
    value = tool_arguments_object(call)
    if value is None:
        raise ProviderRejected(
            f"tool call {call.id}: its arguments are not a JSON object", status=400
        )
    return value


def _tool_choice(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    """OpenAI's `tool_choice` (auto, none, required, a function) as Anthropic's (auto, none,
    any, tool); `parallel_tool_calls: false` as `disable_parallel_tool_use`."""
    if choice is None and parallel is not False:
        return None
    mode = choice.mode if choice is not None else "auto"
    found: dict[str, Any] = {"type": {"required": "any", "function": "tool"}.get(mode, mode)}
    if choice is not None and choice.mode == "function":
        found["name"] = choice.name
    if parallel is False and mode != "none":
        found["disable_parallel_tool_use"] = True
    return found


def _content(message: Message) -> str | list[dict[str, Any]]:
    """A message's text, or, when it carries images, its content blocks: the images first (as
    Anthropic recommends), then the text unless it is empty."""
    if not message.images:
        return message.content
    blocks: list[dict[str, Any]] = [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": image.media_type, "data": image.data},
        }
        for image in message.images
    ]
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    return blocks


def _usage(raw: Mapping[str, Any]) -> Usage:
    try:
        # Cache writes are billed at least at the input price, so they count as input.
        uncached = int(raw.get("input_tokens") or 0) + int(
            raw.get("cache_creation_input_tokens") or 0
        )
        return Usage(
            input=uncached,
            output=int(raw.get("output_tokens") or 0),
            cached=int(raw.get("cache_read_input_tokens") or 0),
        )
    except (TypeError, ValueError):
        raise InvalidResponse(f"unreadable usage: {dict(raw)!r}") from None


def _finish_reason(raw: str) -> str:
    return FINISH_REASONS.get(raw, raw.lower())


def _error_event(data: Mapping[str, Any], endpoint: Endpoint) -> ProviderError:
    error = data.get("error") or {}
    status = ERROR_STATUS.get(error.get("type", "")) if isinstance(error, Mapping) else None
    return provider_error(status=status, body=dict(data), secret=endpoint.api_key)
