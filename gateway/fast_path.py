"""The doors' fast path: Django without its middleware stack, for the paths the API clients
call (`/v1/...`, the Ollama door's `/api/...` paths and the Gemini door's `/v1beta/...`).

`orchestrator_site.asgi` sends those paths here and everything else (pages, the native `/api`,
static files) through Django's full stack. Errors this handler answers itself (an unknown path,
a body over the size limit, a dependency that cannot be reached, a Host not served) take the
shape of the door the path belongs to.
"""

import asyncio
import contextlib
import functools
import io
import logging
import re
import tempfile
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response, response_for_exception
from django.http import HttpRequest, HttpResponseBase
from django.urls import URLPattern, get_resolver, resolve, set_script_prefix
from django.utils.log import log_response

from core.dependencies import (
    DEPENDENCY_AWAY,
    DEPENDENCY_UNAVAILABLE,
    dependency_away,
    dependency_message,
)
from gateway.gemini_wire import gemini_error, is_gemini_path
from gateway.ollama_wire import OLLAMA_PATHS, ollama_error

API_PREFIX = "/v1/"
logger = logging.getLogger(__name__)


def is_door_path(path: str) -> bool:
    """Whether `path` is one of the doors' (served by `MiddlewareFreeASGIHandler`). The Ollama
    door's paths lie under the native API's /api/ but take the fast path too."""
    return path.startswith(API_PREFIX) or path in OLLAMA_PATHS or is_gemini_path(path)


class MiddlewareFreeASGIHandler(ASGIHandler):
    """Django without the middleware stack, for the OpenAI-compatible `/v1` API.

    Its views are async, authenticated by API key and CSRF-exempt: sessions, auth, messages
    and CSRF have nothing to do there. Django's middleware are sync-first, and under ASGI each
    one's request and response hooks run in the single thread-sensitive executor, so every `/v1`
    request queued behind every other on one thread.

    Nor does a request get a thread-sensitive context of its own, and `request_started` and
    `request_finished` are not sent. Django sends them through `sync_to_async` (a thread per
    request, and another to join it), and what Django connects to them cleans up the calling
    thread's database connections, cache connections and query log. The event loop's thread has
    none of those: the `/v1` views reach the database only through worker-thread calls that
    clean up their own connections (`core.threads.in_thread`), and the guards' cache backend is
    shared and never closed per request. Sent inline they still cost a measurable share of a
    gateway request's CPU for nothing (docs/benchmarks.md, "After cutting the CPU of each
    request"), so a receiver a deployment connects to these signals is called
    for the site's pages, not for `/v1` (docs/api.md says so).
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"the /v1 handler serves HTTP only, not {scope['type']}")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Django's ASGIHandler.handle, without the request signals, with the body's size limit
        # enforced while it arrives: a body over DATA_UPLOAD_MAX_MEMORY_SIZE is refused as soon
        # as its declared length or its bytes so far pass the limit, never read to the end.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        declared = _declared_length(scope)
        if limit is not None and declared is not None and declared > limit:
            await self.send_response(_too_large(scope["path"], limit, declared), send)
            return
        try:
            body_file = await self._read_limited(receive, limit, declared)
        except RequestAborted:
            return
        except _BodyTooLarge:
            await self.send_response(_too_large(scope["path"], limit, declared), send)
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None
            body_file.close()
            await self.send_response(error_response, send)
            _close(error_response)
            return

        # The view runs in this task; a task of its own listens for the client going away and
        # cancels it then (Django runs the view in a second task and waits for either).
        handler = asyncio.current_task()
        assert handler is not None
        aborted: list[BaseException] = []
        answered = False

        async def listen() -> None:
            try:
                await self.listen_for_disconnect(receive)
            except Exception as exc:  # RequestAborted: the client went away
                if not answered:
                    aborted.append(exc)
                    handler.cancel()

        listener = asyncio.create_task(listen())
        response = None
        try:
            response = await self.respond(request)
            await self.send_response(response, send)
        except asyncio.CancelledError:
            if not aborted:
                raise
            handler.uncancel()  # the client's disconnect, not this task's own cancellation
        finally:
            answered = True
            listener.cancel()
        if response is not None:
            _close(response)
        body_file.close()
        if aborted and not isinstance(aborted[0], RequestAborted):
            raise aborted[0]

    async def respond(self, request: HttpRequest) -> HttpResponseBase:
        """The response of the `/v1` view for the request's path, called directly.

        Every `/v1` route is a plain path, so the view is looked up in a table built once from
        the URLconf instead of resolving the URL for every request (a few per cent of the
        gateway's CPU). What Django's handler does around a view is kept: an exception becomes
        Django's error response, and responses of 400 and above are logged."""
        view = _api_views().get(request.path_info) or _patterned_view(request.path_info)
        try:
            if view is None:
                response: HttpResponseBase = _not_found(request.path)
            else:
                response = await view(request)
        except DEPENDENCY_AWAY as exc:
            response = _dependency_unavailable(request.path, exc)
        except Exception as exc:
            response = await sync_to_async(response_for_exception, thread_sensitive=False)(
                request, exc
            )
        closers: list[Any] = cast(Any, response)._resource_closers
        closers.append(request.close)
        if response.status_code >= 400:
            await sync_to_async(log_response, thread_sensitive=False)(
                "%s: %s",
                response.reason_phrase,
                request.path,
                response=cast(Any, response),
                request=request,
            )
        return response

    async def send_response(self, response: HttpResponseBase, send: Any) -> None:
        """Django's `send_response`, with a streamed answer's pieces sent as they come.

        Django passes each piece of an async streaming response through two generators of
        its own (`StreamingHttpResponse.__aiter__` and its `make_bytes` wrapper) and slices it
        (`chunk_bytes`): a few per cent of a forwarded token's CPU on a paced stream. The
        doors' streams yield bytes, so each piece goes to `send` as it is.

        Backpressure: uvicorn's `send` waits while the client's socket buffer is full (its
        transport's write buffer over the high-water mark set in `orchestrator_site.serve`),
        so the stream is not read any further meanwhile; what the upstream sends then waits
        in the upstream client's bounded buffer, and then in TCP's, and is sent as one piece
        once the client catches up (the adapters join what arrived together)."""
        iterator: Any = getattr(response, "_iterator", None)
        if not (response.streaming and getattr(response, "is_async", False)):
            await super().send_response(response, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": _response_headers(response),
            }
        )
        async with contextlib.aclosing(iterator) as pieces:
            async for piece in pieces:
                await send(
                    {
                        "type": "http.response.body",
                        "body": piece if type(piece) is bytes else response.make_bytes(piece),
                        "more_body": True,
                    }
                )
        await send({"type": "http.response.body"})

    def load_middleware(self, is_async: bool = False) -> None:
        # What BaseHandler.load_middleware builds for an empty MIDDLEWARE setting.
        handler: Any = self
        handler._view_middleware = []
        handler._template_response_middleware = []
        handler._exception_middleware = []
        get_response = handler._get_response_async if is_async else handler._get_response
        handler._middleware_chain = convert_exception_to_response(get_response)

    async def _read_limited(self, receive: Any, limit: int | None, declared: int | None) -> Any:
        in_memory = settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        if declared is not None and declared <= in_memory:
            # Small enough to stay in memory whatever: no spooling file to set up.
            body_file: Any = io.BytesIO()
        else:
            body_file = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (the caller closes it)
                max_size=in_memory, mode="w+b"
            )
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            received += len(chunk)
            if limit is not None and received > limit:
                body_file.close()
                raise _BodyTooLarge()
            body_file.write(chunk)
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file


