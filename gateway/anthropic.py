"""The Anthropic Messages door: `POST /v1/messages` and `POST /v1/messages/count_tokens`, for the
anthropic SDK and the tools built on it. Plain async views on the `/v1` fast path, like the
OpenAI-compatible ones (gateway/openai.py): the request is read by `gateway.anthropic_parse`,
handed to `chat_stream` as a `GatewayRequest`, and its events translated into Anthropic's wire
format.

The common request carries text, inline images and tool use (`providers.adapters.types`), so
`image` blocks with a base64 source in user turns are passed on (to models that accept images),
custom `tools` with `tool_use` and `tool_result` blocks to models that accept tools, and other
content blocks (URL images, documents, thinking) and server tools are refused with an
`invalid_request_error` naming them, never dropped: an answer that silently ignored half of the
question would look like the model's mistake. An answer's tool calls are `tool_use` blocks, each
a content block of its own when streamed (its input as `input_json_delta` pieces).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from analytics.pricing import tokens_estimate
from core.shutdown import SHUTDOWN_MESSAGE, cut_short_by_shutdown
from core.threads import LARGE_BODY_BYTES, cpu_bound
from gateway.anthropic_parse import (
    body_read,
    caller_read,
    messages_request_read,
    parse_messages_request,
)
from gateway.auth import GatewayError, rate_limit_headers
from gateway.shaping import (
    answer_opening,
    json_response,
    orchestrator_extension,
    orchestrator_headers,
    streamed_response,
)
from providers.adapters.types import (
    IMAGE_TOKENS_ESTIMATE,
    ToolCall,
    ToolCallDelta,
    tool_arguments_object,
)
from routing.pipeline.events import Delta, Event, Failed, Finished, GatewayRequest, Started
from routing.pipeline.journal import journaled
from routing.pipeline.ledger import prompt_text
from routing.services import chat_stream

MESSAGES_PATH = "/v1/messages"
# Anthropic's error types by HTTP status (docs.anthropic.com/en/api/errors).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# The pipeline's normalised finish reasons (providers/adapters/types.py) as stop reasons.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "refusal",
    "tool_calls": "tool_use",
}


# `system` turns (text only) as the SDK's `SystemMessageParam`, beside the top-level `system`.
def is_anthropic_path(path: str) -> bool:
    """Whether `path` is this door's, so that an error answers in Anthropic's shape."""
    return path == MESSAGES_PATH or path.startswith(MESSAGES_PATH + "/")


def anthropic_error(
    message: str,
    status: int,
    *,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> HttpResponse:
    """Anthropic's error shape; `request_id` (also in the `request-id` and
    `x-orchestrator-request-id` headers) names the log row of a request that was logged."""
    body: dict[str, Any] = {"type": "error", "error": _error_object(message, status)}
    if request_id is not None:
        body["request_id"] = request_id
        headers = (headers or {}) | {
            "request-id": request_id,
            "x-orchestrator-request-id": request_id,
        }
    return json_response(body, status=status, headers=headers)


def _error_object(message: str, status: int) -> dict[str, str]:
    fallback = "invalid_request_error" if 400 <= status < 500 else "api_error"
    return {"type": ERROR_TYPES.get(status, fallback), "message": message}


def _error_of(exc: GatewayError) -> HttpResponse:
    return anthropic_error(
        exc.message,
        exc.status,
        headers=rate_limit_headers(exc.rate_limit, exc.retry_after_s),
        request_id=exc.trace_id,
    )


@csrf_exempt
async def messages(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return anthropic_error("Use POST.", 405)
    try:
        gateway_request, stream = await messages_request_read(request)
    except GatewayError as exc:
        return _error_of(exc)
    events = journaled(chat_stream(gateway_request), request=gateway_request)
    if stream:
        return await _streamed(events, gateway_request)
    return await _completed(events, gateway_request)


@csrf_exempt
async def count_tokens(request: HttpRequest) -> HttpResponseBase:
    """`{"input_tokens": n}`: the gateway's own estimate of the prompt (the one it routes and
    holds budget by), since the model that will answer is not chosen yet. Nothing is called,
    logged or charged."""
    if request.method != "POST":
        return anthropic_error("Use POST.", 405)
    try:
        caller = await caller_read(request)
        body = await body_read(request, caller, logged=False)
        gateway_request, _ = parse_messages_request(body, caller=caller, count_only=True)
    except GatewayError as exc:
        return _error_of(exc)
    # The prompt as the pipeline estimates it ("role: text" per message, the tool calls made and
    # the tools offered as the JSON sent).
    prompt = prompt_text(gateway_request.messages, gateway_request.tools)
    if len(prompt) > LARGE_BODY_BYTES:
        tokens = await cpu_bound(tokens_estimate, prompt)
    else:
        tokens = tokens_estimate(prompt)
    # Each image as the pipeline plans it (providers.adapters.types.IMAGE_TOKENS_ESTIMATE).
    tokens += IMAGE_TOKENS_ESTIMATE * sum(len(m.images) for m in gateway_request.messages)
    return json_response({"input_tokens": tokens})


def _stop_reason(event: Finished) -> str:
    """`tool_use` when the model called tools and was not cut short (some providers say `stop`
    there), else the finish reason as Anthropic's."""
    if event.tool_calls and event.finish_reason in (None, "stop", "tool_calls"):
        return "tool_use"
    return STOP_REASONS.get(event.finish_reason or "stop", "end_turn")


