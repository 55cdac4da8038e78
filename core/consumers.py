"""The base every websocket consumer builds on: authentication and one error-frame shape."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

# Close codes in the 4000-4999 range are the application's own (RFC 6455 §7.4.2).
CLOSE_UNAUTHENTICATED = 4401
MAX_FRAME_BYTES = 64 * 1024


class AuthenticatedJsonConsumer(AsyncJsonWebsocketConsumer):
    """Accepts only logged-in users; anonymous sockets are closed with code 4401.

    The socket is accepted before it is closed so the browser sees the code (a refusal
    during the handshake reaches the page only as 1006).
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.send_json(
                {"type": "error", "code": "AUTHENTICATION_FAILED", "message": "log in first"}
            )
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.on_authenticated()

    async def on_authenticated(self) -> None:
        """Hook for subclasses: join groups, send a greeting."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None:
            await self.send_error("INVALID_REQUEST", "binary frames are not accepted")
            return
        if text_data is None or len(text_data.encode()) > MAX_FRAME_BYTES:
            await self.send_error(
                "INVALID_REQUEST", f"frames are limited to {MAX_FRAME_BYTES} bytes"
            )
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError:
            await self.send_error("INVALID_REQUEST", "frame is not valid JSON")
            return
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_error("INVALID_REQUEST", 'frame must be an object with a "type"')
            return
        await self.receive_json(content)

    async def send_error(self, code: str, message: str, **details: Any) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **details})
