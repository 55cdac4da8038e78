"""The Gemini door's wire shapes and the wrapper every one of its views runs in.

The door's paths lie under `/v1beta/` and take the `/v1` fast path (orchestrator_site/asgi.py:
no middleware, the body's limit enforced while it arrives); their views are found by the URLconf
there, since the model is part of the path. Every error a client can meet there, a refused Host
and a body over the limit included, answers in Google's shape:
`{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT"}}`.

An API key may come as `?key=` (Google's own clients and many REST examples send it so). The
wrapper moves it into the `x-goog-api-key` header's place before the view runs and takes it out
of the query string, so nothing that logs or reports the request (Django's `django.request`
lines print the full path, error reports print the query) ever holds it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from django.views.decorators.csrf import csrf_exempt

from core.dependencies import DEPENDENCY_AWAY, dependency_away, dependency_message
from gateway.auth import GatewayError, presented_key

PREFIX = "/v1beta/"
API_VERSION = "v1beta"
KEY_HEADER_META = "HTTP_X_GOOG_API_KEY"
AUTH_MESSAGE = "Missing, invalid or revoked API key (x-goog-api-key header or key= parameter)."
# Google's canonical status names (google.rpc.Code) by HTTP status. 502 is UNAVAILABLE as in
# gRPC's own HTTP mapping; 405 and 413 have no code of their own and are the caller's mistake.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# Google has no 402: a spent budget is its quota error, RESOURCE_EXHAUSTED.
HTTP_STATUS = {402: 429}

logger = logging.getLogger(__name__)

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def is_gemini_path(path: str) -> bool:
    return path.startswith(PREFIX)


def gemini_json(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        content_type="application/json; charset=UTF-8",
        status=status,
        headers=headers,
    )


def http_status(status: int) -> int:
    """The HTTP status the door answers for the pipeline's `status`."""
    return HTTP_STATUS.get(status, status)


def error_object(
    message: str,
    status: int,
    *,
    request_id: str | None = None,
    retry_after_s: float | None = None,
) -> dict[str, Any]:
    """Google's error object, for the pipeline's HTTP `status`. What Google itself would add
    as typed details goes there: the log row's id (`RequestInfo`) and when to retry
    (`RetryInfo`)."""
    code = http_status(status)
    fallback = "INVALID_ARGUMENT" if 400 <= code < 500 else "INTERNAL"
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": STATUS_NAMES.get(code, fallback),
    }
    details: list[dict[str, Any]] = []
    if request_id is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id}
        )
    if retry_after_s is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{retry_after_s:.0f}s",
            }
        )
    if details:
        error["details"] = details
    return error


def gemini_error(
    message: str,
    status: int,
    *,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
    retry_after_s: float | None = None,
) -> HttpResponse:
    """`{"error": {...}}` with its HTTP status; `request_id` (also in the
    `x-orchestrator-request-id` header) names the log row of a request that was logged."""
    if request_id is not None:
        headers = (headers or {}) | {"x-orchestrator-request-id": request_id}
    error = error_object(message, status, request_id=request_id, retry_after_s=retry_after_s)
    return gemini_json({"error": error}, status=error["code"], headers=headers)


def error_of(exc: GatewayError, headers: dict[str, str] | None = None) -> HttpResponse:
    return gemini_error(
        exc.message,
        exc.status,
        headers=headers,
        request_id=exc.trace_id,
        retry_after_s=exc.retry_after_s,
    )


def key_presented(request: HttpRequest) -> str | None:
    """The API key: `x-goog-api-key` (or `?key=`, moved there by `gemini_view`), else the
    gateway's usual `Authorization: Bearer` or `x-api-key`."""
    return request.META.get(KEY_HEADER_META) or presented_key(request)


def _key_out_of_query(request: HttpRequest) -> None:
    query = request.META.get("QUERY_STRING", "")
    if "key=" not in query:
        return
    pairs = parse_qsl(query, keep_blank_values=True)
    keys = [value for name, value in pairs if name == "key"]
    if not keys:
        return
    rest = urlencode([(name, value) for name, value in pairs if name != "key"])
    request.META["QUERY_STRING"] = rest
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        scope["query_string"] = rest.encode()
    request.GET = QueryDict(rest)
    if keys[0] and not request.META.get(KEY_HEADER_META):
        request.META[KEY_HEADER_META] = keys[0]


def gemini_view(view: View) -> View:
    """A view of the door: CSRF-exempt (callers authenticate by key, never by cookie), its key
    out of the query string first, and what escapes it answered in Google's shape."""

    @functools.wraps(view)
    async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        _key_out_of_query(request)
        try:
            return await view(request, *args, **kwargs)
        except RequestDataTooBig:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return gemini_error(f"Request body is over the limit of {limit} bytes.", 413)
        except GatewayError as exc:
            return error_of(exc)
        except DEPENDENCY_AWAY as exc:
            dependency = dependency_away(exc) or "database"
            logger.warning("Gemini door request refused, %s unreachable: %s", dependency, exc)
            return gemini_error(dependency_message(dependency), 503)

    return csrf_exempt(wrapped)


def method_refusal(request: HttpRequest, *allowed: str) -> HttpResponse | None:
    if request.method in allowed:
        return None
    return gemini_error(f"Use {' or '.join(allowed)}.", 405, headers={"Allow": ", ".join(allowed)})


def not_found_message(name: str) -> str:
    """Google's words for a model it does not serve, with where to look."""
    return (
        f"models/{name} is not found for API version {API_VERSION}. Call ListModels "
        "(GET /v1beta/models) to see the models and policies this gateway serves."
    )
