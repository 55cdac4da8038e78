"""The Gemini door: `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`
(and `:countTokens`), for google-genai and other clients of Google's Gemini REST API. Async
views on the `/v1` fast path (gateway/gemini_wire.py): they parse, authenticate,
hand a `GatewayRequest` to `chat_stream`, and translate its events into Gemini's wire format.

The model is part of the path, and `:` both separates the method from the model and sits inside
`provider:model` names: `models/openai:gpt-4o:generateContent` is split at its last colon, so
the model is `openai:gpt-4o` and the method `generateContent`. A path whose last colon is not
followed by a method name is a model (`GET /v1beta/models/openai:gpt-4o`).

`streamGenerateContent` streams as Google does: with `?alt=sse`, one `data: {...}` event per
chunk (what google-genai asks for); without it, one JSON array whose elements are the chunks,
written as they come (`[{...},\\r\\n{...}]`), for REST clients that read it incrementally.
Text arrives in chunks without a finish reason; the last chunk has the finish reason and the
`usageMetadata`, and the `orchestrator` extension object that the other doors add too.

The answer's tool calls are `functionCall` parts (after its text, if any), with `finishReason`
`STOP`, as Google answers. Gemini sends each call whole, never its arguments in pieces: a
streamed call is gathered and sent once it is complete (when the next call starts, or with the
last chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from analytics.pricing import tokens_estimate
from core.shutdown import SHUTDOWN_MESSAGE, cut_short_by_shutdown
from core.threads import LARGE_BODY_BYTES, cpu_bound
from gateway.apikeys import apikey_authenticate
from gateway.auth import GatewayError, body_size_check, rate_limit_headers
from gateway.gemini_models import model_get
from gateway.gemini_parse import parse_generate_request
from gateway.gemini_tools import CallUnreadable, function_call_part
from gateway.gemini_wire import (
    AUTH_MESSAGE,
    error_object,
    gemini_error,
    gemini_json,
    gemini_view,
    key_presented,
    method_refusal,
    not_found_message,
)
from gateway.refusals import json_body, refusal_logged
from gateway.shaping import (
    answer_opening,
    orchestrator_extension,
    orchestrator_headers,
    streamed_response,
)
from providers.adapters.types import (
    IMAGE_TOKENS_ESTIMATE,
    ToolCall,
    ToolCallDelta,
    tool_calls_join,
)
from routing.pipeline.admission import tool_tokens_estimate
from routing.pipeline.events import Caller, Delta, Event, Failed, Finished, GatewayRequest
from routing.pipeline.journal import journaled
from routing.services import chat_stream
from routing.validation import MODEL_MAX_CHARS

GENERATE = "generateContent"
STREAM = "streamGenerateContent"
COUNT = "countTokens"
# Gemini's other model methods: a path ending in one is a call this gateway does not serve,
# not a model whose name has a colon.
OTHER_METHODS = frozenset(
    {
        "embedContent",
        "batchEmbedContents",
        "batchGenerateContent",
        "asyncBatchEmbedContent",
        "generateAnswer",
        "predict",
        "predictLongRunning",
        "generateText",
        "generateMessage",
        "countMessageTokens",
        "countTextTokens",
        "embedText",
        "batchEmbedText",
    }
)
# What a model, policy or `provider:model` name may hold (letters and digits of any script,
# `.:/@+-_`), at most the request log's width: a path with anything else is no model's, refused
# before its key is looked up.
MODEL_NAME = re.compile(rf"[\w.:/@+-]{{1,{MODEL_MAX_CHARS}}}")
# The pipeline's normalised finish reasons (providers/adapters/types.py) as Gemini's.
# A tool call ends Google's answer with STOP.
FINISH_REASONS = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "tool_calls": "STOP",
}


def method_split(target: str) -> tuple[str, str | None]:
    """`(model, method)` of the path after `models/`, split at the last colon; `method` is
    None when what follows the last colon is no method (the path names a model)."""
    model, sep, method = target.rpartition(":")
    if sep and (method in (GENERATE, STREAM, COUNT) or method in OTHER_METHODS):
        return model, method
    return target, None


@gemini_view
async def model_resource(request: HttpRequest, target: str) -> HttpResponseBase:
    """Everything under `/v1beta/models/`: a model (GET) or a method called on one (POST)."""
    model, method = method_split(target)
    if not MODEL_NAME.fullmatch(model) or ".." in model.split("/"):
        return gemini_error(f"models/{model[:MODEL_MAX_CHARS]}: not a model name.", 400)
    if method is None:
        return await model_get(request, target)
    refused = method_refusal(request, "POST")
    if refused is not None:
        return refused
    if method in (GENERATE, STREAM):
        return await _generate(request, model, stream=method == STREAM)
    if method == COUNT:
        return await _count_tokens(request, model)
    return gemini_error(f"{method} is not supported by this gateway.", 404)


@gemini_view
async def unknown_path(request: HttpRequest, rest: str = "") -> HttpResponseBase:
    return gemini_error(f"Unknown endpoint {request.path}.", 404)


async def _caller(request: HttpRequest) -> Caller:
    body_size_check(request)
    # Django has the whole body by now (spooled); one over the limit, declared or not, is
    # refused before the key is looked up, as on the `/v1` doors (RequestDataTooBig: 413).
    request.body  # noqa: B018
    raw = key_presented(request)
    caller = await apikey_authenticate(raw) if raw else None
    if caller is None:
        raise GatewayError("AUTHENTICATION_FAILED", AUTH_MESSAGE)
    return caller


async def _body_of(request: HttpRequest, caller: Caller, *, logged: bool) -> Any:
    """The request's JSON body; a body that is not JSON is refused (and logged when the
    request would have been)."""
    return await json_body(request, caller, entry_point="gemini", logged=logged)


async def _gateway_request(request: HttpRequest, model: str, *, stream: bool) -> GatewayRequest:
    caller = await _caller(request)
    body = await _body_of(request, caller, logged=True)
    try:
        return parse_generate_request(
            body,
            model=model,
            caller=caller,
            stream=stream,
            session_header=request.headers.get("x-session-id"),
            cache_control=request.headers.get("cache-control"),
            headers=request.headers,
        )
    except GatewayError as exc:
        await refusal_logged(exc, entry_point="gemini", caller=caller, model=model)
        raise


async def _generate(request: HttpRequest, model: str, *, stream: bool) -> HttpResponseBase:
    alt = request.GET.get("alt", "json")
    if alt not in ("json", "sse"):
        return gemini_error("alt: only json and sse are supported.", 400)
    gateway_request = await _gateway_request(request, model, stream=stream)
    events = journaled(chat_stream(gateway_request), request=gateway_request)
    if stream:
        return await _streamed(events, gateway_request, sse=alt == "sse")
    return await _completed(events, gateway_request)


async def _count_tokens(request: HttpRequest, model: str) -> HttpResponseBase:
    """`{"totalTokens": n}`: the gateway's own estimate of the prompt (the one it routes and
    holds budget by), since the model that will answer is not chosen yet. Nothing is called,
    logged or charged."""
    caller = await _caller(request)
    body = await _body_of(request, caller, logged=False)
    # The body is either `{"contents": ...}` or `{"generateContentRequest": {...}}`.
    inner = body.get("generateContentRequest") if isinstance(body, dict) else None
    if isinstance(inner, dict):
        body = {name: value for name, value in inner.items() if name != "model"}
    parsed = parse_generate_request(body, model=model, caller=caller, stream=False)
    # The prompt as the pipeline estimates it (routing.services: "role: text" per message).
    prompt = "\n\n".join(f"{m.role}: {m.content}" for m in parsed.messages)
    if len(prompt) > LARGE_BODY_BYTES:
        tokens = await cpu_bound(tokens_estimate, prompt)
    else:
        tokens = tokens_estimate(prompt)
    # Each image as the pipeline plans it (providers.adapters.types.IMAGE_TOKENS_ESTIMATE),
    # and the functions offered and the calls made as the JSON sent.
    tokens += IMAGE_TOKENS_ESTIMATE * sum(len(m.images) for m in parsed.messages)
    tokens += tool_tokens_estimate(parsed)
    return gemini_json({"totalTokens": tokens})


def _usage(event: Finished) -> dict[str, int]:
    prompt = event.usage.input + event.usage.cached
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": event.usage.output,
        "totalTokenCount": prompt + event.usage.output,
    }
    if event.usage.cached:
        usage["cachedContentTokenCount"] = event.usage.cached
    return usage


def _chunk(
    text: str,
    *,
    model: str,
    response_id: str,
    finished: Finished | None = None,
    calls: tuple[ToolCall, ...] = (),
) -> dict[str, Any]:
    """One response: its text part (left out when it is empty beside function calls), then a
    `functionCall` part per call. Raises `CallUnreadable` for a call no part can hold."""
    parts: list[dict[str, Any]] = [{"text": text}] if text or not calls else []
    parts += [function_call_part(call) for call in calls]
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    body: dict[str, Any] = {"candidates": [candidate]}
    if finished is not None:
        candidate["finishReason"] = FINISH_REASONS.get(finished.finish_reason or "stop", "STOP")
        body["usageMetadata"] = _usage(finished)
    candidate["index"] = 0
    body["modelVersion"] = model
    body["responseId"] = response_id
    if finished is not None:
        body["orchestrator"] = orchestrator_extension(finished)
    return body


def _failure(event: Failed, request: GatewayRequest) -> HttpResponse:
    request_id = str(request.request_id)
    headers = orchestrator_headers(request_id, None) | rate_limit_headers(
        event.rate_limit, event.retry_after_s
    )
    message, status = _failure_message(event, request)
    retry_after_s = event.retry_after_s
    if retry_after_s is None and event.rate_limit is not None:
        retry_after_s = event.rate_limit.retry_after_s
    return gemini_error(
        message, status, headers=headers, request_id=request_id, retry_after_s=retry_after_s
    )


def _failure_message(event: Failed, request: GatewayRequest) -> tuple[str, int]:
    """A name that is no model nor policy is Google's 404 for a model it does not serve."""
    if event.details.get("unknown_model") is not None:
        return f"{not_found_message(request.model or '')} ({event.message})", 404
    return event.message, event.http_status


