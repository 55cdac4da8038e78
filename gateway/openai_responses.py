"""OpenAI's Responses API, text only: `POST /v1/responses` and `GET /v1/responses/{id}`.

A request's `instructions` and `input` are put in a chat completions body and checked by the
chat door's own parser (`parse_chat_request`), then routed through the chat path (`chat_stream`,
so it is admitted, budgeted, costed and logged like a chat completion, with entry point
`responses`) and answered as a `response` object, whole or streamed as OpenAI's typed events.

Conversation state: an answer is kept (`StoredResponse`) unless the request says `store: false`;
a later request of the same API key continues it with `previous_response_id` (the stored
conversation and its answer go before the new input; the earlier `instructions` do not carry
over), and `GET /v1/responses/{id}` reads it back. Another key's response is not found.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from analytics.models import RequestLog, StoredResponse
from core.threads import in_thread
from gateway.auth import GatewayError, body_size_check, caller_from_key, rate_limit_headers
from gateway.openai import _error_of, _failure, openai_error
from gateway.openai_parse import parse_chat_request
from gateway.refusals import field_refused, json_body, model_of, refusal_logged
from gateway.shaping import (
    answer_opening,
    json_response,
    orchestrator_extension,
    orchestrator_headers,
)
from routing.pipeline.events import Caller, Delta, Event, Failed, Finished
from routing.pipeline.journal import journaled
from routing.services import chat_stream
from routing.validation import FieldInvalid, nul_check

ENTRY_POINT = RequestLog.EntryPoint.RESPONSES
ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text")
# Read here, or passed to the chat parser as they are (the gateway's extensions).
READ_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "metadata",
        "user",
        "store",
        "previous_response_id",
        "cache",
        "task_type",
        "fallback_chain",
    }
)
NO_EFFECT_FIELDS = frozenset(
    {"service_tier", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"}
)
# Fields that would change the answer: accepted only at the value that changes nothing.
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "auto", "none"),
    "parallel_tool_calls": (None, True, False),
    "reasoning": (None, {}),
    "include": (None, []),
    "truncation": (None, "disabled"),
    "background": (None, False),
    "max_tool_calls": (None,),
    "top_logprobs": (None, 0),
    "prompt": (None,),
    "conversation": (None,),
    "stream_options": (None,),
}
CHAT_FIELDS = {"max_tokens": "max_output_tokens", "messages": "input"}


@dataclass(frozen=True)
class ResponseAsk:
    """What a Responses body asks, before its conversation is looked up."""

    body: dict[str, Any]
    input: list[dict[str, str]]
    instructions: str | None
    previous_response_id: str | None
    store: bool
    stream: bool


# The stored response's id column (analytics.StoredResponse.id).
RESPONSE_ID_MAX_CHARS = 64


def _neutral(value: Any, allowed: tuple[Any, ...]) -> bool:
    return any((value == n and type(value) is not bool) or value is n for n in allowed)


def _text_config(raw: Any) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise field_refused("text", "must be an object")
    for name, value in raw.items():
        if name == "format":
            if value is not None and value != {"type": "text"}:
                raise field_refused(
                    "text.format", 'only {"type": "text"} is supported: structured output is not'
                )
        elif name != "verbosity" or value is not None:
            raise field_refused(f"text.{name}", "not supported by this gateway: leave it out")


def _content(raw: Any, at: str) -> str:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise field_refused(at, "must be a string or a list of input_text parts")
    texts = []
    for index, part in enumerate(raw):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS:
            named = f"{kind!r} parts are" if isinstance(kind, str) else "this part is"
            raise field_refused(
                f"{at}[{index}]", f"{named} not supported: only text (input_text, output_text)"
            )
        if not isinstance(part.get("text"), str):
            raise field_refused(f"{at}[{index}].text", "must be a string")
        texts.append(part["text"])
    return "".join(texts)


def _input(raw: Any) -> list[dict[str, str]]:
    """The input as chat messages (`{"role", "content"}`): a string is one user message."""
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise field_refused("input", "is required: a string or a non-empty list of messages")
    messages = []
    for index, item in enumerate(raw):
        at = f"input[{index}]"
        if not isinstance(item, dict):
            raise field_refused(at, "must be an object")
        kind = item.get("type", "message")
        if kind != "message":
            raise field_refused(
                f"{at}.type", f"{kind!r} items are not supported: only messages (text)"
            )
        role = item.get("role")
        if role not in ROLES:
            raise field_refused(f"{at}.role", f"must be one of {', '.join(ROLES)}")
        for name in item:
            if name not in ("type", "role", "content", "id", "status"):
                raise field_refused(f"{at}.{name}", "unknown field")
        messages.append({"role": role, "content": _content(item.get("content"), f"{at}.content")})
    return messages


def parse_response_ask(body: Any) -> ResponseAsk:
    if not isinstance(body, dict):
        raise field_refused("body", "must be a JSON object")
    # Checked here too, so that a NUL is named where the request put it.
    try:
        nul_check(body)
    except FieldInvalid as exc:
        raise field_refused(exc.field, exc.message) from exc
    for name, value in body.items():
        if name in READ_FIELDS or name in NO_EFFECT_FIELDS or name == "text":
            continue
        allowed = NEUTRAL_VALUES.get(name)
        if allowed is None:
            raise field_refused(name, "unknown field")
        if not _neutral(value, allowed):
            raise field_refused(
                name,
                "not supported by this gateway: the answer would ignore it, so the request is "
                "refused (leave it out; docs/api.md lists what each field does)",
            )
    _text_config(body.get("text"))
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise field_refused("instructions", "must be a string")
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise field_refused("previous_response_id", "must be a response id")
    store = body.get("store", True)
    if store is None:
        store = True
    if not isinstance(store, bool):
        raise field_refused("store", "must be a boolean")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise field_refused("stream", "must be a boolean")
    return ResponseAsk(
        body=body,
        input=_input(body.get("input")),
        instructions=instructions or None,
        previous_response_id=previous,
        store=store,
        stream=stream,
    )


def _not_found(response_id: str, field: str | None) -> GatewayError:
    details = {"field": field} if field else {}
    return GatewayError(
        "not_found", f"Response with id {response_id!r} not found.", details=details, status=404
    )


def _can_name_one(response_id: str) -> bool:
    """Whether `response_id` could be a stored one's: text Postgres holds (no NUL), no longer
    than the column. Anything else names no response and is not found, never a server error."""
    return "\x00" not in response_id and len(response_id) <= RESPONSE_ID_MAX_CHARS


def _stored(response_id: str, caller: Caller) -> StoredResponse | None:
    """The stored response `response_id`, if the caller's API key made it."""
    if caller.api_key_id is None or not _can_name_one(response_id):
        return None
    return StoredResponse.objects.filter(id=response_id, api_key_id=caller.api_key_id).first()


