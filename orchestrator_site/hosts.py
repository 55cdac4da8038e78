"""The Host check of every door, made on the ASGI scope before any handler sees the request.

Django checks the Host only when something calls `HttpRequest.get_host()` (CommonMiddleware
does, for pages). The `/v1` handler runs no middleware, static files are served before
Django's middleware, and a websocket's Origin check says nothing about its Host; so the check
is made here, once, for HTTP and websockets alike, with Django's own rules
(`ALLOWED_HOSTS`, `USE_X_FORWARDED_HOST`, and the local names allowed while DEBUG with no
hosts set).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

logger = logging.getLogger("django.security.DisallowedHost")

DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]

# Paths whose callers read JSON: a refused Host answers them in the API's error envelope.
JSON_PATHS = ("/metrics", "/metrics/prometheus", "/models", "/health")
JSON_PREFIXES = ("/api/",)


def host_of(scope: dict[str, Any]) -> str:
    """The host the request names, as `HttpRequest.get_host()` reads it (port included)."""
    headers = _headers(scope["headers"])
    if settings.USE_X_FORWARDED_HOST and b"x-forwarded-host" in headers:
        return headers[b"x-forwarded-host"].decode("latin-1")
    if b"host" in headers:
        return headers[b"host"].decode("latin-1")
    server = scope.get("server") or ("unknown", None)
    name, port = server[0], server[1]
    return name if port is None else f"{name}:{port}"


def host_allowed(host: str) -> bool:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = DEBUG_HOSTS
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


def host_refused(scope: dict[str, Any]) -> str | None:
    """The scope's host when it is not allowed; else None."""
    host = host_of(scope)
    return None if host_allowed(host) else host


def host_refusal_log(host: str, path: str) -> None:
    """Logged as Django logs a refused host on the site's pages."""
    logger.warning("Invalid HTTP_HOST header: %r. Refused.", host, extra={"path": path})


def wants_json(path: str) -> bool:
    """Whether `path` is an API door (JSON answers) rather than a page."""
    return (
        path in JSON_PATHS
        or path.startswith(JSON_PREFIXES)
        or (path.startswith("/models/") and path.endswith("/status"))
    )


def _headers(pairs: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for name, value in pairs:
        lowered = name.lower()
        if lowered in (b"host", b"x-forwarded-host") and lowered not in found:
            found[lowered] = value
    return found
