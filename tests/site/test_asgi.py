from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.core import signals
from django.test import Client

from core.consumers import CLOSE_UNAUTHENTICATED
from orchestrator_site.asgi import application
from tests.asgi_client import asgi_request

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
HOST = (b"host", b"127.0.0.1:8000")


async def test_http_health_answers_json_for_every_component() -> None:
    response = await asgi_request(application, "GET", "/health")

    assert response.status == 200
    body = json.loads(response.body)
    assert body["status"] in {"healthy", "degraded"}
    assert set(body["components"]) == {"database", "cache", "channel_layer", "broker", "providers"}
    assert body["components"]["providers"] == {"status": "healthy", "providers": {}}
    assert body["components"]["database"]["status"] == "healthy"
    assert body["components"]["database"]["vendor"] == "postgresql"
    assert body["components"]["cache"] == {
        "status": "healthy",
        "backend": "SharedPoolRedisCache",
        "latency_ms": body["components"]["cache"]["latency_ms"],
    }
    assert body["components"]["channel_layer"]["backend"] == "RedisChannelLayer"
    assert body["components"]["channel_layer"]["status"] == "healthy"


async def test_static_files_and_plotly_are_served_under_asgi() -> None:
    css = await asgi_request(application, "GET", "/static/css/site.css")
    plotly = await asgi_request(application, "GET", "/static/vendor/plotly/plotly.min.js")

    assert css.status == 200
    assert b".topbar" in css.body
    assert plotly.status == 200
    assert len(plotly.body) > 1_000_000
    assert b"plotly.js" in plotly.body[:2000]


async def test_pages_redirect_anonymous_users_to_login() -> None:
    response = await asgi_request(application, "GET", "/")

    assert response.status == 302
    assert response.headers[b"location"] == b"/accounts/login/?next=/"


async def _logged_in_cookie() -> bytes:
    def login() -> str:
        user = get_user_model().objects.create_user("ana", password="pw-ana-123")
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    session = await database_sync_to_async(login)()
    return f"sessionid={session}".encode()


async def test_websocket_for_logged_in_user_answers_ping() -> None:
    cookie = await _logged_in_cookie()
    socket = WebsocketCommunicator(
        application, "/ws/ping/", headers=[HOST, ORIGIN, (b"cookie", cookie)]
    )

    connected, _ = await socket.connect()
    await socket.send_json_to({"type": "ping", "echo": 7})

    assert connected
    assert await socket.receive_json_from() == {"type": "pong", "echo": 7}
    await socket.send_to(text_data="{not json")
    assert await socket.receive_json_from() == {
        "type": "error",
        "code": "INVALID_REQUEST",
        "message": "frame is not valid JSON",
    }
    await socket.send_json_to({"type": "ping", "echo": "still usable"})
    assert await socket.receive_json_from() == {"type": "pong", "echo": "still usable"}
    await socket.disconnect()


async def test_websocket_oversized_frame_gets_error_and_stays_open() -> None:
    cookie = await _logged_in_cookie()
    socket = WebsocketCommunicator(
        application, "/ws/ping/", headers=[HOST, ORIGIN, (b"cookie", cookie)]
    )
    await socket.connect()

    await socket.send_to(text_data=json.dumps({"type": "ping", "echo": "x" * 70_000}))

    reply = await socket.receive_json_from()
    assert reply["code"] == "INVALID_REQUEST"
    assert reply["message"] == "frames are limited to 65536 bytes"
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong", "echo": None}
    await socket.disconnect()


async def test_websocket_without_login_is_closed_with_4401() -> None:
    socket = WebsocketCommunicator(application, "/ws/ping/", headers=[HOST, ORIGIN])

    connected, _ = await socket.connect()

    assert connected
    assert await socket.receive_json_from() == {
        "type": "error",
        "code": "AUTHENTICATION_FAILED",
        "message": "log in first",
    }
    assert await socket.receive_output() == {
        "type": "websocket.close",
        "code": CLOSE_UNAUTHENTICATED,
    }
    await socket.disconnect()


async def test_websocket_from_foreign_origin_is_rejected() -> None:
    cookie = await _logged_in_cookie()
    socket = WebsocketCommunicator(
        application,
        "/ws/ping/",
        headers=[HOST, (b"origin", b"https://evil.example"), (b"cookie", cookie)],
    )

    connected, code = await socket.connect()
    await socket.disconnect()

    assert connected is False
    assert code == 1000


async def test_websocket_without_origin_is_rejected() -> None:
    socket = WebsocketCommunicator(application, "/ws/ping/", headers=[HOST])

    connected, _ = await socket.connect()
    await socket.disconnect()

    assert connected is False


