"""The batch door's Celery task: one batch item run, retried with backoff, dead-lettered at the
last failure. Its registered name stays `routing.tasks.batch_item_run` (where it was first
defined), so messages already queued by an earlier version are still consumed."""

from __future__ import annotations

import random
from typing import Any

from celery import shared_task
from django.conf import settings


@shared_task(
    name="routing.tasks.batch_item_run",
    bind=True,
    max_retries=2,
    time_limit=600,
    soft_time_limit=540,
    acks_late=True,
)
def batch_item_run(self: Any, item_id: int) -> str:
    """Run one batch item; a retryable failure is retried with exponential backoff and jitter,
    the last failure is dead-lettered."""
    from gateway.batch import batch_item_execute

    if self.request.is_eager:
        # Inline (zero-setup): retrying through Celery would raise into the caller, so the
        # attempts run here, back to back.
        retries = 0
        while True:
            run = batch_item_execute(item_id=item_id, final_attempt=retries >= self.max_retries)
            if run.state != "retry":
                return run.state
            retries += 1
    run = batch_item_execute(
        item_id=item_id, final_attempt=self.request.retries >= self.max_retries
    )
    if run.state == "retry":
        base = float(settings.ORCHESTRATOR_BATCH_RETRY_BASE_S)
        countdown = base * 2 ** (self.request.retries + 1) + random.uniform(0, base)
        raise self.retry(countdown=countdown)
    return run.state


def broker_priority(priority: int) -> int:
    """The broker's priority for an API priority. The API's 9 is the highest (AMQP's sense);
    the Redis broker consumes its level 0 first, so the scale is turned over."""
    if not 0 <= priority <= 9:
        raise ValueError(f"priority must be 0-9, not {priority}")
    return 9 - priority


def batch_item_enqueue(item_id: int, priority: int) -> None:
    """Queue one batch item; items of a higher-priority batch are consumed first."""
    # ORCHESTRATOR_BATCH_QUEUE sends batch items to a queue of their own (default: Celery's).
    queue = getattr(settings, "ORCHESTRATOR_BATCH_QUEUE", None)
    options: dict[str, Any] = {"queue": queue} if queue else {}
    batch_item_run.apply_async(args=[item_id], priority=broker_priority(priority), **options)
