"""HTTP through Django (static files included), websockets authenticated and origin-checked.

Static files: Django's `ASGIStaticFilesHandler` serves them inside the ASGI app, streamed
asynchronously, with no extra dependency. WhiteNoise speaks WSGI only; see docs/deployment.md.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
django_http = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from orchestrator_site.websockets import websocket_urlpatterns  # noqa: E402


def allowed_websocket_origins() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]
    return hosts + list(settings.WEBSOCKET_ALLOWED_ORIGINS)


application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_http),
        "websocket": OriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
            allowed_websocket_origins(),
        ),
    }
)
