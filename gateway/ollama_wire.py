"""Ollama's wire shapes, shared by the door's views and by the ASGI layer that answers for them
before a view runs (a refused Host, a body over the limit)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from django.http import HttpResponse

# The Ollama door's paths: routed before the native API's `api/` include (orchestrator_site/
# urls.py) and served without the middleware stack, as `/v1` is (orchestrator_site/asgi.py).
OLLAMA_PATHS = frozenset({"/api/chat", "/api/generate", "/api/tags", "/api/show", "/api/version"})
KEY_REFUSED = "Missing, invalid or revoked API key (Authorization: Bearer <key>)."


def ollama_json(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        content_type="application/json; charset=utf-8",
        status=status,
        headers=headers,
    )


def ollama_error(
    message: str, status: int, *, headers: dict[str, str] | None = None
) -> HttpResponse:
    """Ollama's error shape: `{"error": "<message>"}`."""
    return ollama_json({"error": message}, status=status, headers=headers)


def ollama_time(moment: datetime) -> str:
    """RFC 3339 in UTC, as Ollama writes its times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def not_found_message(requested: str) -> str:
    return f'model "{requested}" not found; GET /api/tags lists the models this gateway serves'
