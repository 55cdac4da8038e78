"""A Host not in ALLOWED_HOSTS is refused on every door: the `/v1` fast path, the native API,
the service endpoints, pages, static files and websockets."""

from __future__ import annotations

import json

import httpx
import pytest
from channels.testing import WebsocketCommunicator

from orchestrator_site.asgi import application
from orchestrator_site.hosts import host_allowed
from tests.asgi_client import asgi_request

pytestmark = pytest.mark.django_db(transaction=True)
EVIL = b"evil.example"
MESSAGE = "Host 'evil.example' is not served here (ALLOWED_HOSTS)."


async def test_the_v1_fast_path_refuses_a_foreign_host_in_openais_envelope() -> None:
    response = await asgi_request(application, "GET", "/v1/models", host=EVIL)

    assert response.status == 400
    assert json.loads(response.body) == {
        "error": {
            "message": MESSAGE,
            "type": "invalid_request_error",
            "param": None,
            "code": "INVALID_REQUEST",
        }
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/execute"),
        ("GET", "/metrics"),
        ("GET", "/metrics/prometheus"),
        ("GET", "/models"),
        ("GET", "/models/cloud:fast/status"),
        ("GET", "/health"),
    ],
)
async def test_the_json_doors_refuse_a_foreign_host_in_the_native_envelope(
    method: str, path: str
) -> None:
    response = await asgi_request(application, method, path, host=EVIL)

    assert response.status == 400
    assert json.loads(response.body) == {
        "error": {"code": "INVALID_REQUEST", "message": MESSAGE, "details": {}}
    }


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/", "/static/css/site.css"])
async def test_pages_and_static_files_answer_djangos_400_to_a_foreign_host(
    path: str, settings
) -> None:
    settings.DEBUG = False  # as in production: Django's plain 400 page

    response = await asgi_request(application, "GET", path, host=EVIL)

    assert response.status == 400
    assert b"<h1>Bad Request (400)</h1>" in response.body


async def test_an_allowed_host_with_a_port_is_served() -> None:
    api = await asgi_request(application, "GET", "/v1/models", host=b"localhost:8000")
    page = await asgi_request(application, "GET", "/accounts/login/", host=b"127.0.0.1:8000")

    assert api.status == 401  # past the host check, to the key check
    assert page.status == 200


async def test_a_websocket_with_a_foreign_host_is_refused_even_from_an_allowed_origin() -> None:
    socket = WebsocketCommunicator(
        application,
        "/ws/ping/",
        headers=[(b"host", EVIL), (b"origin", b"http://127.0.0.1:8000")],
    )

    connected, _ = await socket.connect()
    await socket.disconnect()

    assert connected is False


def test_host_rules_follow_allowed_hosts(settings) -> None:
    settings.ALLOWED_HOSTS = [".example.org", "gateway.internal"]
    settings.DEBUG = False

    assert host_allowed("api.example.org:443")
    assert host_allowed("gateway.internal")
    assert not host_allowed("example.org.evil.example")
    assert not host_allowed("")
    assert not host_allowed("gateway.internal@evil.example")


def test_the_web_process_refuses_a_foreign_host_on_every_door(live_server_url: str) -> None:
    headers = {"Host": "evil.example"}

    v1 = httpx.get(f"{live_server_url}/v1/models", headers=headers, timeout=30)
    api = httpx.post(f"{live_server_url}/api/execute", headers=headers, timeout=30)
    page = httpx.get(f"{live_server_url}/accounts/login/", headers=headers, timeout=30)
    own = httpx.get(f"{live_server_url}/accounts/login/", timeout=30)

    assert (v1.status_code, v1.json()["error"]["code"]) == (400, "INVALID_REQUEST")
    assert (api.status_code, api.json()["error"]["message"]) == (400, MESSAGE)
    assert page.status_code == 400
    assert "DisallowedHost" in page.text  # Django's page (the live server runs with DEBUG)
    assert own.status_code == 200
