"""The Ollama door: `/api/chat` and `/api/generate` as Ollama's API documents them, through the
one pipeline entry (`routing.services.chat_stream`), as `/v1/chat/completions` goes.

Streamed (the default) the answer is NDJSON, one object a line: each piece of text with
`done: false` (the tool calls, whole, in one object before the last, as Ollama sends them),
then a last object with `done: true`, `done_reason` (`stop` or `length`), the
token counts (`prompt_eval_count`, `eval_count`) and the durations in nanoseconds (the
pipeline's latency and time to first token). With `stream: false` it is that last object
alone, holding the whole text. Every refusal is `{"error": "..."}` with its HTTP status; a
failure after the first piece is a last line `{"error": "..."}`. `model` is echoed as the
client sent it; which model answered is in the `x-orchestrator-model` header and in the last
object's `orchestrator` extension (the same as `/v1`'s). The model list is
gateway/ollama_models.py; request parsing gateway/ollama_parse.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from analytics.models import RequestLog
from analytics.money import usd_json
from core.shutdown import SHUTDOWN_MESSAGE, cut_short_by_shutdown
from core.threads import LARGE_BODY_BYTES, cpu_bound, in_thread
from gateway.auth import GatewayError, body_size_check, caller_from_key, rate_limit_headers
from gateway.ollama_models import ollama_model_find, ollama_models
from gateway.ollama_parse import OllamaCall, chat_call, generate_call
from gateway.ollama_wire import (
    KEY_REFUSED,
    not_found_message,
    ollama_error,
    ollama_json,
    ollama_time,
)
from gateway.refusals import model_of, refusal_logged
from gateway.shaping import orchestrator_headers, streamed_response
from providers.adapters.types import ToolCall, tool_arguments_object
from routing.pipeline.events import Delta, Event, Failed, Finished, Started
from routing.pipeline.journal import journaled
from routing.request_metadata import metadata_read
from routing.services import chat_stream
from routing.validation import FieldInvalid

NS_PER_MS = 1_000_000
CallParser = Callable[..., OllamaCall]
# The piece of an answer's object that holds its text (and its tool calls): chat's message,
# generate's response.
Shape = Callable[[str, tuple[ToolCall, ...]], dict[str, Any]]


def _chat_text(text: str, calls: tuple[ToolCall, ...] = ()) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [_tool_call(call) for call in calls]
    return {"message": message}


def _generate_text(text: str, calls: tuple[ToolCall, ...] = ()) -> dict[str, Any]:
    # /api/generate offers no tools, so its answers call none.
    return {"response": text}


def _tool_call(call: ToolCall) -> dict[str, Any]:
    """A call as Ollama writes it: no id, its arguments an object. The pipeline has made sure
    they are one (`tool_arguments_objects`): a call whose arguments are not is that model's
    invalid answer."""
    arguments = tool_arguments_object(call)
    if arguments is None:
        raise RuntimeError(f"tool call {call.id}: its arguments are not a JSON object")
    return {"function": {"name": call.name, "arguments": arguments}}


@csrf_exempt
async def chat(request: HttpRequest) -> HttpResponseBase:
    return await _answer(request, chat_call, _chat_text)


@csrf_exempt
async def generate(request: HttpRequest) -> HttpResponseBase:
    return await _answer(request, generate_call, _generate_text)


async def _answer(request: HttpRequest, parse: CallParser, shape: Shape) -> HttpResponseBase:
    if request.method != "POST":
        return ollama_error("Use POST.", 405, headers={"Allow": "POST"})
    try:
        call = await _ollama_call(request, parse)
    except GatewayError as exc:
        return _error_of(exc)
    if call.load_only:
        return await _loaded(call, shape)
    events = journaled(chat_stream(call.request), request=call.request)
    if call.stream:
        return await _streamed(events, call, shape)
    return await _completed(events, call, shape)


def _error_of(exc: GatewayError) -> HttpResponse:
    headers = rate_limit_headers(exc.rate_limit, exc.retry_after_s)
    if exc.trace_id is not None:
        headers["x-orchestrator-request-id"] = exc.trace_id
    return ollama_error(exc.message, exc.status, headers=headers)


def _invalid(exc: FieldInvalid) -> GatewayError:
    message = f"{exc.field} {exc.message}"
    return GatewayError("INVALID_REQUEST", message, details={"field": exc.field})


async def _ollama_call(request: HttpRequest, parse: CallParser) -> OllamaCall:
    """The request parsed, from an authenticated caller; a malformed one is refused and, once
    its caller is known, logged (as `/v1` does)."""
    body_size_check(request)
    caller = await caller_from_key(request)
    if caller is None:
        raise GatewayError("AUTHENTICATION_FAILED", KEY_REFUSED)
    raw = request.body
    body: Any = None
    try:
        # orjson, as on /v1: no NaN or Infinity, no lone surrogates, nesting bounded.
        body = (
            await cpu_bound(orjson.loads, raw) if len(raw) > LARGE_BODY_BYTES else orjson.loads(raw)
        )
        call = parse(
            body,
            caller=caller,
            session_header=request.headers.get("x-session-id"),
            cache_control=request.headers.get("cache-control"),
        )
        # Ollama's body has no metadata: the x-orchestrator-* headers carry it.
        metadata = metadata_read(headers=request.headers)
        return replace(call, request=replace(call.request, metadata=metadata))
    except (ValueError, UnicodeDecodeError) as exc:
        refusal = _invalid(exc) if isinstance(exc, FieldInvalid) else None
        if refusal is None:
            refusal = GatewayError("INVALID_REQUEST", f"body: not valid JSON ({exc})")
        await refusal_logged(
            refusal, entry_point=RequestLog.EntryPoint.OLLAMA, caller=caller, model=model_of(body)
        )
        raise refusal from exc


async def _loaded(call: OllamaCall, shape: Shape) -> HttpResponse:
    """Ollama's answer to a request with nothing to answer, which loads the model: here the
    name is checked, and nothing runs (no model is asked, so no log row)."""
    if ollama_model_find(await in_thread(ollama_models)(), call.model) is None:
        return ollama_error(not_found_message(call.model), 404)
    body = {
        "model": call.model,
        "created_at": _now(),
        **shape("", ()),
        "done_reason": "load",
        "done": True,
    }
    return ollama_json(body)


def _now() -> str:
    return ollama_time(datetime.now(UTC))


def _failure_message(event: Failed, call: OllamaCall) -> tuple[str, int]:
    """The message and status of a failure; a name that is no model nor policy is Ollama's
    404 (clients offer to pull the model, or list the others)."""
    if event.details.get("unknown_model") is not None:
        return not_found_message(call.model), 404
    return event.message, event.http_status


def _failure(event: Failed, call: OllamaCall) -> HttpResponse:
    request_id = str(call.request.request_id)
    message, status = _failure_message(event, call)
    headers = orchestrator_headers(request_id, None) | rate_limit_headers(
        event.rate_limit, event.retry_after_s
    )
    return ollama_error(message, status, headers=headers)


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


def _last(event: Finished, call: OllamaCall, text: dict[str, Any]) -> dict[str, Any]:
    """The `done: true` object: counts, and durations in nanoseconds from the pipeline's
    latency and time to first token (no model is loaded here, so `load_duration` is 0)."""
    total_ns = event.latency_ms * NS_PER_MS
    first_ns = min(
        total_ns,
        (event.time_to_first_token_ms if event.time_to_first_token_ms is not None else 0)
        * NS_PER_MS,
    )
    return {
        "model": call.model,
        "created_at": _now(),
        **text,
        "done_reason": "length" if event.finish_reason == "length" else "stop",
        "done": True,
        "total_duration": total_ns,
        "load_duration": 0,
        "prompt_eval_count": event.usage.input + event.usage.cached,
        "prompt_eval_duration": first_ns,
        "eval_count": event.usage.output,
        "eval_duration": total_ns - first_ns,
        "orchestrator": _extension(event),
    }


async def _completed(
    events: AsyncGenerator[Event, None], call: OllamaCall, shape: Shape
) -> HttpResponse:
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Failed):
                return _failure(event, call)
            if isinstance(event, Finished):
                headers = orchestrator_headers(str(call.request.request_id), event)
                headers |= rate_limit_headers(event.rate_limit)
                body = _last(event, call, shape(event.text, event.tool_calls))
                return ollama_json(body, headers=headers)
        raise RuntimeError("chat_stream ended without a terminal event")


def _line(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS) + b"\n"


async def _streamed(
    events: AsyncGenerator[Event, None], call: OllamaCall, shape: Shape
) -> HttpResponseBase:
    """Headers wait for the first piece of text (or the terminal event), so they name the
    model that actually answers and a failure before any text is an ordinary HTTP error."""
    started: Started | None = None
    first: Delta | Finished | None = None
    try:
        async for event in events:
            if isinstance(event, Started):
                started = event
            elif isinstance(event, Failed):
                await events.aclose()
                return _failure(event, call)
            elif isinstance(event, Delta | Finished):
                first = event
                break
    except BaseException:
        await events.aclose()
        raise
    if first is None:
        raise RuntimeError("chat_stream ended without a terminal event")

    async def body() -> AsyncIterator[bytes]:
        try:
            pending: Event | None = first
            while pending is not None:
                if isinstance(pending, Delta) and pending.text:
                    text = shape(pending.text, ())
                    yield _line({"model": call.model, "created_at": _now(), **text, "done": False})
                elif isinstance(pending, Finished):
                    if pending.tool_calls:
                        # As Ollama streams them: the calls whole, in one object before the last.
                        calls = shape("", pending.tool_calls)
                        yield _line(
                            {"model": call.model, "created_at": _now(), **calls, "done": False}
                        )
                    yield _line(_last(pending, call, shape("", ())))
                    return
                elif isinstance(pending, Failed):
                    yield _line({"error": _failure_message(pending, call)[0]})
                    return
                pending = await anext(events, None)
        except asyncio.CancelledError:
            if not cut_short_by_shutdown():
                raise
            # The process is shutting down: the answer ends here with an error line and a
            # clean end of the body (its request is logged as cancelled).
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            yield _line({"error": SHUTDOWN_MESSAGE})
        finally:
            await events.aclose()

    return streamed_response(
        body(),
        content_type="application/x-ndjson",
        headers=orchestrator_headers(str(call.request.request_id), started),
        started=started,
    )
