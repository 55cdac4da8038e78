"""Every websocket route of the site, gathered from the apps."""

from django.urls import path

from chat.consumers import ChatConsumer
from orchestrator_site.consumers import PingConsumer
from routing.consumers import TelemetryConsumer

websocket_urlpatterns = [
    path("ws/ping/", PingConsumer.as_asgi()),
    path("ws/chat/", ChatConsumer.as_asgi()),
    path("ws/telemetry/", TelemetryConsumer.as_asgi()),
]
