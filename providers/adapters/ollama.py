"""Ollama's native API (`POST {base}/api/chat`, `GET {base}/api/tags`), `base_url` being the
server root, e.g. `http://127.0.0.1:11434`.

A stream is NDJSON: one object per line with a `message.content` piece, ended by an object
with `"done": true` that carries `done_reason`, `prompt_eval_count` and `eval_count`.
Failures after the 200 status arrive as a line `{"error": "..."}`.
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
    InvalidResponse,
    Message,
    Usage,
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
            "messages": [_message(m) for m in request.messages],
            "stream": stream,
        }
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
            async for line in lines:
                data = loads(line)
                if not isinstance(data, dict):
                    raise InvalidResponse("stream line is not a JSON object")
                if "error" in data:
                    raise provider_error(body=data, secret=endpoint.api_key)
                text = (data.get("message") or {}).get("content")
                if text:
                    yield ChatChunk(text=text)
                if data.get("done") is True:
                    yield ChatChunk(usage=_usage(data), finish_reason=_finish_reason(data))
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
        except (KeyError, TypeError):
            raise InvalidResponse("response has no message.content") from None
        if body.get("done") is not True:
            raise InvalidResponse('response is not "done": true')
        return ChatResult(
            text=text,
            model=body.get("model") or request.model,
            usage=_usage(body),
            finish_reason=_finish_reason(body),
        )

    async def list_models(self, endpoint: Endpoint) -> list[str]:
        body = await request_json(
            endpoint, "GET", join_url(endpoint.base_url, "api/tags"), headers=self.headers(endpoint)
        )
        try:
            return [str(model["name"]) for model in body["models"]]
        except (KeyError, TypeError):
            raise InvalidResponse("tag list has no models[].name") from None


def _message(message: Message) -> dict[str, Any]:
    """A message as `/api/chat` takes it: with images, their base64 beside the text."""
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        body["images"] = [image.data for image in message.images]
    return body


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


def _finish_reason(data: Mapping[str, Any]) -> str:
    return str(data.get("done_reason") or "stop").lower()
