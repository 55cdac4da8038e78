"""The telemetry websocket: the last 15 minutes on connect (rebuilt from the logs where no
sample was kept), then one sample a second."""

from __future__ import annotations

from typing import Any

from core.consumers import AuthenticatedJsonConsumer
from routing.telemetry import GROUP, history_for_page, publisher


class TelemetryConsumer(AuthenticatedJsonConsumer):
    async def on_authenticated(self) -> None:
        # Read (and rebuilt) before joining, so the first sample follows the history at once.
        points = await history_for_page()
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.subscribed = True
        publisher.subscribe()
        await self.send_json({"type": "telemetry.history", "points": points})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "subscribed", False):
            self.subscribed = False
            publisher.unsubscribe()
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        # The stream is one-way; "ping" lets a page tell a live server from a restarted one.
        if content["type"] == "ping":
            await self.send_json({"type": "pong", "echo": content.get("echo")})
        else:
            await self.send_error("INVALID_REQUEST", f"unknown message type {content['type']!r}")

    async def telemetry_sample(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "telemetry.sample", **event["sample"]})
