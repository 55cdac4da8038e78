"""HTTP through Django (static files included), websockets authenticated and origin-checked;
every request's Host checked first (orchestrator_site/hosts.py). The doors' paths take the
fast path without middleware (gateway/fast_path.py).

Static files: Django's `ASGIStaticFilesHandler` serves them inside the ASGI app, streamed
asynchronously, with no extra dependency. WhiteNoise speaks WSGI only; see docs/deployment.md.
"""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
django_http = get_asgi_application()

from asgiref.sync import sync_to_async  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator, WebsocketDenier  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import SuspiciousOperation  # noqa: E402
from django.core.handlers.exception import response_for_exception  # noqa: E402
from django.http import HttpRequest, HttpResponseBase  # noqa: E402

from gateway.fast_path import (  # noqa: E402
    MiddlewareFreeASGIHandler,
    bad_host_response,
    is_door_path,
)
from orchestrator_site.hosts import host_refusal_log, host_refused, wants_json  # noqa: E402
from orchestrator_site.websockets import websocket_urlpatterns  # noqa: E402
from routing.hang_up import hang_up_gated  # noqa: E402


class StaticFilesHandler(ASGIStaticFilesHandler):
    """Django's static files under ASGI; a path that would leave the static folders
    (`/static/css/../../x`) is Django's 400 for a suspicious operation, not a server error."""

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        try:
            return await super().get_response_async(request)
        except SuspiciousOperation as exc:
            return await sync_to_async(response_for_exception, thread_sensitive=False)(request, exc)


api_http = MiddlewareFreeASGIHandler()
site_http = StaticFilesHandler(django_http)


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    is_api = is_door_path(path)
    host = host_refused(scope)
    if host is not None:
        if is_api or wants_json(path):
            host_refusal_log(host, path)
            await api_http.send_response(bad_host_response(host, path, openai=is_api), send)
        else:
            # Django's own 400 (its middleware checks the Host), static file paths included.
            await django_http(scope, receive, send)
        return
    handler = api_http if is_api else site_http
    await handler(scope, hang_up_gated(scope, receive), send)


class HostValidator:
    """Refuses a websocket whose Host is not in ALLOWED_HOSTS, before its Origin is checked."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        host = host_refused(scope)
        if host is not None:
            host_refusal_log(host, scope.get("path", ""))
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def allowed_websocket_origins() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]
    return hosts + list(settings.WEBSOCKET_ALLOWED_ORIGINS)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": HostValidator(
            OriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
                allowed_websocket_origins(),
            )
        ),
    }
)
