"""Who is calling the gateway, and the one error type every gateway entry point raises.

Keys come as `Authorization: Bearer <key>` or `x-api-key: <key>`. The native API also accepts
a logged-in browser session; that path goes through ninja's cookie auth, which enforces CSRF,
so a page on another site cannot spend a signed-in user's budget.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Schema
from ninja.security import APIKeyCookie, APIKeyHeader, HttpBearer

from gateway.apikeys import apikey_authenticate
from routing.pipeline.events import ERROR_STATUS, Caller, RateLimitInfo


class ErrorOut(Schema):
    """The native API's error envelope, `{"error": {"code", "message", "details"}}`."""

    error: dict[str, Any]


class GatewayError(Exception):
    """A request refused with one of the `ERROR_STATUS` codes."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        rate_limit: RateLimitInfo | None = None,
        retry_after_s: float | None = None,
        status: int | None = None,
        trace_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self._status = status
        # The id of the refusal's log row, when it was logged: what a caller quotes to staff.
        self.trace_id = trace_id
        self.code = code
        self.message = message
        self.details = details or {}
        self.rate_limit = rate_limit
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> int:
        return self._status or ERROR_STATUS.get(self.code, 500)


def presented_key(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def body_size_check(request: HttpRequest) -> None:
    """Refuse a body over the limit from its declared length, before anything parses it."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    declared = request.headers.get("Content-Length", "")
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(
            "INVALID_REQUEST",
            f"Request body of {declared} bytes is over the limit of {limit} bytes.",
            details={"limit_bytes": limit, "content_length": int(declared)},
            status=413,
        )


async def caller_from_key(request: HttpRequest) -> Caller | None:
    raw = presented_key(request)
    return await apikey_authenticate(raw) if raw else None


async def caller_from_session(request: HttpRequest) -> Caller | None:
    user = await request.auser()
    if not user.is_authenticated:
        return None
    return Caller(user_id=user.pk, is_staff=user.is_staff)


class BearerKeyAuth(HttpBearer):
    """`Authorization: Bearer <key>`."""

    async def __call__(self, request: HttpRequest) -> Caller | None:
        body_size_check(request)
        return await caller_from_key(request)

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        raise AssertionError("__call__ authenticates")


class HeaderKeyAuth(APIKeyHeader):
    """`x-api-key: <key>`."""

    param_name = "x-api-key"

    async def __call__(self, request: HttpRequest) -> Caller | None:
        return await caller_from_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        raise AssertionError("__call__ authenticates")


class SessionCsrfAuth(APIKeyCookie):
    """A logged-in session; unsafe methods need the CSRF token like any Django form."""

    param_name = settings.SESSION_COOKIE_NAME

    async def __call__(self, request: HttpRequest) -> Caller | None:
        if not request.COOKIES.get(self.param_name):
            return None
        self._get_key(request)  # raises for a missing or wrong CSRF token
        return await caller_from_session(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        raise AssertionError("__call__ authenticates")


GATEWAY_AUTH = [BearerKeyAuth(), HeaderKeyAuth(), SessionCsrfAuth()]


def rate_limit_headers(
    rate_limit: RateLimitInfo | None, retry_after_s: float | None = None
) -> dict[str, str]:
    """`x-ratelimit-*` (OpenAI's names) and, on a refusal, `Retry-After` in whole seconds."""
    headers: dict[str, str] = {}
    if rate_limit is not None:
        pairs = {
            "x-ratelimit-limit-requests": rate_limit.limit_requests,
            "x-ratelimit-remaining-requests": rate_limit.remaining_requests,
            "x-ratelimit-limit-tokens": rate_limit.limit_tokens,
            "x-ratelimit-remaining-tokens": rate_limit.remaining_tokens,
        }
        headers.update({name: str(value) for name, value in pairs.items() if value is not None})
        headers["x-ratelimit-reset-requests"] = f"{rate_limit.reset_s:.3f}s"
        retry_after_s = retry_after_s if retry_after_s is not None else rate_limit.retry_after_s
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return headers
