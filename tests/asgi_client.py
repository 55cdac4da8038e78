"""A minimal ASGI HTTP caller that, unlike channels' HttpCommunicator, accepts body messages
without a "body" key (allowed by the ASGI spec and sent by Django's file responses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asgiref.testing import ApplicationCommunicator


@dataclass(frozen=True)
class AsgiResponse:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def asgi_request(
    application: Any,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    host: bytes = b"127.0.0.1",
    timeout_s: float = 20,
) -> AsgiResponse:
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", host), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(timeout_s)
    chunks = []
    while True:
        message = await communicator.receive_output(timeout_s)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await communicator.wait(timeout_s)
    response_headers = {name.lower(): value for name, value in start["headers"]}
    return AsgiResponse(start["status"], response_headers, b"".join(chunks))
