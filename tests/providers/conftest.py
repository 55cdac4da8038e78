from __future__ import annotations

import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from typing import IO

import pytest

from providers import local_model
from providers.adapters.http import http_client_close
from tests.providers.upstream_server import UpstreamServer


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture
def upstream(upstream_server: UpstreamServer) -> Iterator[UpstreamServer]:
    """The shared upstream, with no scripts and no recorded requests."""
    upstream_server.reset()
    yield upstream_server
    upstream_server.reset()


@pytest.fixture(autouse=True)
async def _close_http_client() -> AsyncIterator[None]:
    """Each test has its own event loop; close the adapters' client with it."""
    yield
    await http_client_close()


@pytest.fixture(scope="session")
def local_model_url() -> Iterator[str]:
    """The bundled SmolLM2 model behind llama.cpp's OpenAI-compatible server, for the session.

    Its `base_url` for the OpenAI-compatible adapter (ends in `/v1`)."""
    port = local_model.free_port()
    process = local_model.start_server(port=port)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        local_model.wait_ready(base_url, process)
        # The server logs every request to stderr; an unread pipe would fill and stall it.
        threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _drain(stream: IO[bytes] | None) -> None:
    if stream is not None:
        for _ in iter(lambda: stream.read(65536), b""):
            pass
