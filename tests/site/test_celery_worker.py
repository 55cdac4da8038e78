from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from django.core.cache import cache

from orchestrator_site.celery import app
from orchestrator_site.tasks import WORKER_HEARTBEAT_KEY, worker_heartbeat
from tests.conftest import ROOT, subprocess_env


@pytest.mark.slow
def test_task_runs_in_a_real_worker_process_over_the_redis_broker() -> None:
    queue = f"test-{uuid.uuid4().hex}"
    cache.delete(WORKER_HEARTBEAT_KEY)
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
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        result = app.send_task("orchestrator_site.tasks.worker_heartbeat", queue=queue)
        beat = result.get(timeout=60)
    finally:
        worker.terminate()
        worker.wait(timeout=20)

    assert app.conf.broker_url.startswith("redis://")
    assert int(beat["pid"]) == worker.pid
    assert cache.get(WORKER_HEARTBEAT_KEY) == beat


def test_tasks_run_eagerly_in_the_test_process() -> None:
    import os

    beat = worker_heartbeat.delay().get(timeout=5)

    assert int(beat["pid"]) == os.getpid()
