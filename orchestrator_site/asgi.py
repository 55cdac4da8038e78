"""HTTP through Django (static files included), websockets authenticated and origin-checked.

Static files: Django's `ASGIStaticFilesHandler` serves them inside the ASGI app, streamed
asynchronously, with no extra dependency. WhiteNoise speaks WSGI only; see docs/deployment.md.
"""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
django_http = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

from orchestrator_site.websockets import websocket_urlpatterns  # noqa: E402

API_PREFIX = "/v1/"


class MiddlewareFreeASGIHandler(ASGIHandler):
    """Django without the middleware stack, for the OpenAI-compatible `/v1` API.

    Its views are async, authenticated by API key and CSRF-exempt: sessions, auth, messages
    and CSRF have nothing to do there. Django's middleware are sync-first, and under ASGI each
    one's request and response hooks run in the single thread-sensitive executor, so every `/v1`
    request queued behind every other on one thread. Request signals (connection clean-up)
    still fire as usual.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        # What BaseHandler.load_middleware builds for an empty MIDDLEWARE setting.
        handler: Any = self
        handler._view_middleware = []
        handler._template_response_middleware = []
        handler._exception_middleware = []
        get_response = handler._get_response_async if is_async else handler._get_response
        handler._middleware_chain = convert_exception_to_response(get_response)


api_http = MiddlewareFreeASGIHandler()
site_http = ASGIStaticFilesHandler(django_http)


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    handler = api_http if scope["path"].startswith(API_PREFIX) else site_http
    await handler(scope, receive, send)


def allowed_websocket_origins() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]
    return hosts + list(settings.WEBSOCKET_ALLOWED_ORIGINS)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": OriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
            allowed_websocket_origins(),
        ),
    }
)
