"""The raw CSV lists a plan by parts' calls under their plan (`parent_request_id`), while the
reports count the plan once: its row carries its calls' tokens and costs, their rows are not
added again."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from analytics import csvexport
from analytics.filters import report_filter_parse
from analytics.selectors import report_totals
from analytics.services import request_record, rollup_rebuild_range
from tests.analytics.conftest import DAY1, at, outcome
from tests.analytics.test_views_export import _csv

PLAN = uuid.UUID("00000000-0000-4000-8000-000000000001")
PART_1 = uuid.UUID("00000000-0000-4000-8000-000000000002")
PART_2 = uuid.UUID("00000000-0000-4000-8000-000000000003")
STEP = uuid.UUID("00000000-0000-4000-8000-000000000004")
ALONE = uuid.UUID("00000000-0000-4000-8000-000000000005")
QUERY = f"start={DAY1}&end={DAY1}&kind=raw"
CLOUD = {"model_name": "alpha-model", "provider_name": "alpha", "locality": "cloud"}


def _log() -> User:
    """A plan of two parts and a combining step (each $0.00145: 1,000 tokens in at $1.25/Mtok,
    20 out at $10/Mtok), its row their sum, and one ordinary request."""
    staff = User.objects.create_user("boss", is_staff=True)
    call = {
        **CLOUD,
        "user_id": staff.pk,
        "task_type": "general",
        "complexity": "simple",
        "input_tokens": 1000,
        "output_tokens": 20,
        "cost_usd": Decimal("0.00145"),
        "baseline_cost_usd": Decimal("0.0106"),
        "latency_ms": 300,
        "parent_id": PLAN,
    }
    for minute, request_id in ((1, PART_1), (2, PART_2), (3, STEP)):
        request_record(
            outcome=outcome(
                request_id=request_id, created_at=at(DAY1, 9).replace(minute=minute), **call
            )
        )
    request_record(
        outcome=outcome(
            **CLOUD,
            request_id=PLAN,
            created_at=at(DAY1, 9),
            user_id=staff.pk,
            task_type="long_context",
            complexity="complex",
            input_tokens=3000,
            output_tokens=60,
            cost_usd=Decimal("0.00435"),
            baseline_cost_usd=Decimal("0.0318"),
            latency_ms=900,
            attempts=3,
        )
    )
    request_record(
        outcome=outcome(
            **CLOUD,
            request_id=ALONE,
            created_at=at(DAY1, 10),
            user_id=staff.pk,
            task_type="general",
            complexity="simple",
            input_tokens=1000,
            output_tokens=20,
            cost_usd=Decimal("0.00145"),
            baseline_cost_usd=Decimal("0.0106"),
            latency_ms=200,
        )
    )
    return staff


def _row(request_id: uuid.UUID, minute: int, user_id: int, **cells: str) -> list[str]:
    row = {
        "request_id": str(request_id),
        "created_at": f"2026-03-10T09:{minute:02d}:00+00:00",
        "entry_point": "chat",
        "user_id": str(user_id),
        "api_key_id": "",
        "conversation_id": "",
        "task_type": "general",
        "complexity": "simple",
        "model_name": "alpha-model",
        "provider_name": "alpha",
        "locality": "cloud",
        "status": "success",
        "error_code": "",
        "input_tokens": "1000",
        "output_tokens": "20",
        "cached_tokens": "0",
        "cost_usd": "0.00145000",
        "cost_state": "reported",
        "baseline_cost_usd": "0.01060000",
        "latency_ms": "300",
        "time_to_first_token_ms": "",
        "attempts": "1",
        "fallbacks": "0",
        "cache_hit": "false",
        "is_demo": "false",
        "end_user": "",
        "project": "",
        "tags": "",
        "parent_request_id": str(PLAN),
    } | cells
    assert list(row) == list(csvexport.RAW_COLUMNS)
    return list(row.values())


def _expected(user_id: int) -> list[list[str]]:
    return [
        list(csvexport.RAW_COLUMNS),
        _row(
            PLAN,
            0,
            user_id,
            task_type="long_context",
            complexity="complex",
            input_tokens="3000",
            output_tokens="60",
            cost_usd="0.00435000",
            baseline_cost_usd="0.03180000",
            latency_ms="900",
            attempts="3",
            parent_request_id="",
        ),
        _row(PART_1, 1, user_id),
        _row(PART_2, 2, user_id),
        _row(STEP, 3, user_id),
        _row(
            ALONE,
            0,
            user_id,
            created_at="2026-03-10T10:00:00+00:00",
            latency_ms="200",
            parent_request_id="",
        ),
    ]


@pytest.mark.django_db(transaction=True)
async def test_the_raw_csv_lists_a_plans_calls_under_it() -> None:
    staff = await sync_to_async(_log)()
    client = AsyncClient()
    await client.aforce_login(staff)

    rows, _ = await _csv(client, QUERY)
    # The plan is selected by its own task type; its calls come with it, whatever theirs.
    planned, _ = await _csv(client, f"{QUERY}&task_type=long_context")
    ordinary, _ = await _csv(client, f"{QUERY}&task_type=general")

    expected = _expected(staff.pk)
    assert rows == expected
    assert planned == expected[:5]
    # A call is never listed without its plan: "general" selects the ordinary request only.
    assert ordinary == [expected[0], expected[5]]


@pytest.mark.django_db
def test_the_background_export_has_the_same_rows_and_the_reports_count_the_plan_once() -> None:
    staff = _log()
    f = report_filter_parse({"start": str(DAY1), "end": str(DAY1)}, today=DAY1)

    text = "".join(chunk for chunk, _ in csvexport.raw_chunks(f, csvexport.raw_snapshot(f)))
    raw = report_totals(f)
    rollup_rebuild_range(first=DAY1, last=DAY1)
    rolled = report_totals(f)

    assert list(csv.reader(io.StringIO(text))) == _expected(staff.pk)
    assert csvexport.raw_snapshot(f).rows == 5
    # The plan's row holds its calls' cost: two requests, $0.00435 + $0.00145, not $0.0087.
    for totals in (raw, rolled):
        assert (totals.requests, totals.input_tokens) == (2, 4000)
        assert totals.cost_usd == Decimal("0.00580000")
