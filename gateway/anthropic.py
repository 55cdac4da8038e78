"""The Anthropic Messages door: `POST /v1/messages` and `POST /v1/messages/count_tokens`, for the
anthropic SDK and the tools built on it. Plain async views on the `/v1` fast path, like the
OpenAI-compatible ones (gateway/openai.py): they parse, authenticate, hand a
`GatewayRequest` to `chat_stream`, and translate its events into Anthropic's wire format.

The common request carries text only (`providers.adapters.types.Message`), so content blocks
other than text (images, documents, tool use, thinking) are refused with an
`invalid_request_error` naming the block, never dropped: an answer that silently ignored half of
the question would look like the model's mistake.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from analytics.models import RequestLog
from analytics.pricing import tokens_estimate
from core.shutdown import SHUTDOWN_MESSAGE, cut_short_by_shutdown
from core.threads import LARGE_BODY_BYTES, cpu_bound
from gateway.auth import GatewayError, body_size_check, caller_from_key, rate_limit_headers
from gateway.shaping import json_response, orchestrator_extension, orchestrator_headers
from providers.adapters.types import Message
from routing.guards.response_cache import cache_control_opts_out
from routing.pipeline.events import Caller, Delta, Event, Failed, Finished, GatewayRequest, Started
from routing.pipeline.journal import journaled, request_refusal_record
from routing.pipeline.ledger import RequestStatus
from routing.request_metadata import metadata_read
from routing.services import chat_stream
from routing.validation import (
    MODEL_MAX_CHARS,
    SESSION_MAX_CHARS,
    FieldInvalid,
    log_safe,
    max_tokens_check,
    nul_check,
    text_check,
)

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
ROLES = ("user", "assistant", "system")
AUTH_MESSAGE = "Missing, invalid or revoked API key (x-api-key or Authorization: Bearer)."


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


def _invalid(field: str, message: str) -> GatewayError:
    return GatewayError("INVALID_REQUEST", f"{field}: {message}", details={"field": field})


def _number(body: dict[str, Any], field: str, low: float, high: float) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _invalid(field, f"must be a number between {low:g} and {high:g}")
    return float(value)


def _blocks_text(content: Any, field: str) -> str:
    """The text of a string or of a list of text blocks; any other block is refused."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(field, "must be a string or a list of content blocks")
    texts = []
    for index, block in enumerate(content):
        where = f"{field}[{index}]"
        if not isinstance(block, dict):
            raise _invalid(where, "must be an object")
        kind = block.get("type")
        if kind in ("image", "document"):
            raise _invalid(
                where,
                f"{kind} blocks are not supported: this gateway passes text only to its "
                "models, so a request with one is refused rather than answered without it",
            )
        if kind != "text":
            raise _invalid(
                f"{where}.type",
                "only 'text' content blocks are supported (no images, documents, tool use "
                "or thinking blocks)",
            )
        if not isinstance(block.get("text"), str):
            raise _invalid(f"{where}.text", "must be a string")
        texts.append(block["text"])
    # Blocks are separate passages to the model: kept apart, not run together.
    return "\n\n".join(texts)


def parse_messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages", "must be a non-empty list")
    messages = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _invalid(f"messages[{index}]", "must be an object")
        role = item.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise _invalid(f"messages[{index}].role", "must be 'user', 'assistant' or 'system'")
        text = _blocks_text(item.get("content"), f"messages[{index}].content")
        messages.append(Message(role=role, content=text))  # type: ignore[arg-type]
    return tuple(messages)


def _session(body: dict[str, Any], session_header: str | None) -> str:
    """`x-session-id`, else `metadata.user_id` (Anthropic's one metadata field)."""
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _invalid("metadata", "must be an object")
    for key in metadata:
        if key != "user_id":
            raise _invalid(f"metadata.{key}", "is not a metadata field (only user_id is)")
    user_id = metadata.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise _invalid("metadata.user_id", "must be a string")
    return (session_header or user_id or "")[:SESSION_MAX_CHARS]


def parse_messages_request(
    body: Any,
    *,
    caller: Caller,
    session_header: str | None = None,
    headers: Mapping[str, str] | None = None,
    cache_control: str | None = None,
    count_only: bool = False,
) -> tuple[GatewayRequest, bool]:
    """`(request, stream)` from a Messages body. `count_only` reads a count_tokens body, where
    `max_tokens` is not asked for."""
    try:
        return _messages_request(
            body,
            caller=caller,
            session_header=session_header,
            cache_control=cache_control,
            count_only=count_only,
            headers=headers,
        )
    except FieldInvalid as exc:
        raise _invalid(exc.field, exc.message) from exc


