"""What holds and closes cost in statements, and how they commit (routing.budgets.store and
its statements in routing.budgets.sql)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction

from routing.budgets.close import (
    budget_release,
    budget_settle,
    budgets_close,
)
from routing.budgets.reserve import budget_reserve
from routing.budgets.values import BudgetClose, Reservation
from routing.models import Budget, BudgetAlert, BudgetReservation
from tests.routing.budget_support import NOW, make_budget, period_of


@pytest.mark.django_db
def test_the_hot_path_costs_a_few_statements(django_assert_num_queries) -> None:
    make_budget(limit="1")
    budget_release(reservation=budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW), now=NOW)

    # One budget, warm: the budgets covering the request and their periods are remembered, so
    # admission is the hold alone, one statement; settling is one more.
    with django_assert_num_queries(1):
        reservation = budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW)
    with django_assert_num_queries(1):
        budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.01"), now=NOW)
    # Several budgets: still one statement to hold on all of them, and one to settle.
    make_budget("key-1", limit="1", scope=Budget.Scope.API_KEY, api_key_id=1)
    budget_release(
        reservation=budget_reserve(max_cost_usd=Decimal("0.1"), api_key_id=1, now=NOW), now=NOW
    )
    with django_assert_num_queries(1):
        reservation = budget_reserve(max_cost_usd=Decimal("0.1"), api_key_id=1, now=NOW)
    assert len(reservation.holds) == 2
    with django_assert_num_queries(1):
        budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.01"), now=NOW)
    empty = Reservation(request_id=uuid.uuid4(), amount_usd=Decimal(0), holds=())
    with django_assert_num_queries(0):
        budget_settle(reservation=empty, actual_cost_usd=Decimal(0))


@pytest.mark.django_db
def test_a_group_of_closes_settles_and_releases_each_in_one_statement(
    django_assert_num_queries,
) -> None:
    shared = make_budget("shared", limit="8", soft_alert_share=Decimal("0.5"))
    key = make_budget("key-3", limit="10", scope=Budget.Scope.API_KEY, api_key_id=3)
    spent = budget_reserve(max_cost_usd=Decimal("3"), api_key_id=3, now=NOW)
    unpriced = budget_reserve(max_cost_usd=Decimal("2.5"), now=NOW)
    failed = budget_reserve(max_cost_usd=Decimal("1"), api_key_id=3, now=NOW)
    closes = [
        BudgetClose.settled(spent, Decimal("2.123456789")),
        BudgetClose.settled(unpriced, None),
        BudgetClose.released(failed),
        BudgetClose.released(Reservation(uuid.uuid4(), Decimal(0), ())),
    ]

    # One statement for the whole group (claims, period locks, spending); the soft alert the
    # group crosses is recorded once after it (its check, read and insert), though two of the
    # closes that crossed it spent something.
    with django_assert_num_queries(4):
        budgets_close(closes, now=NOW)
    budgets_close(closes, now=NOW)  # closing again changes nothing

    shared_period, key_period = period_of(shared), period_of(key)
    assert (shared_period.spent_usd, shared_period.reserved_usd) == (Decimal("4.62345679"), 0)
    assert (key_period.spent_usd, key_period.reserved_usd) == (Decimal("2.12345679"), 0)
    states = sorted(BudgetReservation.objects.values_list("period_id", "state", "actual_usd"))
    assert states == sorted(
        [
            (shared_period.pk, "settled", Decimal("2.12345679")),
            (key_period.pk, "settled", Decimal("2.12345679")),
            (shared_period.pk, "settled", Decimal("2.5")),
            (shared_period.pk, "released", Decimal(0)),
            (key_period.pk, "released", Decimal(0)),
        ]
    )
    assert list(BudgetAlert.objects.values_list("budget_id", "spent_usd")) == [
        (shared.pk, Decimal("4.62345679"))
    ]


@pytest.mark.django_db(transaction=True)
def test_holds_and_settlements_relax_only_their_own_commit() -> None:
    make_budget(limit="10")

    def commit_mode() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return str(cursor.fetchone()[0])

    # Alone, each is its own transaction: the setting ends with it.
    held = budget_reserve(max_cost_usd=Decimal("1"), now=NOW)
    assert commit_mode() == "on"
    budgets_close([BudgetClose.settled(held, Decimal("0.5"))], now=NOW)
    assert commit_mode() == "on"
    # Inside a caller's transaction they leave it alone, or the caller's other writes would
    # lose their synchronous commit too (the setting would last until the caller commits).
    with transaction.atomic():
        held = budget_reserve(max_cost_usd=Decimal("1"), now=NOW)
        assert commit_mode() == "on"
        budgets_close([BudgetClose.released(held)], now=NOW)
        assert commit_mode() == "on"
    # A group's one statement likewise.
    pair = [budget_reserve(max_cost_usd=Decimal("1"), now=NOW) for _ in range(2)]
    budgets_close([BudgetClose.settled(pair[0], Decimal("0.25")), BudgetClose.released(pair[1])])
    assert commit_mode() == "on"
    with transaction.atomic():
        pair = [budget_reserve(max_cost_usd=Decimal("1"), now=NOW) for _ in range(2)]
        budgets_close([BudgetClose.settled(held, Decimal("0.25")) for held in pair], now=NOW)
        assert commit_mode() == "on"
    period = period_of(Budget.objects.get())
    assert (period.spent_usd, period.reserved_usd) == (Decimal("1.25"), Decimal(0))
