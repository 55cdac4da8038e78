"""Security headers of every page: Content-Security-Policy (Django 5.2 has none built in),
`X-Content-Type-Options`, `Referrer-Policy` and framing refused.

The policy allows scripts and everything else from the site itself only: plotly.js is served
from the plotly package under /static/, the pages' scripts are files in static/js/, and no
template carries an inline script or event handler. Styles also allow 'unsafe-inline': plotly
writes style attributes and <style> rules into the charts it draws, and the report pages keep a
shared <style> block; a style cannot run code. The websocket (chat, telemetry) is allowed to
the page's own host over ws:// and wss://.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.http.response import HttpResponseBase

Handler = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]

POLICY = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)


def content_security_policy(host: str | None) -> str:
    connect = "connect-src 'self'"
    if host:
        connect += f" ws://{host} wss://{host}"
    return "; ".join((*POLICY, connect))


class SecurityHeadersMiddleware:
    """Sets the headers on every response that does not set them itself."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return headers_set(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        assert not isinstance(response, HttpResponseBase)
        return headers_set(request, await response)


def headers_set(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    try:
        host: str | None = request.get_host()
    except DisallowedHost:
        host = None
    response.headers.setdefault("Content-Security-Policy", content_security_policy(host))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
