from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from analytics.filters import ReportFilter
from analytics.models import DailyRollup, RequestLog, RollupState
from analytics.rollups import rollup_rebuild_range
from analytics.selectors import report_totals
from tests.analytics.conftest import Log

pytestmark = pytest.mark.django_db


def test_seed_demo_copies_labelled_rows_builds_rollups_and_wipes(log: Log) -> None:
    today = timezone.localdate()
    RollupState.objects.create(pk=1, rolled_through=today - timedelta(days=1))
    out = StringIO()

    call_command("seed_demo", requests=600, days=5, stdout=out, stderr=StringIO())
    demo = RequestLog.objects.filter(is_demo=True)
    window = ReportFilter(start=today - timedelta(days=4), end=today)
    from_rollups = report_totals(window)
    RollupState.objects.filter(pk=1).update(rolled_through=None)
    live = report_totals(window)

    assert "inserted 600 demo requests over 5 days" in out.getvalue()
    assert demo.count() == 600
    assert demo.filter(created_at__lt=timezone.now() - timedelta(days=5)).count() == 0
    assert set(demo.values_list("model_name", flat=True)) == {"gpt-4o", "gpt-4o-mini", "smol"}
    assert demo.filter(cost_state="unknown_price").count() == 0
    assert demo.filter(status="success", cost_usd__isnull=True).count() == 0
    # Rows written into already-rolled days were rolled too: rollups agree with raw rows.
    assert from_rollups == live
    assert from_rollups.requests == 600

    call_command("seed_demo", wipe=True, stdout=out)

    assert RequestLog.objects.filter(is_demo=True).count() == 0
    assert RequestLog.objects.count() == 7
    assert DailyRollup.objects.filter(is_demo=True).count() == 0
    assert not User.objects.filter(username__startswith="demo-").exists()


def test_rollup_rebuild_of_an_empty_range_writes_nothing(log: Log) -> None:
    today = timezone.localdate()

    assert rollup_rebuild_range(first=today - timedelta(days=3), last=today) == 0
