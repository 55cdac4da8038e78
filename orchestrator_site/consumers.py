"""The site's own websocket consumer."""

from __future__ import annotations

from typing import Any

from core.consumers import AuthenticatedJsonConsumer


class PingConsumer(AuthenticatedJsonConsumer):
    """`ping` → `pong`: lets pages tell a live server from a restarted one."""

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        if content["type"] == "ping":
            await self.send_json({"type": "pong", "echo": content.get("echo")})
        else:
            await self.send_error("INVALID_REQUEST", f"unknown message type {content['type']!r}")
