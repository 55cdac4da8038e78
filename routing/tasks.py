from __future__ import annotations

import random
from typing import Any

from celery import shared_task
from django.conf import settings

from routing.budget_alerts import MAX_RETRIES as ALERT_MAX_RETRIES
from routing.sampling import agents_sample as agents_sample_service


@shared_task(name="routing.tasks.agents_sample", time_limit=60, soft_time_limit=45)
def agents_sample() -> int:
    """Sample every monitoring agent once; returns how many samples were stored."""
    return len(agents_sample_service())


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
    from routing.batch import batch_item_execute

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
        countdown = 2 ** (self.request.retries + 1) + random.uniform(0, 1)
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


@shared_task(name="routing.tasks.journal_sweep", time_limit=300, soft_time_limit=240)
def journal_sweep() -> int:
    """Write the log rows of requests whose process ended before it could (see routing.journal)."""
    from routing.journal import journal_sweep as sweep

    return sweep()


@shared_task(name="routing.tasks.budget_reservations_expire", time_limit=120, soft_time_limit=90)
def budget_reservations_expire() -> int:
    """Release budget holds older than ORCHESTRATOR_BUDGET_HOLD_MAX_S; returns how many."""
    from datetime import timedelta

    from routing import conf
    from routing.budgets import budget_reservations_expire as expire

    return expire(older_than=timedelta(seconds=conf.budget_hold_max_s()))


@shared_task(
    name="routing.tasks.budget_alert_deliver",
    bind=True,
    max_retries=ALERT_MAX_RETRIES,
    time_limit=60,
    soft_time_limit=45,
    acks_late=True,
)
def budget_alert_deliver(self: Any, delivery_id: int) -> str:
    """Send one budget alert delivery; a retryable failure (connection error, 429, 5xx) is
    retried with exponential backoff and jitter, the last one is recorded as failed."""
    from routing.budget_alerts import (
        budget_alert_deliver_inline,
        budget_alert_delivery_attempt,
        retry_delay_s,
    )

    if self.request.is_eager:
        # Inline: a Celery retry would raise into the caller, so the attempts run here.
        return budget_alert_deliver_inline(delivery_id=delivery_id)
    attempt = budget_alert_delivery_attempt(
        delivery_id=delivery_id, final_attempt=self.request.retries >= self.max_retries
    )
    if attempt.state == "retry":
        raise self.retry(countdown=retry_delay_s(self.request.retries, attempt.retry_after_s))
    return attempt.state
