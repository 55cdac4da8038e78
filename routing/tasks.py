from __future__ import annotations

from celery import shared_task

from routing.sampling import agents_sample as agents_sample_service


@shared_task(name="routing.tasks.agents_sample", time_limit=60, soft_time_limit=45)
def agents_sample() -> int:
    """Sample every monitoring agent once; returns how many samples were stored."""
    return len(agents_sample_service())
