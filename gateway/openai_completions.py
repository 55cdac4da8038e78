"""The legacy text completions endpoint, `POST /v1/completions`: the prompt is routed as one user
message through the chat path (`chat_stream`, so it is admitted, budgeted, costed and logged like
a chat completion, with entry point `completions`) and answered in OpenAI's `text_completion`
shape, whole or streamed (`text_completion` chunks, then `data: [DONE]`).

The body is checked by the chat door's own parser (`parse_chat_request`) once its prompt is put
in a user message; the fields that only text completions have are refused unless neutral.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from analytics.models import RequestLog
from gateway.auth import GatewayError, body_size_check, caller_from_key, rate_limit_headers
from gateway.openai import ERROR_TYPES, _error_of, _failure, openai_error
from gateway.openai_parse import parse_chat_request
from gateway.refusals import field_refused, json_body, model_of, refusal_logged
from gateway.shaping import (
    answer_opening,
    json_response,
    orchestrator_extension,
    orchestrator_headers,
    streamed_response,
)
from routing.pipeline.events import Caller, Delta, Event, Failed, Finished, GatewayRequest
from routing.pipeline.journal import journaled
from routing.services import chat_stream

ENTRY_POINT = RequestLog.EntryPoint.COMPLETIONS
# Read as the chat door reads them.
SHARED_FIELDS = (
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "cache",
    "task_type",
    "fallback_chain",
    "logit_bias",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)
# Text completions' own fields: accepted only at the value that changes nothing.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "echo": (None, False),
    "suffix": (None, ""),
    "logprobs": (None, 0),
    "best_of": (None, 1),
}


def _prompt(raw: Any) -> str:
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if isinstance(raw, list):
        if raw and all(isinstance(p, str) for p in raw):
            raise field_refused("prompt", "only one prompt per request is supported")
        raise field_refused(
            "prompt", "token-id prompts are not supported: send the text (a string)"
        )
    if not isinstance(raw, str):
        raise field_refused("prompt", "must be a string or a list of one string")
    return raw


def parse_completion_request(body: Any, *, caller: Caller) -> tuple[GatewayRequest, bool, bool]:
    """`(request, stream, include_usage)` from a text completions body."""
    if not isinstance(body, dict):
        raise field_refused("body", "must be a JSON object")
    chat: dict[str, Any] = {}
    for name, value in body.items():
        if name == "prompt":
            continue
        if name in NEUTRAL:
            if not any(
                (value == n and type(value) is not bool) or value is n for n in NEUTRAL[name]
            ):
                raise field_refused(name, "not supported by this gateway: leave it out")
            continue
        if name not in SHARED_FIELDS:
            raise field_refused(name, "unknown field")
        chat[name] = value
    chat["messages"] = [{"role": "user", "content": _prompt(body.get("prompt"))}]
    request, stream, include_usage = parse_chat_request(chat, caller=caller)
    return replace(request, entry_point=ENTRY_POINT), stream, include_usage


def _usage(event: Finished) -> dict[str, int]:
    prompt = event.usage.input + event.usage.cached
    return {
        "prompt_tokens": prompt,
        "completion_tokens": event.usage.output,
        "total_tokens": prompt + event.usage.output,
    }


@csrf_exempt
async def completions(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return openai_error("INVALID_REQUEST", "Use POST.", 405)
    try:
        body_size_check(request)
        caller = await caller_from_key(request)
        if caller is None:
            raise GatewayError("AUTHENTICATION_FAILED", "Missing, invalid or revoked API key.")
        body = await json_body(request, caller, entry_point=ENTRY_POINT)
        try:
            gateway_request, stream, include_usage = parse_completion_request(body, caller=caller)
        except GatewayError as exc:
            await refusal_logged(exc, entry_point=ENTRY_POINT, caller=caller, model=model_of(body))
            raise
    except GatewayError as exc:
        return _error_of(exc)
    events = journaled(chat_stream(gateway_request), request=gateway_request)
    completion_id = f"cmpl-{gateway_request.request_id.hex}"
    request_id = str(gateway_request.request_id)
    if not stream:
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, Failed):
                    return _failure(event, request_id)
                if isinstance(event, Finished):
                    answer = {
                        "id": completion_id,
                        "object": "text_completion",
                        "created": int(time.time()),
                        "model": event.model_ref,
                        "choices": [
                            {
                                "text": event.text,
                                "index": 0,
                                "logprobs": None,
                                "finish_reason": event.finish_reason or "stop",
                            }
                        ],
                        "usage": _usage(event),
                        "orchestrator": orchestrator_extension(event),
                    }
                    headers = orchestrator_headers(request_id, event) | rate_limit_headers(
                        event.rate_limit
                    )
                    return json_response(answer, headers=headers)
        raise RuntimeError("chat_stream ended without a terminal event")
    return await _streamed(events, completion_id, request_id, include_usage)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _streamed(
    events: AsyncGenerator[Event, None], completion_id: str, request_id: str, include_usage: bool
) -> HttpResponseBase:
    """Headers wait for the first text (or the end), as the chat door's do, so a failure before
    any text is an ordinary HTTP error."""
    started, first = await answer_opening(events)
    if isinstance(first, Failed):
        return _failure(first, request_id)
    model = started.model_ref if started else getattr(first, "model_ref", "")
    created = int(time.time())

    def chunk(text: str, finish_reason: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            payload["usage"] = None
        return payload

    async def body() -> AsyncIterator[bytes]:
        pending: Event | None = first
        try:
            while pending is not None:
                if isinstance(pending, Delta) and pending.text:
                    yield _sse(chunk(pending.text, None))
                elif isinstance(pending, Finished):
                    last = chunk("", pending.finish_reason or "stop")
                    last["orchestrator"] = orchestrator_extension(pending)
                    out = [_sse(last)]
                    if include_usage:
                        usage = chunk("", None) | {"choices": [], "usage": _usage(pending)}
                        out.append(_sse(usage))
                    out.append(b"data: [DONE]\n\n")
                    yield b"".join(out)
                    return
                elif isinstance(pending, Failed):
                    error = {
                        "message": pending.message,
                        "type": ERROR_TYPES.get(pending.http_status, "api_error"),
                        "param": None,
                        "code": pending.code,
                        "trace_id": request_id,
                    }
                    yield _sse({"error": error})
                    return
                pending = await anext(events, None)
        finally:
            await events.aclose()

    return streamed_response(
        body(),
        content_type="text/event-stream",
        headers=orchestrator_headers(request_id, started),
        started=started,
    )
