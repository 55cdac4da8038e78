"""A client's hang-up, held back until `chat_stream` has taken its request in hand.

The ASGI handler turns a client's hang-up (`http.disconnect`) into the cancellation of the view.
Inside `chat_stream` a cancellation ends the request properly: one `cancelled` log row, and its
budget hold released or settled for what was received. Before that it leaves nothing, not even
the row: the caller is being authenticated, the body parsed, the answer's journal entry and
stream gauge opened (and on the native API, Django's middleware and django-ninja run first), each
with awaits where a cancellation lands. So on the gateway's doors the hang-up waits until
`chat_stream` has begun (`hang_up_pass`) or the answer is complete, whichever comes first. A
hang-up while the body is still arriving goes through at once: there is no request yet.

A client that hangs up before the server has read its request at all never reaches the
application: the server reports the hang-up instead of the body, so no door sees the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

# The paths of the doors that answer an HTTP request through `chat_stream`.
DOOR_PATHS = frozenset(
    {"/v1/chat/completions", "/api/execute", "/v1/messages", "/api/chat", "/api/generate"}
)

# The Gemini door's model calls name their model in the path
# (`/v1beta/models/{model}:generateContent`): known by their prefix and method.
GEMINI_CALL_PREFIX = "/v1beta/models/"
GEMINI_CALL_METHODS = (":generateContent", ":streamGenerateContent")

Receive = Callable[[], Awaitable[dict[str, Any]]]


def is_door_path(path: str) -> bool:
    return path in DOOR_PATHS or (
        path.startswith(GEMINI_CALL_PREFIX) and path.endswith(GEMINI_CALL_METHODS)
    )


class HangUpGate:
    """`receive` for one request, holding a hang-up back until `open` is called."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._body_read = False
        self._opened = asyncio.Event()

    async def __call__(self) -> dict[str, Any]:
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self._body_read = True
        elif message["type"] == "http.disconnect" and self._body_read:
            await self._opened.wait()
        return message

    def open(self) -> None:
        self._opened.set()


# The gate of the request being handled; the handler's tasks inherit it.
_gate: ContextVar[HangUpGate | None] = ContextVar("hang_up_gate", default=None)


def hang_up_gated(scope: dict[str, Any], receive: Receive) -> Receive:
    """`receive` as the application should see it: gated on the gateway's doors. Called in the
    request's own task, before the handler (which inherits the gate)."""
    if not is_door_path(scope["path"]):
        return receive
    gate = HangUpGate(receive)
    _gate.set(gate)
    return gate


def hang_up_pass() -> None:
    """Let the current request's hang-up through from now on (`chat_stream` calls it where a
    cancellation is handled); nothing for a request without a gate (websocket, batch item)."""
    gate = _gate.get()
    if gate is not None:
        gate.open()
