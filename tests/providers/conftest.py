from __future__ import annotations

import subprocess
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import IO

import pytest

from providers import local_model
from providers.adapters.http_client import upstream_pool_close
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
    await upstream_pool_close()


@pytest.fixture(scope="session")
def local_model_url() -> Iterator[str]:
    """The bundled SmolLM2 model behind llama.cpp's OpenAI-compatible server, for the session.

    Its `base_url` for the OpenAI-compatible adapter (ends in `/v1`)."""
    port = local_model.free_port()
    process = local_model.start_server(port=port)
    # The server writes ~200 KB of model-loading log to its stderr pipe before it answers;
    # unread, the pipe fills and the server blocks, so it is drained from the start.
    stderr_tail: deque[bytes] = deque(maxlen=40)
    threading.Thread(target=_drain, args=(process.stderr, stderr_tail), daemon=True).start()
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        try:
            local_model.wait_ready(base_url, process)
        except local_model.LocalModelUnavailable as exc:
            tail = b"".join(stderr_tail).decode(errors="replace")
            raise local_model.LocalModelUnavailable(f"{exc}\n{tail}") from None
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _drain(stream: IO[bytes] | None, tail: deque[bytes]) -> None:
    if stream is not None:
        for line in iter(stream.readline, b""):
            tail.append(line)