class _BodyTooLarge(Exception):
    pass


def _response_headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    """The headers as Django's `ASGIHandler.send_response` encodes them, cookies included."""
    headers = [
        (header.encode("ascii"), value.encode("latin1")) for header, value in response.items()
    ]
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return headers


def _close(response: HttpResponseBase) -> None:
    """`HttpResponseBase.close` without its `request_finished` signal (see the handler's
    docstring): the response's resources (the request among them) are closed all the same."""
    closers: list[Any] = cast(Any, response)._resource_closers
    for closer in closers:
        with contextlib.suppress(Exception):
            closer()
    closers.clear()
    response.closed = True


@functools.cache
def _api_views() -> dict[str, Any]:
    """`/v1` path -> view, from the URLconf's plain `v1/...` routes (and the Ollama door's)."""
    views = {}
    for pattern in get_resolver().url_patterns:
        route = str(pattern.pattern)
        fast = route.startswith(API_PREFIX[1:]) or "/" + route in OLLAMA_PATHS
        if isinstance(pattern, URLPattern) and fast:
            if pattern.pattern.converters:
                raise ImproperlyConfigured(f"/v1 routes are plain paths, not {route!r}")
            views["/" + route] = pattern.callback
    return views


RESPONSE_PATH = re.compile(r"/v1/responses/[^/]+")


def _patterned_view(path: str) -> Any:
    """The view of a door path that carries a value (the Gemini door's `/v1beta/...`, a stored
    response's `/v1/responses/{id}`), found by the URLconf; None for any other path."""
    if not (is_gemini_path(path) or RESPONSE_PATH.fullmatch(path)):
        return None
    match = resolve(path)
    return functools.partial(match.func, *match.args, **match.kwargs)


def door_error(
    path: str, code: str, message: str, status: int, headers: dict[str, str] | None = None
) -> HttpResponseBase:
    """An error of the `/v1` fast path in the envelope of the door `path` belongs to."""
    from gateway.anthropic import anthropic_error, is_anthropic_path
    from gateway.openai import openai_error

    if is_gemini_path(path):
        return gemini_error(message, status, headers=headers)
    if is_anthropic_path(path):
        return anthropic_error(message, status, headers=headers)
    if path in OLLAMA_PATHS:
        return ollama_error(message, status, headers=headers)
    return openai_error(code, message, status, headers=headers)


def _not_found(path: str) -> HttpResponseBase:
    return door_error(path, "INVALID_REQUEST", f"Unknown endpoint {path}.", 404)


def _dependency_unavailable(path: str, exc: BaseException) -> HttpResponseBase:
    """Postgres or Redis could not be reached in time: the door's JSON error, never Django's
    HTML error page."""
    dependency = dependency_away(exc) or "database"
    logger.warning("/v1 request refused, %s unreachable: %s", dependency, exc)
    return door_error(path, DEPENDENCY_UNAVAILABLE, dependency_message(dependency), 503)


def _declared_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


def _too_large(path: str, limit: int | None, declared: int | None) -> HttpResponseBase:
    size = f"of {declared} bytes " if declared is not None else ""
    message = f"Request body {size}is over the limit of {limit} bytes."
    # The rest of the body is never read: the connection cannot serve another request.
    return door_error(path, "INVALID_REQUEST", message, 413, headers={"Connection": "close"})


def bad_host_response(host: str, path: str, *, openai: bool) -> HttpResponseBase:
    """A request whose Host is not served here, refused in its door's error shape."""
    from gateway.api import envelope

    message = f"Host {host!r} is not served here (ALLOWED_HOSTS)."
    if openai:
        return door_error(path, "INVALID_REQUEST", message, 400)
    return envelope("INVALID_REQUEST", message, 400)