async def _completed(events: AsyncGenerator[Event, None], request: GatewayRequest) -> HttpResponse:
    request_id = str(request.request_id)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Failed):
                return _failure(event, request)
            if isinstance(event, Finished):
                try:
                    body = _chunk(
                        event.text,
                        model=event.model_ref,
                        response_id=request.request_id.hex,
                        finished=event,
                        calls=event.tool_calls,
                    )
                except CallUnreadable as exc:
                    return gemini_error(str(exc), 502, request_id=request_id)
                headers = orchestrator_headers(request_id, event) | rate_limit_headers(
                    event.rate_limit
                )
                headers["x-orchestrator-fallbacks"] = str(event.fallbacks)
                return gemini_json(body, headers=headers)
        raise RuntimeError("chat_stream ended without a terminal event")


class _Framing:
    """Server-sent events (`alt=sse`), or the elements of one JSON array."""

    def __init__(self, *, sse: bool) -> None:
        self.sse = sse
        self.opened = False

    def frame(self, payload: dict[str, Any]) -> bytes:
        data = orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
        if self.sse:
            return b"data: " + data + b"\r\n\r\n"
        lead = b",\r\n" if self.opened else b"["
        self.opened = True
        return lead + data

    def end(self) -> bytes:
        if self.sse:
            return b""
        return b"]" if self.opened else b"[]"


