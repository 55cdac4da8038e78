"""OpenAI Chat Completions (`POST {base}/chat/completions`), also spoken by OpenAI-compatible
servers (vLLM, llama.cpp's server, LM Studio, Azure and GitHub models by base URL).

`base_url` includes the version prefix, e.g. `https://api.openai.com/v1`. A stream is SSE
`data:` lines of `chat.completion.chunk` objects ended by `data: [DONE]`; with
`stream_options.include_usage` the provider sends the usage in one last chunk whose
`choices` is empty. Servers that ignore that option send no usage: the stream then reports
`usage=None` and the caller counts tokens itself.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

from providers.adapters.framing import sse_event_batches
from providers.adapters.types import (
    ChatChunk,
    ChatRequest,
    ChatResult,
    Endpoint,
    InvalidResponse,
    Message,
    ProviderError,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
    tool_call_id_own,
    tool_call_id_signed,
    tool_call_id_split,
    tool_calls_join,
)
from providers.adapters.upstream import join_url, loads, open_stream, provider_error, request_json

DONE = "[DONE]"
FINISH_REASONS = {"function_call": "tool_calls"}


class OpenAIChatAdapter:
    # OpenAI's own API deprecated `max_tokens` for `max_completion_tokens` (its reasoning
    # models refuse the old name); compatible servers mostly know only the old one.
    max_tokens_field = "max_completion_tokens"
    # Google's OpenAI-compatible endpoint carries a Gemini model's thought signature on a tool
    # call as `extra_content.google.thought_signature` and wants it back there; OpenAI's own API
    # knows no such field.
    thought_signatures = False

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {"accept": "application/json"}
        if endpoint.api_key:
            headers["authorization"] = f"Bearer {endpoint.api_key}"
        return headers

    def payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m, self.thought_signatures) for m in request.messages],
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.max_tokens is not None:
            body[self.max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools:
            body["tools"] = [_tool(tool) for tool in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = _tool_choice(request.tool_choice)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.response_format is not None:
            body["response_format"] = _response_format(request.response_format)
        return body

    async def stream(
        self, endpoint: Endpoint, request: ChatRequest
    ) -> AsyncGenerator[ChatChunk, None]:
        """The answer's chunks. The deltas that arrived together (one read of the body) come
        as one chunk, with the end of the stream too when `[DONE]` was among them: a fast
        upstream's whole answer is then one chunk instead of one per token, and every layer
        above handles one event instead of dozens. Text before an error in the same read is
        yielded before the error is raised."""
        url = join_url(endpoint.base_url, "chat/completions")
        headers = self.headers(endpoint) | {"accept": "text/event-stream"}
        usage: Usage | None = None
        finish_reason: str | None = None
        async with open_stream(
            endpoint,
            url,
            json_body=self.payload(request, stream=True),
            headers=headers,
            frames=sse_event_batches,
        ) as batches:
            async for events in batches:
                texts: list[str] = []
                calls: list[ToolCallDelta] = []
                try:
                    for event in events:
                        data = event.data
                        # A chunk is a JSON object: only what is not one can be the end.
                        if data[:1] != "{" and data.strip() == DONE:
                            done = True
                            break
                        chunk = loads(data)
                        if not isinstance(chunk, dict):
                            raise InvalidResponse("stream chunk is not a JSON object")
                        if "error" in chunk:
                            raise provider_error(body=chunk, secret=endpoint.api_key)
                        if chunk.get("usage"):
                            usage = _usage(chunk["usage"])
                        for choice in chunk.get("choices") or ():
                            if choice.get("index", 0) != 0:
                                continue
                            delta = choice.get("delta") or {}
                            text = delta.get("content")
                            if text:
                                texts.append(text)
                            if delta.get("tool_calls"):
                                calls.extend(_tool_call_deltas(delta["tool_calls"]))
                            if choice.get("finish_reason"):
                                finish_reason = _finish_reason(choice["finish_reason"])
                    else:
                        done = False
                except ProviderError:
                    if texts or calls:
                        yield ChatChunk(text="".join(texts), tool_calls=tuple(calls))
                    raise
                if done:
                    yield ChatChunk(
                        text="".join(texts),
                        usage=usage,
                        finish_reason=finish_reason,
                        tool_calls=tuple(calls),
                    )
                    return
                if texts or calls:
                    yield ChatChunk(text="".join(texts), tool_calls=tuple(calls))
        raise InvalidResponse("stream ended without data: [DONE]")

    async def complete(self, endpoint: Endpoint, request: ChatRequest) -> ChatResult:
        body = await request_json(
            endpoint,
            "POST",
            join_url(endpoint.base_url, "chat/completions"),
            headers=self.headers(endpoint),
            json_body=self.payload(request, stream=False),
        )
        try:
            choice = body["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise InvalidResponse("completion has no choices[0].message") from None
        reason = choice.get("finish_reason")
        calls = tool_calls_join(
            _tool_call_deltas(
                [{"index": i} | call for i, call in enumerate(message.get("tool_calls") or ())]
            )
        )
        return ChatResult(
            text=text,
            model=body.get("model") or request.model,
            usage=_usage(body["usage"]) if body.get("usage") else None,
            finish_reason=_finish_reason(reason) if reason else None,
            tool_calls=calls,
        )

    async def list_models(self, endpoint: Endpoint) -> list[str]:
        body = await request_json(
            endpoint, "GET", join_url(endpoint.base_url, "models"), headers=self.headers(endpoint)
        )
        try:
            return [str(model["id"]) for model in body["data"]]
        except (KeyError, TypeError):
            raise InvalidResponse("model list has no data[].id") from None


class OpenAICompatibleAdapter(OpenAIChatAdapter):
    max_tokens_field = "max_tokens"
    thought_signatures = True


def _message(message: Message, signatures: bool = False) -> dict[str, Any]:
    """A message as Chat Completions takes it: its text as a string, or with images a list of
    parts, the images (as data URLs) before the text, and no text part for empty text. An
    assistant turn that called tools has its calls (and null content when it said nothing),
    by their own ids, with the thought signature a call's id carries as Google's
    `extra_content` where `signatures`; a tool turn names the call it answers."""
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": tool_call_id_own(message.tool_call_id),
            "content": message.content,
        }
    if message.tool_calls:
        return {
            "role": message.role,
            "content": message.content or None,
            "tool_calls": [_call(call, signatures) for call in message.tool_calls],
        }
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": image.data_url}} for image in message.images
    ]
    if message.content:
        parts.append({"type": "text", "text": message.content})
    return {"role": message.role, "content": parts}


def _call(call: ToolCall, signatures: bool) -> dict[str, Any]:
    own, signature = tool_call_id_split(call.id)
    body: dict[str, Any] = {
        "id": own,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    if signatures and signature is not None:
        body["extra_content"] = {"google": {"thought_signature": signature}}
    return body


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice) -> Any:
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _response_format(form: ResponseFormat) -> dict[str, Any]:
    if form.type == "json_object":
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": form.name}
    if form.description is not None:
        schema["description"] = form.description
    if form.schema is not None:
        schema["schema"] = form.schema
    if form.strict is not None:
        schema["strict"] = form.strict
    return {"type": "json_schema", "json_schema": schema}


def _tool_call_deltas(raw: Any) -> list[ToolCallDelta]:
    """The pieces of tool calls in a delta's (or a message's) `tool_calls`."""
    if not isinstance(raw, list):
        raise InvalidResponse(f"unreadable tool_calls: {raw!r}")
    pieces = []
    for item in raw:
        function = item.get("function") if isinstance(item, dict) else None
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(function, dict | None) or type(index) is not int:
            raise InvalidResponse(f"unreadable tool call: {item!r}")
        function = function or {}
        arguments = function.get("arguments") or ""
        call_id = item.get("id") or None
        if call_id is not None:
            # A Gemini model's, through Google's OpenAI-compatible endpoint: kept in the id.
            call_id = tool_call_id_signed(str(call_id), _signature(item))
        pieces.append(
            ToolCallDelta(
                index=index,
                id=call_id,
                name=function.get("name") or None,
                arguments=arguments if isinstance(arguments, str) else str(arguments),
            )
        )
    return pieces


def _signature(item: Mapping[str, Any]) -> str | None:
    extra = item.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def _usage(raw: Mapping[str, Any]) -> Usage:
    try:
        prompt = int(raw.get("prompt_tokens") or 0)
        completion = int(raw.get("completion_tokens") or 0)
        details = raw.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0)
    except (TypeError, ValueError, AttributeError):
        raise InvalidResponse(f"unreadable usage: {raw!r}") from None
    # OpenAI counts cached tokens inside prompt_tokens; Usage keeps them apart.
    return Usage(input=prompt - cached, output=completion, cached=cached)


def _finish_reason(raw: str) -> str:
    return FINISH_REASONS.get(raw, raw.lower())
