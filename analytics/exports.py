"""Background CSV exports: a job row, a file under the export folder, progress as it goes."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import QueryDict
from django.utils import timezone

from analytics.csvexport import breakdown_csv, raw_chunks, raw_queryset
from analytics.filters import ReportFilter, report_filter_parse
from analytics.models import ExportJob
from analytics.scoping import scope_for

PROGRESS_EVERY_ROWS = 10_000


def export_dir() -> Path:
    return Path(getattr(settings, "ORCHESTRATOR_EXPORT_DIR", settings.VAR_DIR / "exports"))


def export_path(job: ExportJob) -> Path:
    return export_dir() / job.file_name


def export_job_create(*, owner_id: int, f: ReportFilter, kind: str) -> ExportJob:
    """Create the job and start it once the row is committed (a worker must see it)."""
    from analytics.tasks import export_run

    job = ExportJob.objects.create(owner_id=owner_id, query=f.as_query(), kind=kind)
    transaction.on_commit(lambda: export_run.delay(job.pk))
    return job


def _job_filter(job: ExportJob) -> ReportFilter:
    owner = get_user_model().objects.get(pk=job.owner_id)
    params = QueryDict(mutable=True)
    params.update(job.query)
    scope = scope_for(user_id=owner.pk, is_staff=owner.is_staff)
    return report_filter_parse(params, today=timezone.localdate(), scope=scope)


def export_job_run(*, job_id: int) -> ExportJob:
    """Write the CSV for one job; safe to run twice (the file is rewritten from the start)."""
    job = ExportJob.objects.get(pk=job_id)
    if job.state == ExportJob.State.DONE:
        return job
    f = _job_filter(job)
    file_name = f"export-{job.pk}-{job.kind}.csv"
    export_dir().mkdir(parents=True, exist_ok=True)
    total = raw_queryset(f).count() if job.kind == "raw" else 0
    ExportJob.objects.filter(pk=job.pk).update(
        state=ExportJob.State.RUNNING, total_rows=total, written_rows=0, file_name=file_name
    )
    path = export_dir() / file_name
    try:
        with path.open("w", encoding="utf-8", newline="") as out:
            if job.kind == "raw":
                written = since_update = 0
                for text, rows in raw_chunks(f):
                    out.write(text)
                    written += rows
                    since_update += rows
                    if since_update >= PROGRESS_EVERY_ROWS:
                        ExportJob.objects.filter(pk=job.pk).update(written_rows=written)
                        since_update = 0
            else:
                out.write(breakdown_csv(f, job.kind))
                written = total
    except Exception as exc:
        ExportJob.objects.filter(pk=job.pk).update(state=ExportJob.State.FAILED, error=str(exc))
        raise
    ExportJob.objects.filter(pk=job.pk).update(
        state=ExportJob.State.DONE, written_rows=written, finished_at=timezone.now()
    )
    job.refresh_from_db()
    return job
