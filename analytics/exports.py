"""Background CSV exports: a job row, a file under the export folder, progress as it goes."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import QueryDict
from django.utils import timezone

from analytics.csvexport import breakdown_csv, raw_chunks, raw_snapshot
from analytics.filters import ReportFilter, report_filter_parse
from analytics.models import ExportJob
from analytics.scoping import scope_for

logger = logging.getLogger(__name__)

PROGRESS_EVERY_ROWS = 10_000
ERROR_MAX_CHARS = 1000


def export_dir() -> Path:
    return Path(getattr(settings, "ORCHESTRATOR_EXPORT_DIR", settings.VAR_DIR / "exports"))


def export_path(job: ExportJob) -> Path:
    return export_dir() / job.file_name


def export_job_failed(job_id: int, exc: BaseException) -> None:
    """Record why the job failed, unless an earlier error is already recorded."""
    ExportJob.objects.filter(pk=job_id).exclude(state=ExportJob.State.FAILED).update(
        state=ExportJob.State.FAILED,
        error=(str(exc) or type(exc).__name__)[:ERROR_MAX_CHARS],
        finished_at=timezone.now(),
    )


def _job_filter(job: ExportJob) -> ReportFilter:
    owner = get_user_model().objects.get(pk=job.owner_id)
    params = QueryDict(mutable=True)
    params.update(job.query)
    scope = scope_for(user_id=owner.pk, is_staff=owner.is_staff)
    return report_filter_parse(params, today=timezone.localdate(), scope=scope)


def export_job_run(*, job_id: int) -> ExportJob:
    """Write the CSV for one job; safe to run twice (the file is rewritten from the start).

    Any failure is recorded on the job (state `failed` and the message the page shows) and
    raised again."""
    job = ExportJob.objects.get(pk=job_id)
    if job.state == ExportJob.State.DONE:
        return job
    try:
        _export_write(job)
    except Exception as exc:
        logger.exception("export %s failed", job.pk)
        export_job_failed(job.pk, exc)
        raise
    job.refresh_from_db()
    return job


def _export_write(job: ExportJob) -> None:
    f = _job_filter(job)
    file_name = f"export-{job.pk}-{job.kind}.csv"
    export_dir().mkdir(parents=True, exist_ok=True)
    snapshot = raw_snapshot(f) if job.kind == "raw" else None
    total = snapshot.rows if snapshot is not None else 0
    ExportJob.objects.filter(pk=job.pk).update(
        state=ExportJob.State.RUNNING, total_rows=total, written_rows=0, file_name=file_name
    )
    path = export_dir() / file_name
    with path.open("w", encoding="utf-8", newline="") as out:
        if snapshot is not None:
            written = since_update = 0
            for text, rows in raw_chunks(f, snapshot):
                out.write(text)
                written += rows
                since_update += rows
                if since_update >= PROGRESS_EVERY_ROWS:
                    # A statement of its own, between two reads: nothing is held open across it.
                    ExportJob.objects.filter(pk=job.pk).update(written_rows=written)
                    since_update = 0
        else:
            out.write(breakdown_csv(f, job.kind))
            written = total
    ExportJob.objects.filter(pk=job.pk).update(
        state=ExportJob.State.DONE, written_rows=written, finished_at=timezone.now()
    )
