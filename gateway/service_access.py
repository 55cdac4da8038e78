"""Who may read the service endpoints: `/metrics`, `/metrics/prometheus`, `/models` and
`/models/{name}/status` (traffic counts, costs and the model list).

In order: anyone when `ORCHESTRATOR_METRICS_PUBLIC` is on; a caller presenting
`Authorization: Bearer <ORCHESTRATOR_METRICS_TOKEN>` (a Prometheus scraper); a signed-in staff
user. Everyone else is refused in the API's envelope: 401 without credentials or with a wrong
token, 403 for a signed-in user who is not staff. An empty token setting accepts no token.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Coroutine
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from gateway.auth import presented_key

View = Callable[..., Coroutine[Any, Any, HttpResponse]]


def metrics_token_valid(presented: str | None) -> bool:
    expected = settings.ORCHESTRATOR_METRICS_TOKEN
    if not expected or not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def service_access_required(view: View) -> View:
    @functools.wraps(view)
    async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if settings.ORCHESTRATOR_METRICS_PUBLIC:
            return await view(request, *args, **kwargs)
        if metrics_token_valid(presented_key(request)):
            return await view(request, *args, **kwargs)
        user = await request.auser()
        if user.is_authenticated and user.is_staff:
            return await view(request, *args, **kwargs)
        if user.is_authenticated:
            return _refusal("Staff only: sign in as a staff user.", 403)
        return _refusal(
            "Present Authorization: Bearer <metrics token>, or sign in as a staff user.", 401
        )

    return guarded


def _refusal(message: str, status: int) -> JsonResponse:
    body = {"error": {"code": "AUTHENTICATION_FAILED", "message": message, "details": {}}}
    headers = {"WWW-Authenticate": 'Bearer realm="metrics"'} if status == 401 else None
    return JsonResponse(body, status=status, headers=headers)
