"""The OpenAI-compatible endpoints under /v1: plain async views, so a request never leaves the
event loop for a thread on its way through. They parse, authenticate, hand a `GatewayRequest`
to `chat_stream`, and translate its events into OpenAI's wire format; nothing else.

Extension data rides along without breaking the schema: `x-orchestrator-*` headers on every
answer and an `orchestrator` object on completion bodies and on the last stream chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

import orjson
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt

from analytics.models import RequestLog
from analytics.money import usd_json
from core.shutdown import SHUTDOWN_MESSAGE, cut_short_by_shutdown
from core.threads import LARGE_BODY_BYTES, cpu_bound, in_thread
from providers.adapters.types import Message
from providers.models import LLMModel
from routing.auth import GatewayError, body_size_check, caller_from_key, rate_limit_headers
from routing.events import (
    Caller,
    Delta,
    Event,
    Failed,
    Finished,
    GatewayRequest,
    Started,
)
from routing.guards.response_cache import cache_control_opts_out
from routing.journal import journaled, request_refusal_record
from routing.request_metadata import (
    END_USER_MAX_CHARS,
    RequestMetadata,
    metadata_read,
    metadata_text,
)
from routing.services import chat_stream
from routing.validation import (
    MODEL_MAX_CHARS,
    TASK_TYPE_MAX_CHARS,
    FieldInvalid,
    fallback_chain_check,
    log_safe,
    max_tokens_check,
    nul_check,
    text_check,
)

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout",
}
# Where OpenAI has its own code for a refusal, /v1 answers with it: clients look for it.
OPENAI_CODES = {"TOKEN_LIMIT_EXCEEDED": "context_length_exceeded"}
OPENAI_PARAMS = {"TOKEN_LIMIT_EXCEEDED": "messages"}


def json_response(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    """`body` as compact UTF-8 JSON, by orjson (a gateway answer's body and decision trace
    took a few per cent of its CPU through `json`): every value here is already plain JSON."""
    return HttpResponse(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        content_type="application/json",
        status=status,
        headers=headers,
    )


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


def _invalid(field: str, message: str) -> GatewayError:
    return GatewayError("INVALID_REQUEST", f"{field}: {message}", details={"field": field})


def _number(body: dict[str, Any], field: str, low: float, high: float) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _invalid(field, f"must be a number between {low:g} and {high:g}")
    return float(value)


def _content_text(content: Any, field: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _invalid(f"{field}[{index}]", "only text content parts are supported")
            if not isinstance(part.get("text"), str):
                raise _invalid(f"{field}[{index}].text", "must be a string")
            texts.append(part["text"])
        return "".join(texts)
    raise _invalid(field, "must be a string or a list of text parts")


def parse_messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages", "must be a non-empty list")
    messages = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _invalid(f"messages[{index}]", "must be an object")
        raw_role = item.get("role")
        # A role of any other type (a list, an object) is refused, not looked up.
        role = ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise _invalid(
                f"messages[{index}].role", "must be one of system, developer, user, assistant"
            )
        text = _content_text(item.get("content"), f"messages[{index}].content")
        messages.append(Message(role=role, content=text))  # type: ignore[arg-type]
    return tuple(messages)


def parse_chat_request(
    body: Any,
    *,
    caller: Caller,
    session_header: str | None = None,
    cache_control: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[GatewayRequest, bool, bool]:
    """`(request, stream, include_usage)` from a chat completions body; `session_header` is
    the request's `x-session-id`, which names the session instead of `user`; `cache_control`
    its `Cache-Control`, whose `no-cache` or `no-store` keeps the request out of the cache."""
    try:
        return _chat_request(
            body,
            caller=caller,
            session_header=session_header,
            cache_control=cache_control,
            headers=headers,
        )
    except FieldInvalid as exc:
        raise _invalid(exc.field, exc.message) from exc


def _metadata(
    body: dict[str, Any], user: Any, headers: Mapping[str, str] | None
) -> RequestMetadata:
    """OpenAI's `metadata` (a map of up to 16 string keys and values) may carry `user_id`,
    `project_id` and `tags` (comma-separated); its other keys are the client's own and left
    alone. Without `metadata.user_id`, OpenAI's `user` names the end user (cut to the column's
    width, as it is for the session)."""
    raw = body.get("metadata")
    if raw is not None and not isinstance(raw, dict):
        raise _invalid("metadata", "must be an object")
    found = metadata_read(body=raw, headers=headers)
    if isinstance(user, str) and user and not (raw and raw.get("user_id") is not None):
        found = replace(found, end_user=metadata_text(user[:END_USER_MAX_CHARS], "user", 10**6))
    return found


def _chat_request(
    body: Any,
    *,
    caller: Caller,
    session_header: str | None,
    cache_control: str | None,
    headers: Mapping[str, str] | None = None,
) -> tuple[GatewayRequest, bool, bool]:
    if not isinstance(body, dict):
        raise _invalid("body", "must be a JSON object")
    # What cannot be logged is refused before it is answered (routing/validation.py).
    nul_check(body)
    nul_check(session_header, "x-session-id")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "is required (a model, a policy name or 'auto')")
    text_check(model, "model", MODEL_MAX_CHARS)
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise _invalid("n", "only n=1 is supported")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
    ):
        raise _invalid("stop", "must be a string or a list of up to 4 strings")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream", "must be a boolean")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _invalid("stream_options", "must be an object")
    user = body.get("user", "")
    metadata = _metadata(body, user, headers)
    use_cache = body.get("cache", True)
    if not isinstance(use_cache, bool):
        raise _invalid("cache", "must be a boolean")
    # Extensions (docs/api.md): the caller's own chain, and the task type routing would guess.
    task_type = body.get("task_type")
    if task_type is not None and not isinstance(task_type, str):
        raise _invalid("task_type", "must be a string")
    text_check(task_type, "task_type", TASK_TYPE_MAX_CHARS)
    request = GatewayRequest(
        messages=parse_messages(body.get("messages")),
        entry_point=RequestLog.EntryPoint.OPENAI,
        caller=caller,
        model=model,
        fallback_chain=fallback_chain_check(body.get("fallback_chain")),
        task_type=task_type or None,
        max_tokens=max_tokens_check(body.get("max_completion_tokens"), "max_completion_tokens")
        or max_tokens_check(body.get("max_tokens"), "max_tokens"),
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        stop=tuple(stop or ()),
        session_id=(session_header or (user if isinstance(user, str) else ""))[:128],
        metadata=metadata,
        use_cache=use_cache and not cache_control_opts_out(cache_control),
        buffered=not stream,
    )
    return request, stream, bool(options.get("include_usage"))


def _extension(event: Finished) -> dict[str, Any]:
    return {
        "request_id": str(event.request_id),
        "model": event.model_ref,
        "provider": event.provider_name,
        "cached": event.cached,
        "attempts": event.attempts,
        "fallbacks": event.fallbacks,
        "cost_usd": usd_json(event.cost_usd),
        "cost_state": event.cost_state,
        "baseline_cost_usd": usd_json(event.baseline_cost_usd),
        "decision": event.decision_trace,
    }


def _usage(event: Finished) -> dict[str, Any]:
    prompt = event.usage.input + event.usage.cached
    return {
        "prompt_tokens": prompt,
        "completion_tokens": event.usage.output,
        "total_tokens": prompt + event.usage.output,
        "prompt_tokens_details": {"cached_tokens": event.usage.cached},
    }


def _headers(request_id: str, started: Started | Finished | None) -> dict[str, str]:
    headers = {"x-orchestrator-request-id": request_id}
    if started is not None:
        headers["x-orchestrator-model"] = started.model_ref
        headers["x-orchestrator-provider"] = started.provider_name
        headers["x-orchestrator-cached"] = "true" if started.cached else "false"
        headers["x-cache"] = "hit" if started.cached else "miss"
    return headers


def _failure(event: Failed, request_id: str) -> HttpResponse:
    headers = _headers(request_id, None) | rate_limit_headers(event.rate_limit, event.retry_after_s)
    return openai_error(
        OPENAI_CODES.get(event.code, event.code),
        event.message,
        event.http_status,
        param=OPENAI_PARAMS.get(event.code) or event.details.get("field"),
        headers=headers,
        trace_id=request_id,
    )


async def _gateway_request(request: HttpRequest) -> tuple[GatewayRequest, bool, bool]:
    body_size_check(request)
    caller = await caller_from_key(request)
    if caller is None:
        raise GatewayError("AUTHENTICATION_FAILED", "Missing, invalid or revoked API key.")
    try:
        # orjson: several times faster than `json`, and stricter (no NaN or Infinity, no lone
        # surrogates, nesting bounded), as OpenAI's own parser is.
        raw = request.body
        body = (
            await cpu_bound(orjson.loads, raw) if len(raw) > LARGE_BODY_BYTES else orjson.loads(raw)
        )
    except (ValueError, UnicodeDecodeError) as exc:
        refused = GatewayRequest(messages=(), entry_point="openai", caller=caller)
        message = f"body: not valid JSON ({exc})"
        await request_refusal_record(
            request=refused, status="invalid", error_code="INVALID_REQUEST", message=message
        )
        raise GatewayError(
            "INVALID_REQUEST",
            message,
            details={"field": "body"},
            trace_id=str(refused.request_id),
        ) from exc
    try:
        return parse_chat_request(
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
            entry_point="openai",
            caller=caller,
            # Named on the refusal's row only when the row can hold it.
            model=log_safe(model, MODEL_MAX_CHARS) if isinstance(model, str) else None,
        )
        await request_refusal_record(
            request=refused, status="invalid", error_code=exc.code, message=exc.message
        )
        exc.trace_id = str(refused.request_id)
        raise


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return openai_error("INVALID_REQUEST", "Use POST.", 405)
    try:
        gateway_request, stream, include_usage = await _gateway_request(request)
    except GatewayError as exc:
        return _error_of(exc)
    events = journaled(chat_stream(gateway_request), request=gateway_request)
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
                            "message": {"role": "assistant", "content": event.text},
                            "finish_reason": event.finish_reason or "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": _usage(event),
                    "system_fingerprint": None,
                    "orchestrator": _extension(event),
                }
                headers = _headers(request_id, event) | rate_limit_headers(event.rate_limit)
                headers["x-orchestrator-fallbacks"] = str(event.fallbacks)
                return json_response(body, headers=headers)
        raise RuntimeError("chat_stream ended without a terminal event")


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS) + b"\n\n"


async def _streamed(
    events: AsyncGenerator[Event, None], request: GatewayRequest, include_usage: bool
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
                    if pending.text:
                        out.append(text_chunk(pending.text))
                    if out:
                        yield b"".join(out) if len(out) > 1 else out[0]
                        out = []
                    # The common case, one token after another, without the checks below.
                    async for pending in events:
                        if type(pending) is not Delta:
                            break
                        if pending.text:
                            yield text_chunk(pending.text)
                    else:
                        pending = None
                    continue
                if isinstance(pending, Finished):
                    last = chunk({}, pending.finish_reason or "stop")
                    last["orchestrator"] = _extension(pending)
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

    response = StreamingHttpResponse(body(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    headers = _headers(request_id, started)
    if started is not None:
        headers |= rate_limit_headers(started.rate_limit)
    for name, value in headers.items():
        response[name] = value
    return response


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
