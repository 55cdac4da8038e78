"""The OpenAI-compatible endpoints under /v1: plain async views, so a request never leaves the
event loop for a thread on its way through. The request is read and checked by
`gateway.openai_parse`; the views hand the `GatewayRequest` to `chat_stream` and shape its
events into OpenAI's wire format (answers and errors); nothing else.

Extension data rides along without breaking the schema: `x-orchestrator-*` headers on every
answer and an `orchestrator` object on completion bodies and on the last stream chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
)
from django.views.decorators.csrf import csrf_exempt

from core.shutdown import SHUTDOWN_MESSAGE, cut_short_by_shutdown
from core.threads import in_thread
from gateway.auth import GatewayError, caller_from_key, rate_limit_headers
from gateway.openai_parse import chat_request_read
from gateway.shaping import (
    answer_opening,
    json_response,
    orchestrator_extension,
    orchestrator_headers,
    streamed_response,
)
from providers.adapters.types import ToolCallDelta
from providers.models import LLMModel
from routing.pipeline.events import (
    Delta,
    Event,
    Failed,
    Finished,
    GatewayRequest,
)
from routing.pipeline.journal import journaled
from routing.plans.run import long_context_stream
from routing.services import chat_stream

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout",
}
# Where OpenAI has its own code for a refusal, /v1 answers with it: clients look for it.
OPENAI_CODES = {"TOKEN_LIMIT_EXCEEDED": "context_length_exceeded"}
OPENAI_PARAMS = {"TOKEN_LIMIT_EXCEEDED": "messages"}


def openai_error(
    code: str,
    message: str,
    status: int,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    trace_id: str | None = None,
) -> HttpResponse:
    """OpenAI's error shape; `trace_id` (the request's id, also in the
    `x-orchestrator-request-id` header) names the log row of a request that was logged."""
    error: dict[str, Any] = {
        "message": message,
        "type": ERROR_TYPES.get(status, "api_error"),
        "param": param,
        "code": code,
    }
    if trace_id is not None:
        error["trace_id"] = trace_id
        headers = (headers or {}) | {"x-orchestrator-request-id": trace_id}
    return json_response({"error": error}, status=status, headers=headers)


def _error_of(exc: GatewayError) -> HttpResponse:
    return openai_error(
        exc.code,
        exc.message,
        exc.status,
        param=exc.details.get("field"),
        headers=rate_limit_headers(exc.rate_limit, exc.retry_after_s),
        trace_id=exc.trace_id,
    )


def _usage(event: Finished) -> dict[str, Any]:
    prompt = event.usage.input + event.usage.cached
    return {
        "prompt_tokens": prompt,
        "completion_tokens": event.usage.output,
        "total_tokens": prompt + event.usage.output,
        "prompt_tokens_details": {"cached_tokens": event.usage.cached},
    }


def _failure(event: Failed, request_id: str) -> HttpResponse:
    headers = orchestrator_headers(request_id, None) | rate_limit_headers(
        event.rate_limit, event.retry_after_s
    )
    return openai_error(
        OPENAI_CODES.get(event.code, event.code),
        event.message,
        event.http_status,
        param=OPENAI_PARAMS.get(event.code) or event.details.get("field"),
        headers=headers,
        trace_id=request_id,
    )


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return openai_error("INVALID_REQUEST", "Use POST.", 405)
    try:
        gateway_request, stream, include_usage, document = await chat_request_read(request)
    except GatewayError as exc:
        return _error_of(exc)
    answer = (
        chat_stream(gateway_request)
        if document is None
        else long_context_stream(gateway_request, document=document)
    )
    events = journaled(answer, request=gateway_request)
    if stream:
        return await _streamed(events, gateway_request, include_usage)
    return await _completed(events, gateway_request)


async def _completed(events: AsyncGenerator[Event, None], request: GatewayRequest) -> HttpResponse:
    request_id = str(request.request_id)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Failed):
                return _failure(event, request_id)
            if isinstance(event, Finished):
                body = {
                    "id": f"chatcmpl-{request.request_id.hex}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": event.model_ref,
                    "choices": [
                        {
                            "index": 0,
                            "message": _message(event),
                            "finish_reason": event.finish_reason or "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": _usage(event),
                    "system_fingerprint": None,
                    "orchestrator": orchestrator_extension(event),
                }
                headers = orchestrator_headers(request_id, event) | rate_limit_headers(
                    event.rate_limit
                )
                headers["x-orchestrator-fallbacks"] = str(event.fallbacks)
                return json_response(body, headers=headers)
        raise RuntimeError("chat_stream ended without a terminal event")


def _message(event: Finished) -> dict[str, Any]:
    """The answer's message: its text, and the tool calls it made (content null when it
    said nothing besides them, as OpenAI answers)."""
    if not event.tool_calls:
        return {"role": "assistant", "content": event.text}
    return {
        "role": "assistant",
        "content": event.text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in event.tool_calls
        ],
    }


def tool_call_deltas(pieces: tuple[ToolCallDelta, ...]) -> list[dict[str, Any]]:
    """Streamed pieces of tool calls as OpenAI's `delta.tool_calls`: a call's first piece has
    its index, id, type and name (and the first of its arguments), a later one its index and
    more arguments; pieces of one call that arrived together are one."""
    out: list[dict[str, Any]] = []
    for piece in pieces:
        last = out[-1] if out else None
        if last is not None and last["index"] == piece.index and not (piece.id or piece.name):
            last["function"]["arguments"] += piece.arguments
            continue
        item: dict[str, Any] = {"index": piece.index}
        if piece.id or piece.name:
            item["id"] = piece.id
            item["type"] = "function"
            item["function"] = {"name": piece.name, "arguments": piece.arguments}
        else:
            item["function"] = {"arguments": piece.arguments}
        out.append(item)
    return out


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS) + b"\n\n"


async def _streamed(
    events: AsyncGenerator[Event, None], request: GatewayRequest, include_usage: bool
) -> HttpResponseBase:
    """Headers wait for the first token (or the terminal event), so they name the model that
    actually answers and a failure before any token is an ordinary HTTP error."""
    request_id = str(request.request_id)
    started, first = await answer_opening(events)
    if isinstance(first, Failed):
        return _failure(first, request_id)
    model = started.model_ref if started else getattr(first, "model_ref", "")
    chunk_id = f"chatcmpl-{request.request_id.hex}"
    created = int(time.time())

    # A text chunk is the same bytes around its text every time: built once, and each chunk
    # only encodes its text (a dict built and encoded per token was a tenth of the CPU of a
    # forwarded chunk). The bytes are what `_sse(chunk({"content": text}))` gives.
    head = b'data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,' % (
        orjson.dumps(chunk_id),
        created,
        orjson.dumps(model),
    )
    text_head = head + b'"choices":[{"index":0,"delta":{"content":'
    text_tail = b'},"finish_reason":null}]' + (b',"usage":null}\n\n' if include_usage else b"}\n\n")

    def text_chunk(text: str) -> bytes:
        return text_head + orjson.dumps(text) + text_tail

    def delta_chunks(delta: Delta) -> list[bytes]:
        """A delta's text chunk, then one chunk per tool call it carries a piece of."""
        out = [text_chunk(delta.text)] if delta.text else []
        if delta.tool_calls:
            out += [
                _sse(chunk({"tool_calls": [call]})) for call in tool_call_deltas(delta.tool_calls)
            ]
        return out

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        if include_usage:
            payload["usage"] = None
        return payload

    async def body() -> AsyncIterator[bytes]:
        # What is ready at once goes out as one piece: the role chunk with the first text, the
        # last chunk with the usage and `[DONE]`.
        out = [_sse(chunk({"role": "assistant", "content": ""}))]
        try:
            pending: Event | None = first
            while pending is not None:
                if type(pending) is Delta:
                    if pending.text or pending.tool_calls:
                        out += delta_chunks(pending)
                    if out:
                        yield b"".join(out) if len(out) > 1 else out[0]
                        out = []
                    # The common case, one token after another, without the checks below.
                    async for pending in events:
                        if type(pending) is not Delta:
                            break
                        if pending.tool_calls:
                            yield b"".join(delta_chunks(pending))
                        elif pending.text:
                            yield text_chunk(pending.text)
                    else:
                        pending = None
                    continue
                if isinstance(pending, Finished):
                    last = chunk({}, pending.finish_reason or "stop")
                    last["orchestrator"] = orchestrator_extension(pending)
                    out.append(_sse(last))
                    if include_usage:
                        out.append(
                            _sse(
                                {
                                    "id": chunk_id,
                                    "object": "chat.completion.chunk",
                                    "created": created,
                                    "model": model,
                                    "choices": [],
                                    "usage": _usage(pending),
                                }
                            )
                        )
                    out.append(b"data: [DONE]\n\n")
                    yield b"".join(out)
                    return
                elif isinstance(pending, Failed):
                    error = {
                        "message": pending.message,
                        "type": ERROR_TYPES.get(pending.http_status, "api_error"),
                        "param": OPENAI_PARAMS.get(pending.code),
                        "code": OPENAI_CODES.get(pending.code, pending.code),
                        "trace_id": request_id,
                    }
                    out.append(_sse({"error": error}))
                    yield b"".join(out)
                    return
                if out:
                    yield b"".join(out)
                    out = []
                pending = await anext(events, None)
        except asyncio.CancelledError:
            if not cut_short_by_shutdown():
                raise
            # The process is shutting down: the answer ends here with an error frame and a
            # clean end of the body (its request is logged as cancelled).
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            error = {
                "message": SHUTDOWN_MESSAGE,
                "type": "api_error",
                "param": None,
                "code": "server_shutting_down",
            }
            out.append(_sse({"error": error}))
            yield b"".join(out)
        finally:
            await events.aclose()

    return streamed_response(
        body(),
        content_type="text/event-stream",
        headers=orchestrator_headers(request_id, started),
        started=started,
    )


@csrf_exempt
async def models_list(request: HttpRequest) -> HttpResponse:
    """Enabled models as OpenAI lists them, named `provider:model` (what `model` accepts)."""
    try:
        if await caller_from_key(request) is None:
            raise GatewayError("AUTHENTICATION_FAILED", "Missing, invalid or revoked API key.")
    except GatewayError as exc:
        return _error_of(exc)
    rows = LLMModel.objects.filter(enabled=True, provider__enabled=True).select_related("provider")
    data = [
        {
            "id": f"{model.provider.name}:{model.name}",
            "object": "model",
            "created": int(model.provider.created_at.timestamp()),
            "owned_by": model.provider.name,
        }
        for model in await in_thread(list)(rows)
    ]
    return json_response({"object": "list", "data": data})
