"""A webhook receiver on 127.0.0.1 for budget alert tests: it verifies each body's signature
the way docs/guards.md tells a receiver to, and answers the statuses it is given in turn."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def signature_valid(
    secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300
) -> bool:
    """The receiver's check, as documented: HMAC-SHA256 over `<timestamp>.<body>`, recent."""
    timestamp = headers.get("X-Orchestrator-Timestamp", "")
    signed = timestamp.encode() + b"." + body
    expected = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    given = headers.get("X-Orchestrator-Signature", "")
    return (
        timestamp.isdigit()
        and abs(time.time() - int(timestamp)) <= tolerance_s
        and hmac.compare_digest(expected, given)
    )


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    at: float  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


class AlertReceiver:
    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        self.received: list[Received] = []
        self._answers: deque[tuple[int, dict[str, str]]] = deque()
        self.delay_s = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name: value for name, value in self.headers.items()}
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            headers=headers,
                            body=body,
                            signature_ok=signature_valid(receiver.secret, headers, body),
                            at=time.monotonic(),
                        )
                    )
                    status, extra = receiver._answers.popleft() if receiver._answers else (200, {})
                time.sleep(receiver.delay_s)
                payload = b"" if status < 300 else f"status {status}".encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/budget"

    def answer(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next requests with these statuses, then 200."""
        for status in statuses:
            self._answers.append((status, headers or {}))

    def start(self) -> AlertReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
