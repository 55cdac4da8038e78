"""SIGTERM to the web process: answers in flight finish within the shutdown bound or end
cleanly cut short, every request is logged exactly once before the process exits, and it exits
0 within the bound."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import httpx
import pytest

from analytics.models import RequestLog
from core.shutdown import SHUTDOWN_MESSAGE
from routing.pipeline.journal import journal_pending
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import (
    chat_path,
    every_task_to,
    new_key,
    settle_config,
    upstream_models,
)
from tests.routing.streams import openai_sse
from tests.site.web_process import web_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def dripping_upstream(upstream: UpstreamServer, pieces: int, every_s: float) -> None:
    """`alpha` streams `pieces` tokens, one every `every_s`."""
    models = upstream_models(upstream)
    every_task_to("shutdown-policy", models["alpha"], models["beta"])
    stream = openai_sse([f"p{i}" for i in range(pieces)])
    upstream.reply("POST", chat_path("alpha"), Reply.sse(stream, chunk_delay_s=every_s))
    settle_config()


def stream_through_sigterm(
    url: str, server: subprocess.Popen[bytes], key: str
) -> tuple[str, list[str], float]:
    """Open a stream, send SIGTERM once its first token arrived, read it to its end; its
    request id, its `data:` payloads, and when SIGTERM was sent (monotonic)."""
    body = {
        "model": "alpha:alpha-model",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    payloads: list[str] = []
    signalled_at = 0.0
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-orchestrator-request-id"]
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            payloads.append(line.removeprefix("data: "))
            if not signalled_at and '"content":"p0"' in line:
                server.send_signal(signal.SIGTERM)
                signalled_at = time.monotonic()
    return request_id, payloads, signalled_at


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stream_longer_than_the_bound_ends_cleanly_cut_short_and_is_logged_once(
    upstream: UpstreamServer, workers: str
) -> None:
    dripping_upstream(upstream, pieces=40, every_s=0.25)  # 10 s of answer
    key = new_key()
    options = ("--shutdown-timeout-s", "1", "--workers", workers)
    with web_process(*options, log_name="shutdown-cut") as (url, server):
        request_id, payloads, signalled_at = stream_through_sigterm(url, server, key)
        exit_code = server.wait(timeout=15)
        stopped_after_s = time.monotonic() - signalled_at

    # The client's body ended cleanly (no read error) with an error frame, not [DONE].
    last = json.loads(payloads[-1])
    assert last["error"]["code"] == "server_shutting_down"
    assert "[DONE]" not in payloads
    # Answers ran for the 1 s bound; cancelling and writing took a fraction of the rest.
    assert exit_code == 0
    assert 1.0 <= stopped_after_s < 5.0
    # Logged before the process ended (nothing waits here), once, as cancelled.
    rows = list(RequestLog.objects.filter(request_id=request_id))
    assert [(row.status, row.error_code) for row in rows] == [("cancelled", "CANCELLED")]
    # Charged for the tokens it received before it was cut short.
    assert rows[0].output_tokens > 0
    assert journal_pending() == 0


def test_a_stream_that_ends_within_the_bound_is_answered_in_full(
    upstream: UpstreamServer,
) -> None:
    dripping_upstream(upstream, pieces=6, every_s=0.2)  # about 1.2 s of answer
    key = new_key()
    with web_process("--shutdown-timeout-s", "10", log_name="shutdown-full") as (url, server):
        request_id, payloads, signalled_at = stream_through_sigterm(url, server, key)
        exit_code = server.wait(timeout=15)
        stopped_after_s = time.monotonic() - signalled_at

    assert payloads[-1] == "[DONE]"
    text = "".join(
        choice["delta"].get("content") or ""
        for payload in payloads[:-1]
        for choice in json.loads(payload)["choices"]
    )
    assert text == "p0p1p2p3p4p5"
    # It exits as soon as the answer is done, not at the bound.
    assert exit_code == 0
    assert stopped_after_s < 4.0
    rows = list(RequestLog.objects.filter(request_id=request_id))
    assert [(row.status, row.output_tokens) for row in rows] == [("success", 3)]
    assert journal_pending() == 0


def test_a_responses_stream_cut_short_ends_with_response_failed(upstream: UpstreamServer) -> None:
    dripping_upstream(upstream, pieces=40, every_s=0.25)  # 10 s of answer
    key = new_key()
    events: list[dict[str, object]] = []
    with web_process("--shutdown-timeout-s", "1", log_name="shutdown-responses") as (url, server):
        with httpx.stream(
            "POST",
            f"{url}/v1/responses",
            json={"model": "alpha:alpha-model", "stream": True, "input": "x"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as response:
            assert response.status_code == 200
            request_id = response.headers["x-orchestrator-request-id"]
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(json.loads(line.removeprefix("data: ")))
                if events[-1].get("delta") == "p0":
                    server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=15)

    # The body ended cleanly with response.failed, numbered on from the events before it.
    last = events[-1]
    assert last["type"] == "response.failed"
    assert last["sequence_number"] == len(events) - 1
    failed = last["response"]
    assert isinstance(failed, dict)
    assert (failed["status"], failed["error"]) == (
        "failed",
        {"code": "server_shutting_down", "message": SHUTDOWN_MESSAGE},
    )
    assert "response.completed" not in [e["type"] for e in events]
    assert exit_code == 0
    rows = list(RequestLog.objects.filter(request_id=request_id))
    assert [(row.status, row.error_code) for row in rows] == [("cancelled", "CANCELLED")]
    assert journal_pending() == 0