def _chat_body(ask: ResponseAsk, history: list[dict[str, str]]) -> dict[str, Any]:
    body = ask.body
    chat: dict[str, Any] = {
        name: body[name]
        for name in (
            "model",
            "temperature",
            "top_p",
            "stream",
            "metadata",
            "user",
            "cache",
            "task_type",
            "fallback_chain",
        )
        if name in body
    }
    if "max_output_tokens" in body:
        chat["max_tokens"] = body["max_output_tokens"]
    system = [{"role": "system", "content": ask.instructions}] if ask.instructions else []
    chat["messages"] = system + history + ask.input
    return chat


@dataclass
class Turn:
    """One response being answered: what its object echoes and what is stored of it."""

    id: str
    message_id: str
    created_at: int
    ask: ResponseAsk
    messages: list[dict[str, str]]
    caller: Caller

    def echo(self) -> dict[str, Any]:
        body = self.ask.body
        return {
            "previous_response_id": self.ask.previous_response_id,
            "instructions": self.ask.instructions,
            "max_output_tokens": body.get("max_output_tokens"),
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "metadata": body.get("metadata") or {},
            "store": self.ask.store,
            "user": body.get("user"),
        }

    def item(self, text: str | None, status: str) -> dict[str, Any]:
        content = [] if text is None else [_part(text)]
        return {
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def object(
        self, model: str, status: str, event: Finished | None = None, error: Any = None
    ) -> dict[str, Any]:
        incomplete = event is not None and event.finish_reason == "length"
        if event is not None:
            status = "incomplete" if incomplete else "completed"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": model,
            "output": [self.item(event.text, status)] if event is not None else [],
            "usage": _usage(event) if event is not None else None,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            **self.echo(),
        }

    async def store(self, event: Finished, answer: dict[str, Any]) -> None:
        if not self.ask.store:
            return
        await in_thread(StoredResponse.objects.create)(
            id=self.id,
            api_key_id=self.caller.api_key_id,
            created_at=datetime.fromtimestamp(self.created_at, tz=UTC),
            model_ref=event.model_ref,
            messages=self.messages,
            output_text=event.text,
            response=answer,
        )


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def _usage(event: Finished) -> dict[str, Any]:
    prompt = event.usage.input + event.usage.cached
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": event.usage.cached},
        "output_tokens": event.usage.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + event.usage.output,
    }


