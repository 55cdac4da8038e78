"""Budget amounts are exact on Postgres and SQLite alike, and a failed settlement gives its hold
back."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import DataError, models

from routing.budgets.amounts import USD_PLACES, usd_quantize
from routing.budgets.close import budget_settle
from routing.budgets.periods import budgets_forget
from routing.budgets.reserve import budget_reserve
from routing.models import Budget, BudgetAlert, BudgetPeriod, BudgetReservation
from tests.routing.budget_property import NOW, budget_property_check
from tests.sqlite_site import sqlite_site_run, sqlite_template

__all__ = ["sqlite_template"]


def test_every_budget_amount_column_stores_the_places_amounts_are_rounded_to() -> None:
    places = {
        (model.__name__, field.name): field.decimal_places
        for model in (Budget, BudgetPeriod, BudgetReservation, BudgetAlert)
        for field in model._meta.get_fields()
        if isinstance(field, models.DecimalField) and field.name.endswith("_usd")
    }

    assert set(places.values()) == {USD_PLACES} == {8}
    assert usd_quantize(Decimal("0.000000015")) == Decimal("0.00000002")
    assert usd_quantize(Decimal("0.000000025")) == Decimal("0.00000002")


@pytest.mark.django_db
def test_budget_arithmetic_property_on_postgres() -> None:
    user = User.objects.create_user("ana")

    budget_property_check(user_id=user.pk)


def test_budget_arithmetic_property_on_sqlite(sqlite_template: Path, tmp_path: Path) -> None:
    result = sqlite_site_run(sqlite_template, tmp_path, "tests.routing.sqlite_budget_run")

    assert result == {"holds": True}


@pytest.mark.django_db(transaction=True)
def test_a_settlement_that_fails_releases_its_hold_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budgets_forget()
    Budget.objects.create(name="team", scope="global", period="month", limit_usd=Decimal("1"))
    reservation = budget_reserve(max_cost_usd=Decimal("0.6"), now=NOW)

    # A cost the column cannot hold (numeric(18, 8) stops below 10^10): the statement fails.
    with caplog.at_level(logging.ERROR, logger="routing.budgets.close"), pytest.raises(DataError):
        budget_settle(reservation=reservation, actual_cost_usd=Decimal("1e11"), now=NOW)

    period = BudgetPeriod.objects.get()
    assert (period.spent_usd, period.reserved_usd) == (Decimal(0), Decimal(0))
    assert list(BudgetReservation.objects.values_list("state", "actual_usd")) == [
        ("released", Decimal(0))
    ]
    assert [r.getMessage() for r in caplog.records] == [
        f"budget settlement of request {reservation.request_id} (100000000000.00000000 USD)"
        " failed; releasing its hold"
    ]
    # No phantom hold: the whole limit is free again.
    assert budget_reserve(max_cost_usd=Decimal("1"), now=NOW).holds