def _messages_request(
    body: Any,
    *,
    caller: Caller,
    session_header: str | None,
    cache_control: str | None,
    count_only: bool,
    headers: Mapping[str, str] | None = None,
) -> tuple[GatewayRequest, bool]:
    if not isinstance(body, dict):
        raise _invalid("body", "must be a JSON object")
    # What cannot be logged is refused before it is answered (routing/validation.py).
    nul_check(body)
    nul_check(session_header, "x-session-id")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "is required (a model, a policy name or 'auto')")
    text_check(model, "model", MODEL_MAX_CHARS)
    max_tokens = max_tokens_check(body.get("max_tokens"), "max_tokens")
    if max_tokens is None and not count_only:
        raise _invalid("max_tokens", "is required (an integer, the most tokens to generate)")
    system = body.get("system")
    system_text = None if system is None else _blocks_text(system, "system")
    stop = body.get("stop_sequences")
    if stop is not None and (
        not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop)
    ):
        raise _invalid("stop_sequences", "must be a list of non-empty strings")
    top_k = body.get("top_k")
    # Accepted as a sampling hint and not passed on: the common request has no top_k.
    if top_k is not None and (type(top_k) is not int or top_k < 0):
        raise _invalid("top_k", "must be a non-negative integer")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _invalid("tools", "must be a list")
    if tools:
        raise _invalid("tools", "tool use is not supported by this gateway")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream", "must be a boolean")
    use_cache = body.get("cache", True)
    if not isinstance(use_cache, bool):
        raise _invalid("cache", "must be a boolean")
    messages = parse_messages(body.get("messages"))
    if system_text:
        messages = (Message(role="system", content=system_text), *messages)
    request = GatewayRequest(
        messages=messages,
        entry_point=RequestLog.EntryPoint.ANTHROPIC,
        caller=caller,
        model=model,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0, 1),
        top_p=_number(body, "top_p", 0, 1),
        stop=tuple(stop or ()),
        session_id=_session(body, session_header),
        # Anthropic's metadata holds only user_id: project and tags come from the headers.
        metadata=metadata_read(body=body.get("metadata"), headers=headers, keys=("user_id",)),
        use_cache=use_cache and not cache_control_opts_out(cache_control),
        buffered=not stream,
    )
    return request, stream


async def _body_of(request: HttpRequest, caller: Caller, *, logged: bool) -> Any:
    """The request's JSON body; a body that is not JSON is refused (and logged when the
    request would have been)."""
    try:
        raw = request.body
        return (
            await cpu_bound(orjson.loads, raw) if len(raw) > LARGE_BODY_BYTES else orjson.loads(raw)
        )
    except (ValueError, UnicodeDecodeError) as exc:
        message = f"body: not valid JSON ({exc})"
        trace_id = None
        if logged:
            refused = GatewayRequest(messages=(), entry_point="anthropic", caller=caller)
            await request_refusal_record(
                request=refused,
                status=RequestStatus.INVALID,
                error_code="INVALID_REQUEST",
                message=message,
            )
            trace_id = str(refused.request_id)
        raise GatewayError(
            "INVALID_REQUEST", message, details={"field": "body"}, trace_id=trace_id
        ) from exc


async def _caller(request: HttpRequest) -> Caller:
    body_size_check(request)
    caller = await caller_from_key(request)
    if caller is None:
        raise GatewayError("AUTHENTICATION_FAILED", AUTH_MESSAGE)
    return caller


async def _gateway_request(request: HttpRequest) -> tuple[GatewayRequest, bool]:
    caller = await _caller(request)
    body = await _body_of(request, caller, logged=True)
    try:
        return parse_messages_request(
            body,
            caller=caller,
            session_header=request.headers.get("x-session-id"),
            cache_control=request.headers.get("cache-control"),
            headers=request.headers,
        )
    except GatewayError as exc:
        model = body.get("model") if isinstance(body, dict) else None
        refused = GatewayRequest(
            messages=(),
            entry_point="anthropic",
            caller=caller,
            # Named on the refusal's row only when the row can hold it.
            model=log_safe(model, MODEL_MAX_CHARS) if isinstance(model, str) else None,
        )
        await request_refusal_record(
            request=refused, status=RequestStatus.INVALID, error_code=exc.code, message=exc.message
        )
        exc.trace_id = str(refused.request_id)
        raise


@csrf_exempt
async def messages(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return anthropic_error("Use POST.", 405)
    try:
        gateway_request, stream = await _gateway_request(request)
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
        caller = await _caller(request)
        body = await _body_of(request, caller, logged=False)
        gateway_request, _ = parse_messages_request(body, caller=caller, count_only=True)
    except GatewayError as exc:
        return _error_of(exc)
    # The prompt as the pipeline estimates it (routing.services: "role: text" per message).
    prompt = "\n\n".join(f"{m.role}: {m.content}" for m in gateway_request.messages)
    if len(prompt) > LARGE_BODY_BYTES:
        tokens = await cpu_bound(tokens_estimate, prompt)
    else:
        tokens = tokens_estimate(prompt)
    return json_response({"input_tokens": tokens})


def _stop_reason(finish_reason: str | None) -> str:
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


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
                body = {
                    "id": f"msg_{request.request_id.hex}",
                    "type": "message",
                    "role": "assistant",
                    "model": event.model_ref,
                    "content": [{"type": "text", "text": event.text}],
                    "stop_reason": _stop_reason(event.finish_reason),
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
    started: Started | None = None
    first: Delta | Finished | None = None
    try:
        async for event in events:
            if isinstance(event, Started):
                started = event
            elif isinstance(event, Failed):
                await events.aclose()
                return _failure(event, request_id)
            elif isinstance(event, Delta | Finished):
                first = event
                break
    except BaseException:
        await events.aclose()
        raise
    if first is None:
        raise RuntimeError("chat_stream ended without a terminal event")
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
        out = [
            _sse("message_start", {"type": "message_start", "message": opening}),
            _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            _sse("ping", {"type": "ping"}),
        ]
        try:
            pending: Event | None = first
            while pending is not None:
                if isinstance(pending, Delta) and pending.text:
                    delta = {"type": "text_delta", "text": pending.text}
                    out.append(
                        _sse(
                            "content_block_delta",
                            {"type": "content_block_delta", "index": 0, "delta": delta},
                        )
                    )
                elif isinstance(pending, Finished):
                    out.append(
                        _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
                    )
                    out.append(
                        _sse(
                            "message_delta",
                            {
                                "type": "message_delta",
                                "delta": {
                                    "stop_reason": _stop_reason(pending.finish_reason),
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

    response = StreamingHttpResponse(body(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    headers = _headers(request_id, started)
    if started is not None:
        headers |= rate_limit_headers(started.rate_limit)
    for name, value in headers.items():
        response[name] = value
    return response
