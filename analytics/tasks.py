from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from analytics.exports import export_job_run
from analytics.retention import responses_expire, retention_apply
from analytics.rollups import rollup_advance


@shared_task(name="analytics.tasks.rollup_advance", time_limit=1800, soft_time_limit=1700)
def rollup_advance_task() -> str | None:
    day = rollup_advance(now=timezone.now())
    return day.isoformat() if day else None


@shared_task(name="analytics.tasks.retention_apply", time_limit=1800, soft_time_limit=1700)
def retention_apply_task() -> int:
    return retention_apply(
        now=timezone.now(), keep_days=int(getattr(settings, "ORCHESTRATOR_RAW_RETENTION_DAYS", 0))
    )


@shared_task(name="analytics.tasks.responses_expire", time_limit=600, soft_time_limit=540)
def responses_expire_task() -> int:
    return responses_expire(
        now=timezone.now(),
        keep_days=int(getattr(settings, "ORCHESTRATOR_RESPONSES_RETENTION_DAYS", 30)),
    )


@shared_task(name="analytics.tasks.export_run", time_limit=3600, soft_time_limit=3500)
def export_run(job_id: int) -> int:
    return export_job_run(job_id=job_id).written_rows
