"""What a plan by parts that does not finish costs, through the live server's native API: its
row is the sum of its calls' rows (those answered, and those cancelled with the start of their
answer), and the budget is settled with exactly that, never the plan's whole hold."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from analytics.models import RequestLog
from routing.models import Budget, BudgetPeriod, BudgetReservation
from tests.gateway.test_api_errors import execute, native_error
from tests.gateway.test_api_long_context import (  # noqa: F401
    DOCUMENT,
    PROMPT,
    CountingUpstream,
    counting,
    counting_server,
    small_windows,
)
from tests.providers.upstream_server import Reply
from tests.routing.gateway_support import chat_path, new_key
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def settled(rows_expected: int, timeout_s: float = 30) -> list[RequestLog]:
    """The rows once `rows_expected` exist and no budget hold is left."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        held = BudgetReservation.objects.filter(state="held").count()
        if RequestLog.objects.count() >= rows_expected and held == 0:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # a late row, were one coming, would land by now
    return list(RequestLog.objects.all())


def test_a_plan_that_fails_settles_what_its_parts_cost(
    live_server_url: str,
    counting: CountingUpstream,  # noqa: F811
) -> None:
    small_windows(counting)
    budget = Budget.objects.create(name="plans", limit_usd=Decimal("1"))
    answered = Reply.sse(openai_sse(["ok"], usage=(1000, 20)))
    # Sends the start of its answer, then nothing more: cancelled when the plan fails.
    stalled = Reply.sse(openai_sse(["partial answer"], usage=None)).but(
        stall_after_chunks=2, stall_s=30
    )
    refused = Reply.json({"error": {"message": "content policy"}}, status=400).but(delay_s=0.5)
    counting.reply("POST", chat_path("alpha"), answered, answered, stalled, refused)
    response = execute(
        live_server_url, new_key(), {"prompt": PROMPT, "context": DOCUMENT, "max_tokens": 100}
    )

    assert response.status_code == 502
    error = native_error(response)
    assert error["code"] == "MODEL_ERROR"
    calls = len(counting.requests)
    rows = settled(calls + 1)
    (whole,) = [row for row in rows if row.parent_id is None]
    parts = [row for row in rows if row.parent_id is not None]
    assert len(parts) == calls
    assert str(whole.request_id) == error["trace_id"]
    by_status: dict[str, list[RequestLog]] = {}
    for row in parts:
        by_status.setdefault(row.status, []).append(row)
    assert [row.cost_usd for row in by_status["success"]] == [Decimal("0.00145")] * 2
    # The stalled part had received the start of its answer when the failure cancelled it; a
    # part still waiting for its answer had received nothing.
    (charged,) = [row for row in by_status["cancelled"] if row.cost_state != "none"]
    assert charged.cost_state == "estimated"
    assert charged.cost_usd is not None and charged.cost_usd > 0
    assert {row.cost_usd for row in by_status["cancelled"] if row is not charged} <= {None}
    assert {row.cost_usd for row in by_status["error"]} == {None}
    assert len(by_status["error"]) >= 1
    total = Decimal("0.0029") + charged.cost_usd
    assert whole.cost_usd == total
    assert whole.cost_state == "estimated"
    period = BudgetPeriod.objects.get(budget=budget)
    assert (period.spent_usd, period.reserved_usd) == (total, Decimal(0))