class ToolInputUnreadable(Exception):
    """A tool call whose arguments are not a JSON object: Anthropic's `input` cannot hold it."""


def tool_input(call: ToolCall) -> dict[str, Any]:
    """A tool call's arguments (the JSON text the model wrote) as a `tool_use` block's `input`;
    no arguments at all are `{}`."""
    value = tool_arguments_object(call)
    if value is None:
        raise ToolInputUnreadable(
            f"The model called the tool {call.name!r} ({call.id}) with arguments that are not a "
            f"JSON object, which a tool_use block cannot carry: {call.arguments[:200]!r}"
        )
    return value


def _content(event: Finished) -> list[dict[str, Any]]:
    """The answer's content blocks: its text (left out when it only called tools), then a
    `tool_use` block per call."""
    blocks = [{"type": "text", "text": event.text}] if event.text or not event.tool_calls else []
    return blocks + [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(call)}
        for call in event.tool_calls
    ]


def _usage(event: Finished) -> dict[str, int]:
    """Anthropic counts cache reads apart from `input_tokens`, as `Usage` does."""
    return {
        "input_tokens": event.usage.input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": event.usage.cached,
        "output_tokens": event.usage.output,
    }


def _headers(request_id: str, started: Started | Finished | None) -> dict[str, str]:
    return orchestrator_headers(request_id, started) | {"request-id": request_id}


def _failure(event: Failed, request_id: str) -> HttpResponse:
    headers = _headers(request_id, None) | rate_limit_headers(event.rate_limit, event.retry_after_s)
    return anthropic_error(event.message, event.http_status, headers=headers, request_id=request_id)


async def _completed(events: AsyncGenerator[Event, None], request: GatewayRequest) -> HttpResponse:
    request_id = str(request.request_id)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Failed):
                return _failure(event, request_id)
            if isinstance(event, Finished):
                try:
                    content = _content(event)
                except ToolInputUnreadable as exc:
                    return anthropic_error(
                        str(exc), 502, headers=_headers(request_id, event), request_id=request_id
                    )
                body = {
                    "id": f"msg_{request.request_id.hex}",
                    "type": "message",
                    "role": "assistant",
                    "model": event.model_ref,
                    "content": content,
                    "stop_reason": _stop_reason(event),
                    "stop_sequence": None,
                    "usage": _usage(event),
                    "orchestrator": orchestrator_extension(event),
                }
                headers = _headers(request_id, event) | rate_limit_headers(event.rate_limit)
                headers["x-orchestrator-fallbacks"] = str(event.fallbacks)
                return json_response(body, headers=headers)
        raise RuntimeError("chat_stream ended without a terminal event")


def _sse(name: str, payload: dict[str, Any]) -> bytes:
    data = orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


PING = _sse("ping", {"type": "ping"})