async def _caller(request: HttpRequest) -> Caller:
    caller = await caller_from_key(request)
    if caller is None:
        raise GatewayError("AUTHENTICATION_FAILED", "Missing, invalid or revoked API key.")
    return caller


def _renamed(exc: GatewayError) -> GatewayError:
    """A refusal of the chat body names the Responses field it came from."""
    field = exc.details.get("field")
    if not isinstance(field, str):
        return exc
    head = field.split("[", 1)[0].split(".", 1)[0]
    if head not in CHAT_FIELDS:
        return exc
    renamed = CHAT_FIELDS[head] + field[len(head) :]
    message = exc.message.removeprefix(f"{field}: ")
    return field_refused(renamed, message)


@csrf_exempt
async def responses(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return openai_error("INVALID_REQUEST", "Use POST.", 405)
    try:
        body_size_check(request)
        caller = await _caller(request)
        body = await json_body(request, caller, entry_point=ENTRY_POINT)
        try:
            ask = parse_response_ask(body)
            history: list[dict[str, str]] = []
            if ask.previous_response_id is not None:
                previous = await in_thread(_stored)(ask.previous_response_id, caller)
                if previous is None:
                    raise _not_found(ask.previous_response_id, "previous_response_id")
                history = [
                    *previous.messages,
                    {"role": "assistant", "content": previous.output_text},
                ]
            try:
                gateway_request, _, _ = parse_chat_request(
                    _chat_body(ask, history),
                    caller=caller,
                    session_header=request.headers.get("x-session-id"),
                    cache_control=request.headers.get("cache-control"),
                    headers=request.headers,
                )
            except GatewayError as exc:
                raise _renamed(exc) from exc
        except GatewayError as exc:
            await refusal_logged(exc, entry_point=ENTRY_POINT, caller=caller, model=model_of(body))
            raise
    except GatewayError as exc:
        return _error_of(exc)
    gateway_request = replace(gateway_request, entry_point=ENTRY_POINT)
    turn = Turn(
        id=f"resp_{gateway_request.request_id.hex}",
        message_id=f"msg_{secrets.token_hex(16)}",
        created_at=int(time.time()),
        ask=ask,
        messages=history + ask.input,
        caller=caller,
    )
    events = journaled(chat_stream(gateway_request), request=gateway_request)
    request_id = str(gateway_request.request_id)
    if ask.stream:
        return await _streamed(events, turn, request_id)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Failed):
                return _failure(event, request_id)
            if isinstance(event, Finished):
                answer = turn.object(event.model_ref, "completed", event)
                await turn.store(event, answer)
                headers = orchestrator_headers(request_id, event) | rate_limit_headers(
                    event.rate_limit
                )
                headers["x-orchestrator-fallbacks"] = str(event.fallbacks)
                return json_response(
                    answer | {"orchestrator": orchestrator_extension(event)}, headers=headers
                )
    raise RuntimeError("chat_stream ended without a terminal event")


