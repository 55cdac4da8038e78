from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from analytics.models import DailyRollup, RequestLog, RollupState
from analytics.tasks import retention_apply_task, rollup_advance_task
from tests.analytics.conftest import Log

pytestmark = pytest.mark.django_db


def test_beat_schedule_names_the_registered_tasks() -> None:
    names = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert {"analytics.tasks.rollup_advance", "analytics.tasks.retention_apply"} <= names
    assert rollup_advance_task.name == "analytics.tasks.rollup_advance"
    assert retention_apply_task.name == "analytics.tasks.retention_apply"


def test_rollup_then_retention_tasks(log: Log, settings: object) -> None:
    yesterday = timezone.localdate() - timedelta(days=1)

    assert rollup_advance_task.delay().get() == yesterday.isoformat()
    assert RollupState.objects.get(pk=1).rolled_through == yesterday
    assert sum(DailyRollup.objects.values_list("requests", flat=True)) == 7

    settings.ORCHESTRATOR_RAW_RETENTION_DAYS = 30  # type: ignore[attr-defined]
    # The hand-built log is from March 2026, long before "now" minus 30 days.
    assert retention_apply_task.delay().get() == 7
    assert RequestLog.objects.count() == 0
