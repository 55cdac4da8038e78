from __future__ import annotations

from typing import Any

from celery import shared_task

from routing.budget_alerts import MAX_RETRIES as ALERT_MAX_RETRIES
from routing.sampling import agents_sample as agents_sample_service


@shared_task(name="routing.tasks.agents_sample", time_limit=60, soft_time_limit=45)
def agents_sample() -> int:
    """Sample every monitoring agent once; returns how many samples were stored."""
    return len(agents_sample_service())


@shared_task(name="routing.tasks.journal_sweep", time_limit=300, soft_time_limit=240)
def journal_sweep() -> int:
    """Write the log rows of requests whose process ended before it could (see
    routing.pipeline.journal)."""
    from routing.pipeline.journal import journal_sweep as sweep

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
