"""Starting an export job: the job row, then a Celery worker or, without a broker, a thread of
this process runs it (`analytics.exports.export_job_run`). The tasks import the exports and
this module imports both, so neither imports the other back."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connections, transaction

from analytics.exports import export_job_failed, export_job_run
from analytics.filters import ReportFilter
from analytics.models import ExportJob
from analytics.tasks import export_run

logger = logging.getLogger(__name__)


def export_job_create(*, owner_id: int, f: ReportFilter, kind: str) -> ExportJob:
    """Create the job and start it once the row is committed (a worker must see it)."""
    job = ExportJob.objects.create(owner_id=owner_id, query=f.as_query(), kind=kind)
    transaction.on_commit(lambda: export_job_start(job_id=job.pk))
    return job


def export_job_start(*, job_id: int) -> None:
    """Hand the job to a Celery worker, or, without a broker (the zero-setup default), to a
    thread of this process, so the page that started it can follow its progress. A job that
    cannot be started is marked failed with the reason, never left pending."""
    if settings.ORCHESTRATOR_EXPORT_IN_THREAD:
        thread = threading.Thread(
            target=_export_in_thread, args=(job_id,), name=f"export-{job_id}", daemon=True
        )
        thread.start()
        return
    try:
        export_run.delay(job_id)
    except Exception as exc:
        # Eager tasks raise here what the run raised (it recorded that already); a broker
        # that cannot be reached raises before anything ran.
        logger.exception("export %s could not run", job_id)
        export_job_failed(job_id, exc)


def _export_in_thread(job_id: int) -> None:
    try:
        export_job_run(job_id=job_id)
    except Exception:
        pass  # recorded on the job and logged by export_job_run
    finally:
        # Connections belong to their thread; this one ends here.
        connections.close_all()
