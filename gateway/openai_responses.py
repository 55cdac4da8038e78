"""OpenAI's Responses API: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`.

A request's `instructions`, `input`, function `tools` and `text.format` are put in a chat
completions body (gateway/openai_responses_parse.py) and checked by the chat door's own parser
(`parse_chat_request`), then routed through the chat path (`chat_stream`, so it is admitted,
budgeted, costed and logged like a chat completion, with entry point `responses`, and routed by
capability) and answered as a `response` object whose output is a message item and a
`function_call` item per tool call, whole or streamed as OpenAI's typed events.

Conversation state: an answer is kept (`StoredResponse`) unless the request says `store: false`;
a later request of the same API key continues it with `previous_response_id` (the stored
conversation and its answer, function calls included, go before the new input, whose
`function_call_output` items answer them; the earlier `instructions` do not carry over), and
`GET /v1/responses/{id}` reads it back. Another key's response is not found. A stream the client
leaves is kept as far as it went.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from analytics.models import RequestLog, StoredResponse
from core.shutdown import SHUTDOWN_MESSAGE, cut_short_by_shutdown
from core.threads import in_thread
from gateway.auth import GatewayError, body_size_check, caller_from_key, rate_limit_headers
from gateway.openai import _error_of, _failure, openai_error
from gateway.openai_parse import parse_chat_request
from gateway.openai_responses_parse import ResponseAsk, outputs_check, parse_response_ask
from gateway.refusals import field_refused, json_body, model_of, refusal_logged
from gateway.shaping import (
    answer_opening,
    json_response,
    orchestrator_extension,
    orchestrator_headers,
    streamed_response,
)
from providers.adapters.types import ToolCallDelta
from routing.pipeline.events import Caller, Delta, Event, Failed, Finished
from routing.pipeline.journal import journaled
from routing.services import chat_stream

ENTRY_POINT = RequestLog.EntryPoint.RESPONSES
CHAT_FIELDS = {"max_tokens": "max_output_tokens", "messages": "input"}
# A capability refusal names the chat field that asked for it; here, the Responses one.
RESPONSES_FIELDS = {"response_format": "text.format"}

# The stored response's id column (analytics.StoredResponse.id).
RESPONSE_ID_MAX_CHARS = 64


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


def _answer_message(stored: StoredResponse) -> dict[str, Any]:
    """A stored response's answer as the chat assistant turn that continues it: its text and
    the function calls it made (content null when it said nothing besides them)."""
    output = stored.response.get("output") or []
    calls = [
        {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        for item in output
        # A call cut short (the answer's end, the client gone) has no whole arguments.
        if item.get("type") == "function_call" and item.get("status") == "completed"
    ]
    if not calls:
        return {"role": "assistant", "content": stored.output_text}
    return {"role": "assistant", "content": stored.output_text or None, "tool_calls": calls}


def _chat_body(ask: ResponseAsk, history: list[dict[str, Any]]) -> dict[str, Any]:
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
    return chat | ask.chat


@dataclass
class Turn:
    """One response being answered: what its object echoes and what is stored of it."""

    id: str
    message_id: str
    created_at: int
    ask: ResponseAsk
    messages: list[dict[str, Any]]
    caller: Caller
    # Each function call's output item id, by its call id.
    call_item_ids: dict[str, str] = field(default_factory=dict)

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
            "parallel_tool_calls": self.ask.parallel_tool_calls,
            "tool_choice": self.ask.tool_choice,
            "tools": self.ask.tools,
            "text": self.ask.text,
        }

    def item(self, text: str | None, status: str, item_id: str | None = None) -> dict[str, Any]:
        content = [] if text is None else [_part(text)]
        return {
            "type": "message",
            "id": item_id or self.message_id,
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def call_item(self, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
        item_id = self.call_item_ids.setdefault(call_id, f"fc_{secrets.token_hex(16)}")
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
            "status": status,
        }

    def output(self, event: Finished, status: str) -> list[dict[str, Any]]:
        """The answer's output items: its message (when it said something, or did nothing
        else), then one function call item per call it made."""
        items = [self.item(event.text, status)] if event.text or not event.tool_calls else []
        return items + [
            self.call_item(call.id, call.name, call.arguments, status) for call in event.tool_calls
        ]

    def object(
        self,
        model: str,
        status: str,
        event: Finished | None = None,
        error: Any = None,
        output: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        incomplete = event is not None and event.finish_reason == "length"
        if event is not None:
            status = "incomplete" if incomplete else "completed"
        if output is None:
            output = self.output(event, status) if event is not None else []
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": model,
            "output": output,
            "usage": _usage(event) if event is not None else None,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "truncation": "disabled",
            **self.echo(),
        }

    async def store(self, event: Finished, answer: dict[str, Any]) -> None:
        await self._kept(event.model_ref, event.text, answer)

    async def store_left(self, model: str, output: StreamedOutput) -> None:
        """A streamed answer the client left before its end, kept as far as it went (`status:
        "incomplete"`, `incomplete_details.reason: "client_disconnected"`, no usage), so that
        `previous_response_id` continues the conversation the client saw."""
        output.close("incomplete")
        answer = self.object(model, "incomplete", output=output.items)
        answer["incomplete_details"] = {"reason": "client_disconnected"}
        await self._kept(model, output.text_streamed(), answer)

    async def _kept(self, model: str, text: str, answer: dict[str, Any]) -> None:
        if not self.ask.store:
            return
        await in_thread(StoredResponse.objects.create)(
            id=self.id,
            api_key_id=self.caller.api_key_id,
            created_at=datetime.fromtimestamp(self.created_at, tz=UTC),
            model_ref=model,
            messages=self.messages,
            output_text=text,
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


def _refused(event: Failed, request_id: str) -> HttpResponse:
    """The chat path's refusal, naming the Responses field that asked for what no model
    gives (`text.format` for a JSON answer)."""
    field = event.details.get("field")
    if isinstance(field, str) and field in RESPONSES_FIELDS:
        named = RESPONSES_FIELDS[field]
        event = replace(
            event,
            message=event.message.replace(f"({field})", f"({named})"),
            details=event.details | {"field": named},
        )
    return _failure(event, request_id)


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
            history: list[dict[str, Any]] = []
            if ask.previous_response_id is not None:
                previous = await in_thread(_stored)(ask.previous_response_id, caller)
                if previous is None:
                    raise _not_found(ask.previous_response_id, "previous_response_id")
                history = [*previous.messages, _answer_message(previous)]
            outputs_check(ask, history)
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
                return _refused(event, request_id)
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


class StreamedOutput:
    """A streamed answer's output items as they open, grow and close, and the events that say
    so, numbered by `frame`. One item is open at a time, as OpenAI streams them: a new one
    (text after a function call, the next function call) closes the one before."""

    def __init__(self, turn: Turn, frame: Callable[..., bytes]) -> None:
        self.turn = turn
        self.frame = frame
        self.items: list[dict[str, Any]] = []
        self.pieces: dict[int, list[str]] = {}
        self.open: int | None = None
        # Output index of each streamed call, by the call's index in the answer.
        self.calls: dict[int, int] = {}

    def text(self, piece: str) -> list[bytes]:
        out = []
        if self.open is None or self.items[self.open]["type"] != "message":
            out += self._message_opened()
        index = self.open
        assert index is not None
        self.pieces[index].append(piece)
        where = self._where(index)
        out.append(self.frame("response.output_text.delta", delta=piece, logprobs=[], **where))
        return out

    def call(self, piece: ToolCallDelta) -> list[bytes]:
        out = []
        index = self.calls.get(piece.index)
        if index is None:
            out += self.close("completed")
            index = self._opened(
                self.turn.call_item(piece.id or "", piece.name or "", "", "in_progress")
            )
            self.calls[piece.index] = index
            out.append(
                self.frame("response.output_item.added", output_index=index, item=self.items[index])
            )
        if piece.arguments:
            self.pieces[index].append(piece.arguments)
            out.append(
                self.frame(
                    "response.function_call_arguments.delta",
                    item_id=self.items[index]["id"],
                    output_index=index,
                    delta=piece.arguments,
                )
            )
        return out

    def finish(self, event: Finished, status: str) -> list[bytes]:
        """What the answer holds that was not streamed (all of it, when it was answered in one
        piece), then the last item closed."""
        out = []
        streamed = self.text_streamed()
        if len(event.text) > len(streamed) and event.text.startswith(streamed):
            out += self.text(event.text[len(streamed) :])
        seen = {item["call_id"] for item in self.items if item["type"] == "function_call"}
        for number, call in enumerate(event.tool_calls):
            if call.id not in seen:
                whole = ToolCallDelta(-1 - number, call.id, call.name, call.arguments)
                out += self.call(whole)
        if not self.items:
            out += self._message_opened()
        return out + self.close(status)

    def text_streamed(self) -> str:
        return "".join(
            "".join(self.pieces[i])
            for i, item in enumerate(self.items)
            if item["type"] == "message"
        )

    def close(self, status: str) -> list[bytes]:
        index, self.open = self.open, None
        if index is None:
            return []
        item = self.items[index]
        item["status"] = status
        done = "".join(self.pieces[index])
        if item["type"] == "message":
            item["content"] = [_part(done)]
            where = self._where(index)
            return [
                self.frame("response.output_text.done", text=done, logprobs=[], **where),
                self.frame("response.content_part.done", part=_part(done), **where),
                self.frame("response.output_item.done", output_index=index, item=item),
            ]
        item["arguments"] = done
        return [
            self.frame(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=done,
            ),
            self.frame("response.output_item.done", output_index=index, item=item),
        ]

    def _opened(self, item: dict[str, Any]) -> int:
        index = len(self.items)
        self.items.append(item)
        self.pieces[index] = []
        self.open = index
        return index

    def _message_opened(self) -> list[bytes]:
        out = self.close("completed")
        first = not any(item["type"] == "message" for item in self.items)
        item_id = self.turn.message_id if first else f"msg_{secrets.token_hex(16)}"
        index = self._opened(self.turn.item(None, "in_progress", item_id))
        return [
            *out,
            self.frame("response.output_item.added", output_index=index, item=self.items[index]),
            self.frame("response.content_part.added", part=_part(""), **self._where(index)),
        ]

    def _where(self, index: int) -> dict[str, Any]:
        return {"item_id": self.items[index]["id"], "output_index": index, "content_index": 0}


async def _streamed(
    events: AsyncGenerator[Event, None], turn: Turn, request_id: str
) -> HttpResponseBase:
    """Headers wait for the first text or function call (or the end), as the chat door's do,
    so a failure before any is an ordinary HTTP error."""
    started, first = await answer_opening(events)
    if isinstance(first, Failed):
        return _refused(first, request_id)
    model = started.model_ref if started else getattr(first, "model_ref", "")
    sequence = 0

    def frame(kind: str, **fields: Any) -> bytes:
        nonlocal sequence
        payload = {"type": kind, "sequence_number": sequence, **fields}
        sequence += 1
        return _sse(kind, payload)

    output = StreamedOutput(turn, frame)

    async def body() -> AsyncIterator[bytes]:
        opening = turn.object(model, "in_progress")
        out = [
            frame("response.created", response=opening),
            frame("response.in_progress", response=opening),
        ]
        pending: Event | None = first
        # Whether the client left, and whether the answer had ended (it is kept then, or not
        # at all).
        left = ended = False
        try:
            while pending is not None:
                if isinstance(pending, Delta):
                    if pending.text:
                        out += output.text(pending.text)
                    for piece in pending.tool_calls:
                        out += output.call(piece)
                elif isinstance(pending, Finished):
                    ended = True
                    answer = turn.object(pending.model_ref, "completed", pending, output=[])
                    out += output.finish(pending, answer["status"])
                    answer["output"] = output.items
                    await turn.store(pending, answer)
                    last = (
                        "response.incomplete"
                        if answer["status"] == "incomplete"
                        else "response.completed"
                    )
                    final = answer | {"orchestrator": orchestrator_extension(pending)}
                    out.append(frame(last, response=final))
                    yield b"".join(out)
                    return
                elif isinstance(pending, Failed):
                    ended = True
                    error = {"code": pending.code, "message": pending.message}
                    failed = turn.object(model, "failed", error=error)
                    out.append(frame("response.failed", response=failed))
                    yield b"".join(out)
                    return
                if out:
                    yield b"".join(out)
                    out = []
                pending = await anext(events, None)
        except asyncio.CancelledError:
            if not cut_short_by_shutdown():
                left = True
                raise
            # The process is shutting down: the answer ends here with `response.failed` and a
            # clean end of the body (its request is logged as cancelled).
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            error = {"code": "server_shutting_down", "message": SHUTDOWN_MESSAGE}
            out.append(frame("response.failed", response=turn.object(model, "failed", error=error)))
            yield b"".join(out)
        except GeneratorExit:
            left = True
            raise
        finally:
            try:
                await events.aclose()
            finally:
                # The client went away (its request is logged as cancelled).
                if left and not ended:
                    await turn.store_left(model, output)

    return streamed_response(
        body(),
        content_type="text/event-stream",
        headers=orchestrator_headers(request_id, started),
        started=started,
    )


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
