from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from analytics.filters import ReportFilter
from analytics.models import DailyRollup, RequestLog, RollupState
from analytics.rollups import day_start, rollup_rebuild_range
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


def _seed(requests: int, days: int, seed: int) -> None:
    call_command(
        "seed_demo",
        requests=requests,
        days=days,
        seed=seed,
        no_rollup=True,
        stdout=StringIO(),
        stderr=StringIO(),
    )


def test_seed_demo_spreads_rows_evenly_in_time_order_with_every_outcome_and_exact_costs(
    log: Log,
) -> None:
    today = timezone.localdate()

    _seed(3000, 3, 11)
    demo = RequestLog.objects.filter(is_demo=True).order_by("id")
    rows = list(demo)
    first = [(r.request_id, r.created_at, r.cost_usd) for r in rows]
    call_command("seed_demo", wipe=True, stdout=StringIO())
    _seed(3000, 3, 11)
    again = [(r.request_id, r.created_at, r.cost_usd) for r in demo]

    per_day = [
        demo.filter(
            created_at__gte=day_start(today - timedelta(days=back)),
            created_at__lt=day_start(today - timedelta(days=back - 1)),
        ).count()
        for back in (2, 1, 0)
    ]
    assert per_day == [1000, 1000, 1000]
    created = [r.created_at for r in rows]
    assert created == sorted(created)
    # Time-ordered ids: version 7, the row's millisecond in the top 48 bits.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert all(r.request_id.version == 7 for r in rows)
    assert all(
        r.request_id.int >> 80 == (r.created_at - epoch) // timedelta(milliseconds=1) for r in rows
    )
    assert {r.status for r in rows} == {"success", "error", "rate_limited", "partial"}
    assert {r.entry_point for r in rows} == {"chat", "openai"}
    assert {r.api_key_id for r in rows} == {None, 9001, 9002, 9003}
    assert {r.cost_state for r in rows} == {"reported", "estimated", "none"}
    assert any(r.fallbacks == 1 and r.attempts == 2 for r in rows)
    assert any(r.cache_hit and r.cost_usd == 0 and r.latency_ms == 5 for r in rows)
    assert all(r.error_code == ("" if r.status == "success" else r.status) for r in rows)
    assert all(r.cost_usd is None and r.input_tokens == 0 for r in rows if r.cost_state == "none")
    prices = {
        "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
        "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
        "smol": (Decimal(0), Decimal(0)),
    }
    for r in rows:
        if r.cost_usd is not None and not r.cache_hit:
            price_in, price_out = prices[r.model_name]
            exact = (r.input_tokens * price_in + r.output_tokens * price_out) / 1_000_000
            assert r.cost_usd == exact.quantize(Decimal("0.00000001"), ROUND_HALF_UP)
        if r.status == "success":
            assert r.time_to_first_token_ms == r.latency_ms // 4
    # The same seed gives the same rows.
    assert again == first