class _Blocks:
    """A streamed answer's content blocks, numbered as Anthropic numbers them: its text, and
    each tool call, in a block of its own, started when its first piece arrives and stopped
    when the next one starts (or the answer ends). The first block's start is followed by a
    `ping`, as Anthropic sends it."""

    def __init__(self) -> None:
        self.started = 0
        self.open: int | None = None
        self.open_is_text = False
        self.of_call: dict[int, int] = {}
        """Each tool call's block, by the call's index."""

    def _start(self, block: dict[str, Any]) -> list[bytes]:
        out = self.stop()
        self.open = index = self.started
        self.started += 1
        out.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        if index == 0:
            out.append(PING)
        return out

    def stop(self) -> list[bytes]:
        if self.open is None:
            return []
        frame = _sse("content_block_stop", {"type": "content_block_stop", "index": self.open})
        self.open, self.open_is_text = None, False
        return [frame]

    def text(self, text: str) -> list[bytes]:
        out = [] if self.open_is_text else self._start({"type": "text", "text": ""})
        self.open_is_text = True
        delta = {"type": "text_delta", "text": text}
        out.append(
            _sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": self.open, "delta": delta},
            )
        )
        return out

    def tool_calls(self, pieces: tuple[ToolCallDelta, ...]) -> list[bytes]:
        out: list[bytes] = []
        for piece in pieces:
            index = self.of_call.get(piece.index)
            if index is None:
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": piece.id or "",
                    "name": piece.name or "",
                    "input": {},
                }
                out += self._start(block)
                index = self.of_call[piece.index] = self.started - 1
            if piece.arguments:
                delta = {"type": "input_json_delta", "partial_json": piece.arguments}
                out.append(
                    _sse(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
        return out

    def end(self) -> list[bytes]:
        """The last block's stop (an answer with no content at all has one empty text block)."""
        return (
            self.stop()
            if self.started
            else [*self._start({"type": "text", "text": ""}), *self.stop()]
        )


def _error_frame(message: str, status: int, request_id: str | None) -> bytes:
    payload: dict[str, Any] = {"type": "error", "error": _error_object(message, status)}
    if request_id is not None:
        payload["request_id"] = request_id
    return _sse("error", payload)


async def _streamed(
    events: AsyncGenerator[Event, None], request: GatewayRequest
) -> HttpResponseBase:
    """Headers wait for the first token (or the terminal event), so they name the model that
    actually answers and a failure before any token is an ordinary HTTP error."""
    request_id = str(request.request_id)
    started, first = await answer_opening(events)
    if isinstance(first, Failed):
        return _failure(first, request_id)
    model = started.model_ref if started else getattr(first, "model_ref", "")
    opening: dict[str, Any] = {
        "id": f"msg_{request.request_id.hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # Not known before the end: message_delta carries the real counts.
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }

    async def body() -> AsyncIterator[bytes]:
        # What is ready at once goes out as one piece: the opening events with the first text,
        # the closing events together.
        out = [_sse("message_start", {"type": "message_start", "message": opening})]
        blocks = _Blocks()
        try:
            pending: Event | None = first
            while pending is not None:
                if isinstance(pending, Delta):
                    if pending.text:
                        out += blocks.text(pending.text)
                    if pending.tool_calls:
                        out += blocks.tool_calls(pending.tool_calls)
                elif isinstance(pending, Finished):
                    out += blocks.end()
                    out.append(
                        _sse(
                            "message_delta",
                            {
                                "type": "message_delta",
                                "delta": {
                                    "stop_reason": _stop_reason(pending),
                                    "stop_sequence": None,
                                },
                                "usage": _usage(pending),
                                "orchestrator": orchestrator_extension(pending),
                            },
                        )
                    )
                    out.append(_sse("message_stop", {"type": "message_stop"}))
                    yield b"".join(out)
                    return
                elif isinstance(pending, Failed):
                    out.append(_error_frame(pending.message, pending.http_status, request_id))
                    yield b"".join(out)
                    return
                if out:
                    yield b"".join(out)
                    out = []
                pending = await anext(events, None)
        except asyncio.CancelledError:
            if not cut_short_by_shutdown():
                raise
            # The process is shutting down: the answer ends here with an error event and a
            # clean end of the body (its request is logged as cancelled).
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            out.append(_error_frame(SHUTDOWN_MESSAGE, 503, None))
            yield b"".join(out)
        finally:
            await events.aclose()

    return streamed_response(
        body(),
        content_type="text/event-stream",
        headers=_headers(request_id, started),
        started=started,
    )