async def test_the_v1_api_skips_the_middleware_stack_and_the_site_keeps_it() -> None:
    api = await asgi_request(application, "GET", "/v1/models")
    site = await asgi_request(application, "GET", "/health")

    assert api.status == 401
    assert json.loads(api.body)["error"]["code"] == "AUTHENTICATION_FAILED"
    assert b"x-frame-options" not in api.headers
    assert site.headers[b"x-frame-options"] == b"DENY"


async def test_v1_views_are_found_without_resolving_and_unknown_paths_get_openais_404(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gateway import openai as openai_api
    from gateway.fast_path import _api_views

    # The table holds the URLconf's plain /v1 routes (the OpenAI and Anthropic doors') and the
    # Ollama door's; the Gemini door's patterned /v1beta/ routes are resolved apart.
    assert set(_api_views()) == {
        "/v1/chat/completions",
        "/v1/models",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/api/chat",
        "/api/generate",
        "/api/show",
        "/api/tags",
        "/api/version",
    }
    assert _api_views()["/v1/models"] is openai_api.models_list

    with caplog.at_level("WARNING", logger="django.request"):
        missing = await asgi_request(application, "POST", "/v1/audio/speech")

    assert missing.status == 404
    assert json.loads(missing.body) == {
        "error": {
            "message": "Unknown endpoint /v1/audio/speech.",
            "type": "not_found_error",
            "param": None,
            "code": "INVALID_REQUEST",
        }
    }
    assert [r.getMessage() for r in caplog.records] == ["Not Found: /v1/audio/speech"]


async def test_a_v1_request_starts_no_thread_and_sends_no_request_signals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    sent: list[str] = []
    # The event loop's executor is held to one thread for this test. A /v1 answer of 401 logs
    # its line through the executor; the worker thread wakes the waiting request before it
    # marks itself idle, so with the default pool the next request's job may find no idle
    # worker yet and start a second pool thread (seen on a loaded machine). That thread is
    # the pool growing, not a thread per request; with one worker the pool cannot grow, and any
    # thread a request starts of its own (Django's per-request executor, a new pool) still
    # shows up below.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="v1-test")
    )
    # The first request starts that one executor thread.
    await asgi_request(application, "GET", "/v1/models")

    @contextlib.contextmanager
    def signals_recorded() -> Iterator[None]:
        def on_started(**_: object) -> None:
            sent.append("started")

        def on_finished(**_: object) -> None:
            sent.append("finished")

        signals.request_started.connect(on_started, dispatch_uid="test-v1-started")
        signals.request_finished.connect(on_finished, dispatch_uid="test-v1-finished")
        try:
            yield
        finally:
            signals.request_started.disconnect(dispatch_uid="test-v1-started")
            signals.request_finished.disconnect(dispatch_uid="test-v1-finished")

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    with signals_recorded():
        api = await asgi_request(application, "GET", "/v1/models")
    monkeypatch.undo()

    assert api.status == 401
    assert started == []
    # Nothing on the event loop's thread for Django's receivers to clean up (see the handler).
    assert sent == []

    # The site's pages still send both.
    with signals_recorded():
        page = await asgi_request(application, "GET", "/accounts/login/")
    assert page.status == 200
    assert sent == ["started", "finished"]


def _v1_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, object]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _response_of(communicator: ApplicationCommunicator) -> tuple[int, dict[str, Any]]:
    start = await communicator.receive_output(5)
    body = await communicator.receive_output(5)
    await communicator.wait(5)
    return start["status"], json.loads(body["body"])


async def test_a_v1_body_declared_too_large_is_refused_before_any_of_it_is_read(
    settings,
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    communicator = ApplicationCommunicator(application, _v1_scope([(b"content-length", b"1001")]))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": True})

    status, body = await _response_of(communicator)

    assert status == 413
    assert body["error"]["code"] == "INVALID_REQUEST"
    assert body["error"]["message"] == (
        "Request body of 1001 bytes is over the limit of 1000 bytes."
    )


async def test_a_v1_body_without_length_is_refused_once_its_bytes_pass_the_limit(
    settings,
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    communicator = ApplicationCommunicator(application, _v1_scope([]))
    for _ in range(3):
        await communicator.send_input(
            {"type": "http.request", "body": b"x" * 400, "more_body": True}
        )

    # 1,200 bytes have arrived and more are announced: the answer comes now, unread rest.
    status, body = await _response_of(communicator)

    assert status == 413
    assert body["error"]["message"] == "Request body is over the limit of 1000 bytes."


async def test_a_v1_body_just_at_the_limit_is_read_whole() -> None:
    communicator = ApplicationCommunicator(application, _v1_scope([]))
    await communicator.send_input({"type": "http.request", "body": b"{", "more_body": True})
    await communicator.send_input({"type": "http.request", "body": b"}", "more_body": False})

    status, body = await _response_of(communicator)

    # Read whole, then refused for want of an API key: the size limit let it through.
    assert status == 401
    assert body["error"]["code"] == "AUTHENTICATION_FAILED"
