"""Budget periods: calendar bounds, and which budgets and periods cover a request, as
remembered by admission (routing.budgets.periods)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from providers.models import LLMModel, Provider
from routing.budgets.close import (
    budget_release,
    budget_settle,
)
from routing.budgets.periods import period_bounds
from routing.budgets.reserve import budget_reserve
from routing.budgets.values import BudgetExceeded
from routing.models import Budget, BudgetPeriod, BudgetReservation
from tests.routing.budget_support import NOW, make_budget, period_of


def test_periods_are_calendar_aligned_in_the_configured_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 23:30 UTC on Sunday 30 November is already Monday 1 December in Berlin.
    at = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)

    assert period_bounds("day", at, berlin) == (
        datetime(2026, 12, 1, tzinfo=berlin),
        datetime(2026, 12, 2, tzinfo=berlin),
    )
    assert period_bounds("week", at, berlin) == (
        datetime(2026, 11, 30, tzinfo=berlin),
        datetime(2026, 12, 7, tzinfo=berlin),
    )
    assert period_bounds("month", at, berlin) == (
        datetime(2026, 12, 1, tzinfo=berlin),
        datetime(2027, 1, 1, tzinfo=berlin),
    )


def test_a_day_across_a_dst_change_keeps_local_midnights() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = period_bounds("day", datetime(2026, 10, 25, 12, tzinfo=UTC), berlin)

    assert start.astimezone(UTC) == datetime(2026, 10, 24, 22, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 10, 25, 23, tzinfo=UTC)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=25)


@pytest.mark.django_db
def test_scopes_select_the_budgets_that_cover_a_request() -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="http://127.0.0.1:1", locality="cloud"
    )
    model = LLMModel.objects.create(provider=provider, name="m")
    make_budget("key-7", scope=Budget.Scope.API_KEY, api_key_id=7)
    make_budget("model-m", scope=Budget.Scope.MODEL, model=model)
    make_budget("off", enabled=False)

    both = budget_reserve(max_cost_usd=Decimal("0.01"), api_key_id=7, model_id=model.pk, now=NOW)
    key_only = budget_reserve(max_cost_usd=Decimal("0.01"), api_key_id=7, now=NOW)
    nobody = budget_reserve(max_cost_usd=Decimal("0.01"), api_key_id=8, now=NOW)

    assert sorted(h.budget_name for h in both.holds) == ["key-7", "model-m"]
    assert [h.budget_name for h in key_only.holds] == ["key-7"]
    assert nobody.holds == ()


@pytest.mark.django_db
def test_a_budget_added_while_admission_is_warm_covers_the_next_request() -> None:
    first = make_budget("first", limit="1")
    budget_release(reservation=budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW), now=NOW)

    second = make_budget("second", limit="1")
    reservation = budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW)

    assert sorted(h.budget_name for h in reservation.holds) == ["first", "second"]
    assert [period_of(b).reserved_usd for b in (first, second)] == [Decimal("0.1")] * 2


@pytest.mark.django_db
def test_a_disabled_budget_stops_covering_requests_at_once() -> None:
    budget = make_budget(limit="1")
    budget_release(reservation=budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW), now=NOW)

    budget.enabled = False
    budget.save()

    assert budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW).holds == ()


@pytest.mark.django_db
def test_a_remembered_period_that_vanished_is_looked_up_again_not_refused() -> None:
    budget = make_budget(limit="1")
    budget_settle(
        reservation=budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW),
        actual_cost_usd=Decimal("0.05"),
        now=NOW,
    )
    vanished = period_of(budget).pk
    # Behind admission's back: no model signal tells this process.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM routing_budgetreservation")
        cursor.execute("DELETE FROM routing_budgetperiod WHERE id = %s", [vanished])

    reservation = budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW)

    period = period_of(budget)
    assert period.pk != vanished
    assert [h.period_id for h in reservation.holds] == [period.pk]
    assert (period.spent_usd, period.reserved_usd) == (Decimal(0), Decimal("0.1"))


@pytest.mark.django_db
def test_a_refusal_on_remembered_facts_is_confirmed_on_fresh_ones() -> None:
    budget = make_budget(limit="1")
    budget_release(reservation=budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW), now=NOW)
    # Another process lowered the open period's limit (limits are never remembered).
    BudgetPeriod.objects.filter(budget=budget).update(limit_usd=Decimal("0.05"))

    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW)

    assert refused.value.budget_name == "monthly"
    assert period_of(budget).reserved_usd == Decimal(0)
    assert BudgetReservation.objects.count() == 1  # the first, released
