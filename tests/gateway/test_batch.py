"""Batches through a real Celery worker on the Redis broker, progress through the API, and a
dead-lettered item sent back from the admin."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from decimal import Decimal

import httpx
import pytest
from django.core.cache import cache

from analytics.models import RequestLog
from gateway.batch import batch_create
from orchestrator_site.celery import app
from providers.models import LLMModel, Provider
from routing.models import ApiKey, BatchItem, DeadLetter
from routing.pipeline.events import Caller
from routing.pipeline.journal import journal_pending
from tests.conftest import ROOT, subprocess_env
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import new_key, settle_config
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def two_upstreams(upstream: UpstreamServer) -> None:
    cache.clear()
    for name in ("good", "bad"):
        provider = Provider.objects.create(
            name=name,
            kind="openai_compatible",
            base_url=f"{upstream.url}/{name}/v1",
            locality="cloud",
        )
        LLMModel.objects.create(
            provider=provider,
            name="m",
            input_price_per_mtok_usd=Decimal("1"),
            output_price_per_mtok_usd=Decimal("2"),
        )
    upstream.reply("POST", "/good/v1/chat/completions", Reply.sse(openai_sse(["done"])))
    upstream.reply(
        "POST", "/bad/v1/chat/completions", Reply.json({"error": {"message": "x"}}, status=500)
    )
    settle_config()


@pytest.mark.long
def test_batch_of_50_through_a_real_worker(
    live_server_url: str, upstream: UpstreamServer, admin_client
) -> None:
    two_upstreams(upstream)
    key = new_key()
    api_key = ApiKey.objects.get()
    caller = Caller(api_key_id=api_key.pk)
    tasks = [{"prompt": f"item {i}", "model_id": "good:m"} for i in range(49)]
    tasks.append({"prompt": "the failing one", "model_id": "bad:m"})
    queue = f"batch-{uuid.uuid4().hex}"
    # The worker runs the real settings: test_settings makes tasks eager, and a retry sent from
    # inside a worker must go back through the broker.
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "orchestrator_site",
            "worker",
            "--pool",
            "solo",
            "-Q",
            queue,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        # Its retries wait 0.1 s, then 0.2 s (plus jitter), rather than the deployed 2 s and 4 s.
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="orchestrator_site.settings",
            ORCHESTRATOR_BATCH_RETRY_BASE_S="0.05",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        batch = batch_create(
            caller=caller,
            tasks=tasks,
            priority=7,
            enqueue=lambda item_id, priority: app.send_task(
                "routing.tasks.batch_item_run", args=[item_id], queue=queue, priority=priority
            ),
        )
        url = f"{live_server_url}/api/batch/{batch.id}"
        headers = {"Authorization": f"Bearer {key}"}
        seen_progress = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            progress = httpx.get(url, headers=headers).json()
            seen_progress.add(progress["progress_pct"])
            if progress["state"] == "done":
                break
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    assert (progress["state"], progress["succeeded"], progress["failed"]) == ("done", 49, 1)
    assert (progress["total"], progress["succeeded"], progress["failed"]) == (50, 49, 1)
    assert len(seen_progress) > 2  # progress was visible between 0 and 100
    items = progress["items"]
    assert all(i["result"]["response"] == "done" for i in items[:49])
    assert items[49]["state"] == "dead"
    assert items[49]["attempts"] == 3
    assert items[49]["error"]["code"] == "MODEL_UNAVAILABLE"
    assert RequestLog.objects.filter(entry_point="batch").count() == 49 + 3
    # Every item's journal entry was closed before the item was counted, the last one too
    # (its event loop ends with the item; a close left pending there waited for the sweep).
    assert journal_pending() == 0
    other = httpx.get(url, headers={"Authorization": f"Bearer {new_key()}"})
    assert other.status_code == 404

    # The upstream recovers; the admin sends the dead letter back (eager here: runs inline).
    upstream.reply("POST", "/bad/v1/chat/completions", Reply.sse(openai_sse(["late"])))
    cache.clear()  # its circuit breaker has cooled down by the time an operator retries
    dead = DeadLetter.objects.get()
    response = admin_client.post(
        "/admin/routing/deadletter/", {"action": "retry", "_selected_action": [dead.pk]}
    )

    assert response.status_code == 302
    item = BatchItem.objects.get(pk=dead.item_id)
    assert (item.state, item.error_code, item.error_message) == ("succeeded", "", "")
    assert item.result is not None and item.result["response"] == "late"
    dead.refresh_from_db()
    assert dead.retry_count == 1 and dead.retried_at is not None
    final = httpx.get(url, headers={"Authorization": f"Bearer {key}"}).json()
    assert (final["succeeded"], final["failed"], final["state"]) == (50, 0, "done")


def test_native_batch_endpoint_runs_eagerly_in_zero_setup(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    two_upstreams(upstream)
    key = new_key()
    headers = {"Authorization": f"Bearer {key}"}

    created = httpx.post(
        f"{live_server_url}/api/batch",
        json={"tasks": [{"prompt": "a", "model_id": "good:m"}, {"prompt": "b"}], "priority": 9},
        headers=headers,
        timeout=60,
    )
    progress = httpx.get(
        f"{live_server_url}/api/batch/{created.json()['batch_id']}", headers=headers
    ).json()

    assert created.status_code == 202
    assert created.json()["total"] == 2
    assert progress["state"] == "done"
    assert [i["state"] for i in progress["items"]] == ["succeeded", "succeeded"]
