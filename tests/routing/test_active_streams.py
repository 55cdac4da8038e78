"""Every door's answers count in the telemetry's "Active streams" while they run: the OpenAI
stream and the native API, not only the chat page."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from routing.telemetry import telemetry_sample
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def active_streams() -> int:
    return int(telemetry_sample()["traffic"]["active_streams"])


def wait_active(expected: int, timeout_s: float = 5) -> int:
    deadline = time.monotonic() + timeout_s
    while (seen := active_streams()) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def test_openai_stream_counts_while_it_runs(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    # The role chunk and the first words, then the upstream stalls before the rest.
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["Hel", "lo!"])).but(stall_after_chunks=2, stall_s=2.0),
    )
    key = new_key()

    assert active_streams() == 0
    with (
        httpx.Client(timeout=20) as client,
        client.stream(
            "POST",
            f"{live_server_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ) as response,
    ):
        lines = response.iter_lines()
        assert response.status_code == 200
        assert next(lines).startswith("data: ")
        during = active_streams()
        body = "\n".join(lines)

    assert during == 1
    assert body.rstrip().endswith("data: [DONE]")
    assert wait_active(0) == 0
    wait_rows(1)


def test_native_api_answer_counts_while_it_runs(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi"])).but(delay_s=2.0))
    key = new_key()
    answers: list[httpx.Response] = []

    def execute() -> None:
        answers.append(
            httpx.post(
                f"{live_server_url}/api/execute",
                headers={"authorization": f"Bearer {key}"},
                json={"prompt": "hi"},
                timeout=20,
            )
        )

    caller = threading.Thread(target=execute)
    caller.start()
    during = wait_active(1)
    caller.join(timeout=20)

    assert during == 1
    assert answers[0].status_code == 200
    assert wait_active(0) == 0
    wait_rows(1)
