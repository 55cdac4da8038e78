"""Settling and releasing budget holds, soft alerts, the expiry sweep and edited limits
(routing.budgets.close)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from analytics.outcome import RequestOutcome
from analytics.services import request_record
from routing.budgets.close import (
    budget_limit_apply,
    budget_release,
    budget_reservations_expire,
    budget_settle,
    budgets_close,
)
from routing.budgets.reserve import budget_reserve
from routing.budgets.values import BudgetClose, BudgetExceeded
from routing.models import Budget, BudgetAlert, BudgetPeriod, BudgetReservation
from tests.routing.budget_support import HOUR, NOW, make_budget, period_of


@pytest.mark.django_db
def test_reserve_then_settle_moves_the_hold_into_spend() -> None:
    budget = make_budget()

    reservation = budget_reserve(max_cost_usd=Decimal("0.30"), now=NOW)
    period = period_of(budget)
    assert (period.spent_usd, period.reserved_usd) == (Decimal(0), Decimal("0.30"))
    assert (period.starts_at, period.ends_at) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )

    budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.1234"), now=NOW)
    budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.1234"), now=NOW)
    budget_release(reservation=reservation, now=NOW)

    period.refresh_from_db()
    assert (period.spent_usd, period.reserved_usd) == (Decimal("0.1234"), Decimal(0))
    line = BudgetReservation.objects.get()
    assert (line.state, line.actual_usd) == ("settled", Decimal("0.1234"))


@pytest.mark.django_db
def test_an_unknown_actual_price_counts_the_whole_reservation_as_spent() -> None:
    make_budget(limit="1")
    reservation = budget_reserve(max_cost_usd=Decimal("0.40"), now=NOW)

    budget_settle(reservation=reservation, actual_cost_usd=None, now=NOW)

    period = BudgetPeriod.objects.get()
    assert (period.spent_usd, period.reserved_usd) == (Decimal("0.40"), Decimal(0))


@pytest.mark.django_db
def test_crossing_the_soft_share_records_one_alert_per_period() -> None:
    budget = make_budget(limit="1.00", soft_alert_share=Decimal("0.8"))

    for cost in ("0.79", "0.01", "0.05"):
        reservation = budget_reserve(max_cost_usd=Decimal("0.10"), now=NOW)
        budget_settle(reservation=reservation, actual_cost_usd=Decimal(cost), now=NOW)
        if cost == "0.79":
            assert not BudgetAlert.objects.exists()

    alert = BudgetAlert.objects.get()
    assert (alert.budget_id, alert.spent_usd, alert.limit_usd) == (
        budget.pk,
        Decimal("0.80"),
        Decimal("1.00"),
    )
    # The next month starts a fresh period, with room and without an alert.
    december = NOW + timedelta(days=20)
    reservation = budget_reserve(max_cost_usd=Decimal("0.90"), now=december)
    budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.90"), now=december)
    assert BudgetAlert.objects.count() == 2
    assert BudgetPeriod.objects.count() == 2


@pytest.mark.django_db
def test_stale_holds_of_dead_processes_are_released() -> None:
    make_budget(limit="1")
    old = budget_reserve(max_cost_usd=Decimal("0.25"), now=NOW)
    fresh = budget_reserve(max_cost_usd=Decimal("0.25"), now=NOW + timedelta(minutes=14))

    released = budget_reservations_expire(
        older_than=timedelta(minutes=10), now=NOW + timedelta(minutes=15)
    )

    assert released == 1
    assert BudgetPeriod.objects.get().reserved_usd == Decimal("0.25")
    # Settling the expired hold later changes nothing; the fresh one still settles.
    budget_settle(reservation=old, actual_cost_usd=Decimal("0.25"), now=NOW)
    budget_settle(reservation=fresh, actual_cost_usd=Decimal("0.20"), now=NOW)
    period = BudgetPeriod.objects.get()
    assert (period.spent_usd, period.reserved_usd) == (Decimal("0.20"), Decimal(0))


@pytest.mark.django_db
def test_a_stale_hold_whose_request_was_logged_is_settled_from_its_row() -> None:
    # Its settlement was lost (a Postgres crash in the flush window); the row was not.
    make_budget(limit="20")
    priced, unpriced, failed, running = (
        budget_reserve(max_cost_usd=Decimal(cost), now=NOW) for cost in ("1", "2", "3", "4")
    )
    # A request that fell back: its first model's hold was released, its second's settled;
    # both statements were lost. Only the last hold is settled from the row.
    fell_back = uuid.uuid4()
    first_model = budget_reserve(max_cost_usd=Decimal("5"), request_id=fell_back, now=NOW)
    second_model = budget_reserve(
        max_cost_usd=Decimal("1"), request_id=fell_back, now=NOW + timedelta(seconds=1)
    )
    for reservation, status, output, cost in (
        (priced, "success", 10, Decimal("0.4")),
        (unpriced, "partial", 3, None),
        (failed, "error", 0, None),
        (second_model, "success", 7, Decimal("0.3")),
    ):
        request_record(
            outcome=RequestOutcome(
                request_id=reservation.request_id,
                created_at=NOW,
                entry_point="openai",
                status=status,
                cost_state="reported" if cost is not None else "unknown_price",
                output_tokens=output,
                cost_usd=cost,
            )
        )

    assert budget_reservations_expire(older_than=timedelta(minutes=10), now=NOW + HOUR) == 6

    period = BudgetPeriod.objects.get()
    # 0.4 and 0.3 as logged, plus the whole 2 of a partial answer whose price is unknown.
    assert (period.spent_usd, period.reserved_usd) == (Decimal("2.7"), Decimal(0))
    states = {line.pk: (line.state, line.actual_usd) for line in BudgetReservation.objects.all()}
    closes = (priced, unpriced, failed, running, first_model, second_model)
    assert [states[r.holds[0].reservation_id] for r in closes] == [
        ("settled", Decimal("0.4")),
        ("settled", Decimal("2")),
        ("released", Decimal(0)),
        ("released", Decimal(0)),
        ("released", Decimal(0)),
        ("settled", Decimal("0.3")),
    ]


@pytest.mark.django_db
def test_editing_a_limit_applies_to_the_open_period() -> None:
    budget = make_budget(limit="0.10")
    budget_reserve(max_cost_usd=Decimal("0.10"), now=NOW)
    budget.limit_usd = Decimal("0.20")
    budget.save()

    assert budget_limit_apply(budget=budget, now=NOW) == 1
    budget_reserve(max_cost_usd=Decimal("0.10"), now=NOW)
    assert BudgetPeriod.objects.get().reserved_usd == Decimal("0.20")


@pytest.fixture
async def async_db_thread_closed() -> AsyncIterator[None]:
    """The ORM's async bridge keeps one thread with its own connection; give it back."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_db_thread_closed")
