from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from analytics.models import DailyRollup, RequestLog, RollupState, StoredResponse
from analytics.tasks import responses_expire_task, retention_apply_task, rollup_advance_task
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


def test_stored_responses_expire_after_their_retention(settings: object) -> None:
    now = timezone.now()
    for name, age_days in (("resp_old", 31), ("resp_edge", 29), ("resp_new", 0)):
        StoredResponse.objects.create(
            id=name,
            api_key_id=1,
            created_at=now - timedelta(days=age_days),
            model_ref="alpha:alpha-model",
            messages=[{"role": "user", "content": "hi"}],
            output_text="hello",
            response={},
        )

    assert "responses-expire" in settings.CELERY_BEAT_SCHEDULE  # type: ignore[attr-defined]
    assert responses_expire_task.delay().get() == 1
    assert sorted(StoredResponse.objects.values_list("id", flat=True)) == ["resp_edge", "resp_new"]
    settings.ORCHESTRATOR_RESPONSES_RETENTION_DAYS = 0  # type: ignore[attr-defined]
    assert responses_expire_task.delay().get() == 0
    assert StoredResponse.objects.count() == 2
