"""Crash recovery end to end: the web process is killed (SIGKILL) with requests in flight and
one journal entry poisoned; the recovery sweep writes a row for every request cut by the crash,
quarantines the poisoned entry with its reason, and leaves nothing pending."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as redis_py
from django.conf import settings

from analytics.models import RequestLog
from providers.local_model import free_port
from routing.pipeline import journal
from tests.conftest import ROOT, subprocess_env, wait_http
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

IN_FLIGHT = 6


@pytest.fixture
def clean_journal() -> Iterator[redis_py.Redis]:
    assert settings.REDIS_URL
    client = redis_py.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    for key in (journal.INDEX_KEY, journal.QUARANTINE_KEY):
        client.delete(key)
    yield client
    for key in (journal.INDEX_KEY, journal.QUARANTINE_KEY):
        client.delete(key)
    client.close()


def test_kill_9_with_requests_in_flight_and_a_poisoned_entry_loses_no_other_row(
    upstream: UpstreamServer, clean_journal: redis_py.Redis
) -> None:
    gateway_registry(upstream)
    # The upstream never answers in time: every request is in flight when the process dies.
    hanging = Reply.sse(openai_sse(["late"])).but(delay_s=30)
    upstream.reply("POST", chat_path("alpha"), hanging)
    upstream.reply("POST", chat_path("beta"), hanging)
    key = new_key()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_site.serve", "--port", str(port)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"{url}/health", process)

        def send(index: int) -> None:
            body: dict[str, Any] = {
                "model": "auto",
                "messages": [{"role": "user", "content": f"cut {index}"}],
            }
            if index % 2:
                body["stream"] = True
            with contextlib.suppress(httpx.HTTPError):  # the process is killed under it
                httpx.post(
                    f"{url}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=15,
                )

        clients = [threading.Thread(target=send, args=(i,)) for i in range(IN_FLIGHT)]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 20
        while len(upstream.requests) < IN_FLIGHT and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(upstream.requests) == IN_FLIGHT
        in_flight = {str(rid) for rid in clean_journal.zrange(journal.INDEX_KEY, 0, -1)}
        assert len(in_flight) == IN_FLIGHT

        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        for client in clients:
            client.join(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    # One of the cut requests' entries cannot be written (a NUL byte no row can hold).
    poisoned = sorted(in_flight)[0]
    clean_journal.hset(journal.ENTRY_PREFIX + poisoned, "session_id", "bad\x00id")
    assert RequestLog.objects.count() == 0

    written = journal.journal_sweep(now=time.time() + journal.grace_s() + 1)

    assert written == IN_FLIGHT - 1
    rows = RequestLog.objects.filter(request_id__in=in_flight)
    assert {str(r.request_id) for r in rows} == in_flight - {poisoned}
    # The process ended before any outcome: each row says the request failed, costing nothing.
    assert {(r.status, r.error_code, r.entry_point, r.cost_usd) for r in rows} == {
        ("error", "SERVICE_UNAVAILABLE", "openai", None)
    }
    quarantined = journal.journal_quarantined()
    assert list(quarantined) == [poisoned]
    assert "NUL" in quarantined[poisoned]["reason"]
    assert journal.journal_pending() == 0
    assert journal.journal_sweep(now=time.time() + journal.grace_s() + 1) == 0