async def test_cancelled_and_failed_requests_leave_no_hold() -> None:
    budget = await Budget.objects.acreate(name="monthly", limit_usd=Decimal("1.00"))
    upstream_started = asyncio.Event()

    async def request(answer: Callable[[], Awaitable[Decimal]]) -> None:
        """As the gateway holds and closes: hold first; however the request ends, settle what
        it cost or give the hold back, shielded so a second cancellation cannot strand it."""
        reservation = await sync_to_async(budget_reserve)(max_cost_usd=Decimal("0.40"))
        close = BudgetClose.released(reservation)
        try:
            close = BudgetClose.settled(reservation, await answer())
        finally:
            await asyncio.shield(sync_to_async(budgets_close)([close]))

    async def cancelled_answer() -> Decimal:
        upstream_started.set()
        await asyncio.sleep(3600)
        raise AssertionError("cancelled before the upstream answered")

    async def failing_answer() -> Decimal:
        raise ConnectionResetError("upstream cut the stream")

    async def finished_answer() -> Decimal:
        return Decimal("0.11")

    task = asyncio.create_task(request(cancelled_answer))
    await upstream_started.wait()
    held = await BudgetPeriod.objects.aget(budget=budget)
    assert held.reserved_usd == Decimal("0.40")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ConnectionResetError):
        await request(failing_answer)
    await request(finished_answer)

    period = await BudgetPeriod.objects.aget(budget=budget)
    assert (period.spent_usd, period.reserved_usd) == (Decimal("0.11"), Decimal(0))
    states = sorted([r.state async for r in BudgetReservation.objects.all()])
    assert states == ["released", "released", "settled"]


@pytest.mark.django_db
def test_the_admin_shows_current_spend_and_holds_and_applies_edited_limits(admin_client) -> None:
    budget = make_budget(limit="5.00")
    budget_settle(
        reservation=budget_reserve(max_cost_usd=Decimal("1.25")), actual_cost_usd=Decimal("0.75")
    )
    budget_reserve(max_cost_usd=Decimal("2.00"))

    page = admin_client.get("/admin/routing/budget/").content.decode()
    assert "0.75000000" in page
    assert "2.00000000" in page

    response = admin_client.post(
        f"/admin/routing/budget/{budget.pk}/change/",
        {
            "name": "monthly",
            "scope": "global",
            "period": "month",
            "limit_usd": "2.50",
            "soft_alert_share": "0.8",
            "hard_stop": "on",
            "enabled": "on",
            "periods-TOTAL_FORMS": "1",
            "periods-INITIAL_FORMS": "1",
            "periods-MIN_NUM_FORMS": "0",
            "periods-MAX_NUM_FORMS": "0",
            "periods-0-id": str(period_of(budget).pk),
            "periods-0-budget": str(budget.pk),
        },
    )
    assert response.status_code == 302
    assert period_of(budget).limit_usd == Decimal("2.50")
    with pytest.raises(BudgetExceeded):
        budget_reserve(max_cost_usd=Decimal("0.00000001"))