class _CallPieces:
    """A streamed answer's tool calls, gathered piece by piece until each is whole: a call is
    complete once a later one starts, and the last ones when the answer ends."""

    def __init__(self) -> None:
        self.pieces: dict[int, list[ToolCallDelta]] = {}

    def add(self, pieces: tuple[ToolCallDelta, ...]) -> tuple[ToolCall, ...]:
        """The calls `pieces` complete."""
        for piece in pieces:
            self.pieces.setdefault(piece.index, []).append(piece)
        if not pieces:
            return ()
        latest = max(self.pieces)
        return self._take([index for index in sorted(self.pieces) if index < latest])

    def rest(self) -> tuple[ToolCall, ...]:
        return self._take(sorted(self.pieces))

    def _take(self, indexes: list[int]) -> tuple[ToolCall, ...]:
        return tool_calls_join(piece for index in indexes for piece in self.pieces.pop(index))


async def _streamed(
    events: AsyncGenerator[Event, None], request: GatewayRequest, *, sse: bool
) -> HttpResponseBase:
    """Headers wait for the first token (or the terminal event), so they name the model that
    actually answers and a failure before any token is an ordinary HTTP error."""
    request_id = str(request.request_id)
    started, first = await answer_opening(events)
    if isinstance(first, Failed):
        return _failure(first, request)
    model = started.model_ref if started else getattr(first, "model_ref", "")
    response_id = request.request_id.hex
    framing = _Framing(sse=sse)
    gathered = _CallPieces()

    async def body() -> AsyncIterator[bytes]:
        out: list[bytes] = []
        try:
            pending: Event | None = first
            while pending is not None:
                if isinstance(pending, Delta):
                    if pending.text:
                        out.append(
                            framing.frame(
                                _chunk(pending.text, model=model, response_id=response_id)
                            )
                        )
                    whole = gathered.add(pending.tool_calls)
                    if whole:
                        chunk = _chunk("", model=model, response_id=response_id, calls=whole)
                        out.append(framing.frame(chunk))
                elif isinstance(pending, Finished):
                    last = _chunk(
                        "",
                        model=model,
                        response_id=response_id,
                        finished=pending,
                        calls=gathered.rest(),
                    )
                    out.append(framing.frame(last))
                    out.append(framing.end())
                    yield b"".join(out)
                    return
                elif isinstance(pending, Failed):
                    message, status = _failure_message(pending, request)
                    error = error_object(message, status, request_id=request_id)
                    out.append(framing.frame({"error": error}))
                    out.append(framing.end())
                    yield b"".join(out)
                    return
                if out:
                    yield b"".join(out)
                    out = []
                pending = await anext(events, None)
        except CallUnreadable as exc:
            out.append(framing.frame({"error": error_object(str(exc), 502, request_id=request_id)}))
            out.append(framing.end())
            yield b"".join(out)
        except asyncio.CancelledError:
            if not cut_short_by_shutdown():
                raise
            # The process is shutting down: the answer ends here with an error and a clean
            # end of the body (its request is logged as cancelled).
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            out.append(framing.frame({"error": error_object(SHUTDOWN_MESSAGE, 503)}))
            out.append(framing.end())
            yield b"".join(out)
        finally:
            await events.aclose()

    content_type = "text/event-stream" if sse else "application/json; charset=UTF-8"
    return streamed_response(
        body(),
        content_type=content_type,
        headers=orchestrator_headers(request_id, started),
        started=started,
    )
