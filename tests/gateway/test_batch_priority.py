"""Batch priority as the API documents it (9 highest, 0 lowest), consumed in that order by a
real Celery worker over the Redis broker."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from gateway.apikeys import apikey_create
from gateway.batch import batch_create
from gateway.tasks import batch_item_enqueue, broker_priority
from orchestrator_site.celery import app
from routing.pipeline.events import Caller
from tests.conftest import ROOT, subprocess_env
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry
from tests.routing.streams import openai_sse


def test_the_api_scale_is_turned_over_for_the_redis_broker() -> None:
    assert [broker_priority(p) for p in (9, 5, 0)] == [0, 4, 9]
    for wrong in (-1, 10):
        with pytest.raises(ValueError):
            broker_priority(wrong)


@pytest.fixture
def queued_not_run(settings) -> Iterator[str]:
    """Tasks go to the broker (not run inline) on a queue of this test's own."""
    queue = f"test-batch-{uuid.uuid4().hex}"
    settings.ORCHESTRATOR_BATCH_QUEUE = queue
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield queue
    app.conf.task_always_eager = eager


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_worker_takes_higher_priority_batches_first(
    upstream: UpstreamServer, queued_not_run: str
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["done"])))
    key = apikey_create(name="batch")
    caller = Caller(api_key_id=key.api_key.id)
    # Submitted in an order that neither first-in-first-out (5, 0, 9) nor an inverted scale
    # (0, 5, 9) would consume as the documented one does (9, 5, 0).
    for priority in (5, 0, 9):
        tasks = [{"prompt": f"priority {priority} item {i}"} for i in range(2)]
        batch_create(caller=caller, tasks=tasks, priority=priority, enqueue=batch_item_enqueue)

    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "orchestrator_site", "worker"),
            *("--pool", "solo", "--prefetch-multiplier", "1", "-Q", queued_not_run),
            *("--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning"),
        ],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(upstream.requests) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(timeout=20)

    prompts = [r.json()["messages"][-1]["content"] for r in upstream.requests]
    assert [p.split(" item")[0] for p in prompts] == [
        "priority 9",
        "priority 9",
        "priority 5",
        "priority 5",
        "priority 0",
        "priority 0",
    ]