def _sse(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def _streamed(
    events: AsyncGenerator[Event, None], turn: Turn, request_id: str
) -> HttpResponseBase:
    """Headers wait for the first text (or the end), as the chat door's do, so a failure before
    any text is an ordinary HTTP error."""
    started, first = await answer_opening(events)
    if isinstance(first, Failed):
        return _failure(first, request_id)
    model = started.model_ref if started else getattr(first, "model_ref", "")
    sequence = 0
    where = {"item_id": turn.message_id, "output_index": 0, "content_index": 0}

    def frame(kind: str, **fields: Any) -> bytes:
        nonlocal sequence
        payload = {"type": kind, "sequence_number": sequence, **fields}
        sequence += 1
        return _sse(kind, payload)

    async def body() -> AsyncIterator[bytes]:
        opening = turn.object(model, "in_progress")
        yield b"".join(
            [
                frame("response.created", response=opening),
                frame("response.in_progress", response=opening),
                frame(
                    "response.output_item.added",
                    output_index=0,
                    item=turn.item(None, "in_progress"),
                ),
                frame("response.content_part.added", part=_part(""), **where),
            ]
        )
        pending: Event | None = first
        try:
            while pending is not None:
                if isinstance(pending, Delta) and pending.text:
                    yield frame(
                        "response.output_text.delta", delta=pending.text, logprobs=[], **where
                    )
                elif isinstance(pending, Finished):
                    answer = turn.object(pending.model_ref, "completed", pending)
                    await turn.store(pending, answer)
                    item = answer["output"][0]
                    last = (
                        "response.incomplete"
                        if answer["status"] == "incomplete"
                        else "response.completed"
                    )
                    final = answer | {"orchestrator": orchestrator_extension(pending)}
                    yield b"".join(
                        [
                            frame(
                                "response.output_text.done",
                                text=pending.text,
                                logprobs=[],
                                **where,
                            ),
                            frame("response.content_part.done", part=_part(pending.text), **where),
                            frame("response.output_item.done", output_index=0, item=item),
                            frame(last, response=final),
                        ]
                    )
                    return
                elif isinstance(pending, Failed):
                    error = {"code": pending.code, "message": pending.message}
                    failed = turn.object(model, "failed", error=error)
                    yield frame("response.failed", response=failed)
                    return
                pending = await anext(events, None)
        finally:
            await events.aclose()

    response = StreamingHttpResponse(body(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    headers = orchestrator_headers(request_id, started)
    if started is not None:
        headers |= rate_limit_headers(started.rate_limit)
    for name, value in headers.items():
        response[name] = value
    return response


def _deleted(response_id: str, caller: Caller) -> bool:
    """Delete the stored response `response_id` if the caller's API key made it."""
    if caller.api_key_id is None or not _can_name_one(response_id):
        return False
    found = StoredResponse.objects.filter(id=response_id, api_key_id=caller.api_key_id)
    count, _ = found.delete()
    return count > 0


@csrf_exempt
async def response_resource(request: HttpRequest, response_id: str) -> HttpResponse:
    """`GET /v1/responses/{id}`: a stored response, as it was answered, to the key that made
    it; `DELETE` forgets it (a later `previous_response_id` naming it is not found)."""
    if request.method not in ("GET", "DELETE"):
        return openai_error("INVALID_REQUEST", "Use GET or DELETE.", 405)
    try:
        caller = await _caller(request)
        if request.method == "DELETE":
            if not await in_thread(_deleted)(response_id, caller):
                raise _not_found(response_id, None)
            return json_response({"id": response_id, "object": "response", "deleted": True})
        stored = await in_thread(_stored)(response_id, caller)
        if stored is None:
            raise _not_found(response_id, None)
    except GatewayError as exc:
        return _error_of(exc)
    return json_response(stored.response)
