"""Demo data is labelled on the reports, can be hidden from them, deleted by staff, and never
lies in the future."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from analytics.demo import demo_insert, demo_rows
from analytics.filters import FilterError, ReportFilter, report_filter_parse
from analytics.models import DailyModelRollup, DailyRollup, MonthlyModelRollup, RequestLog
from analytics.rollups import day_start, local_day, rollup_rebuild_range
from analytics.selectors import report_demo_requests, report_totals
from tests.analytics.conftest import DAY1, DAY2, Log

pytestmark = pytest.mark.django_db

RANGE = f"?start={DAY1}&end={DAY2}"
BOTH_DAYS = ReportFilter(start=DAY1, end=DAY2)


def _demo_copies(hours: tuple[int, ...] = (10, 11)) -> None:
    """Demo twins of the day-one rows at these hours (gpt-4o-mini $0.0009 and the free smol)."""
    for row in RequestLog.objects.filter(created_at__hour__in=hours, created_at__date=DAY1):
        row.pk = None
        row.request_id = uuid.uuid4()
        row.is_demo = True
        row.save()


def _rolled(through=DAY2) -> None:
    from analytics.models import RollupState

    rollup_rebuild_range(first=DAY1, last=through)
    RollupState.objects.update_or_create(pk=1, defaults={"rolled_through": through})


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _rollup_rows() -> list[tuple[object, ...]]:
    return sorted(
        DailyRollup.objects.values_list("day", "model_name", "user_id", "status", "requests"),
        key=repr,
    ) + sorted(
        MonthlyModelRollup.objects.values_list("month", "model_name", "status", "requests"),
        key=repr,
    )


def test_seeded_demo_rows_end_at_or_before_now(log: Log) -> None:
    now = day_start(local_day(timezone.now())) + timedelta(hours=1, minutes=30)

    written = demo_insert(
        demo_rows(count=900, days=3, today=local_day(now), seed=3, now=now),
        progress=lambda _: None,
    )

    demo = RequestLog.objects.filter(is_demo=True)
    assert written == demo.count() == 900
    assert demo.filter(created_at__gt=now).count() == 0
    # The last day still holds its share, squeezed into the hour and a half before `now`.
    assert demo.filter(created_at__gte=day_start(local_day(now))).count() == 300


def test_seed_demo_writes_nothing_in_the_future(log: Log) -> None:
    call_command("seed_demo", requests=500, days=2, stdout=StringIO(), stderr=StringIO())

    assert RequestLog.objects.filter(is_demo=True, created_at__gt=timezone.now()).count() == 0
    assert RequestLog.objects.filter(is_demo=True).count() == 500


def test_the_demo_filter_parses_and_round_trips() -> None:
    f = report_filter_parse({"preset": "7d", "demo": "hide"}, today=DAY2)

    assert f.demo == "hide"
    assert f.as_query() == {"preset": "7d", "demo": "hide"}
    with pytest.raises(FilterError, match="demo must be"):
        report_filter_parse({"demo": "maybe"}, today=DAY2)


@pytest.mark.parametrize("rolled", [False, True], ids=["raw", "rollups"])
def test_hiding_demo_data_leaves_it_out_of_the_totals(log: Log, rolled: bool) -> None:
    _demo_copies()
    if rolled:
        _rolled()

    shown = report_totals(BOTH_DAYS)
    hidden = report_totals(ReportFilter(start=DAY1, end=DAY2, demo="hide"))

    assert (shown.requests, shown.cost_usd) == (9, Decimal("0.0102"))
    assert (hidden.requests, hidden.cost_usd, hidden.input_tokens) == (7, Decimal("0.0093"), 8500)
    assert report_demo_requests(BOTH_DAYS) == 2
    assert report_demo_requests(ReportFilter(start=DAY1, end=DAY2, demo="hide")) == 2


def test_the_banner_shows_only_when_the_range_holds_demo_rows(log: Log) -> None:
    client = _client(log.staff)
    without = client.get("/" + RANGE).content.decode()
    _demo_copies()

    dashboard = client.get("/" + RANGE).content.decode()
    reports = client.get(reverse("analytics:reports") + RANGE).content.decode()
    day_two_only = client.get(f"/?start={DAY2}&end={DAY2}").content.decode()

    assert "data-demo-banner" not in without
    assert "data-demo-banner" not in day_two_only
    for html in (dashboard, reports):
        assert "Demo data" in html
        assert "This range includes 2 synthetic demo requests" in html
        assert f'href="?start={DAY1}&amp;end={DAY2}&amp;demo=hide"' in html
        assert 'id="demo-delete"' in html


def test_hide_keeps_the_banner_with_a_way_back_and_narrows_the_api(log: Log) -> None:
    _demo_copies()
    client = _client(log.staff)

    page = client.get("/" + RANGE + "&demo=hide").content.decode()
    summary = client.get(reverse("analytics:api_summary") + RANGE + "&demo=hide").json()

    assert "2 synthetic demo requests in this range are hidden" in page
    assert f'href="?start={DAY1}&amp;end={DAY2}" id="demo-show"' in page
    assert '<input type="hidden" name="demo" value="hide">' in page
    assert summary["filter"]["demo"] == "hide"
    assert summary["totals"]["requests"] == 7


def test_only_staff_see_and_may_use_delete(log: Log) -> None:
    _demo_copies()
    RequestLog.objects.filter(is_demo=True).update(user_id=log.ana.pk)
    ana = _client(log.ana)

    page = ana.get("/" + RANGE).content.decode()
    refused = ana.post(reverse("analytics:demo_delete"))
    by_get = _client(log.staff).get(reverse("analytics:demo_delete"))

    assert "This range includes 2 synthetic demo requests" in page
    assert 'id="demo-delete"' not in page
    assert refused.status_code == 403
    assert by_get.status_code == 405
    assert RequestLog.objects.filter(is_demo=True).count() == 2


def test_delete_needs_a_csrf_token(log: Log) -> None:
    _demo_copies()
    client = Client(enforce_csrf_checks=True)
    client.force_login(log.staff)

    response = client.post(reverse("analytics:demo_delete"))

    assert response.status_code == 403
    assert RequestLog.objects.filter(is_demo=True).count() == 2


def test_delete_removes_exactly_the_demo_rows_and_rollups_stay_exact(log: Log) -> None:
    _demo_copies()
    _rolled()
    real_ids = set(RequestLog.objects.filter(is_demo=False).values_list("pk", flat=True))
    client = _client(log.staff)

    response = client.post(reverse("analytics:demo_delete"), {"next": reverse("analytics:reports")})

    assert response.status_code == 302
    assert response["Location"] == reverse("analytics:reports")
    assert set(RequestLog.objects.values_list("pk", flat=True)) == real_ids
    for table in (DailyRollup, DailyModelRollup, MonthlyModelRollup):
        assert not table.objects.filter(is_demo=True).exists()
    totals = report_totals(BOTH_DAYS)
    assert (totals.requests, totals.cost_usd, totals.input_tokens) == (7, Decimal("0.0093"), 8500)
    left = _rollup_rows()
    _rolled()
    assert _rollup_rows() == left
    page = client.get(reverse("analytics:reports") + RANGE).content.decode()
    assert "Deleted 2 demo requests" in page
    assert "data-demo-banner" not in page


def test_delete_goes_back_only_to_this_site(log: Log) -> None:
    response = _client(log.staff).post(
        reverse("analytics:demo_delete"), {"next": "https://elsewhere.example/"}
    )

    assert response["Location"] == reverse("dashboard")
