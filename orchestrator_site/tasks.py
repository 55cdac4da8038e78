from __future__ import annotations

import os
import socket

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

WORKER_HEARTBEAT_KEY = "orchestrator:worker-heartbeat"


@shared_task(name="orchestrator_site.tasks.worker_heartbeat", time_limit=10, soft_time_limit=8)
def worker_heartbeat() -> dict[str, str]:
    """Record that a worker is alive; `/health` reports how long ago the last one ran."""
    beat = {
        "at": timezone.now().isoformat(),
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
    }
    cache.set(WORKER_HEARTBEAT_KEY, beat, timeout=3600)
    return beat
