"""The beat sweep that releases budget holds whose process never settled them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from orchestrator_site.celery import app
from routing.budgets.reserve import budget_reserve
from routing.models import Budget, BudgetPeriod, BudgetReservation
from routing.tasks import budget_reservations_expire


def test_the_sweep_is_scheduled_in_beat() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["routing-budget-holds-expire"]

    assert entry == {"task": "routing.tasks.budget_reservations_expire", "schedule": 300.0}
    assert entry["task"] in app.tasks
    assert settings.ORCHESTRATOR_BUDGET_HOLD_MAX_S == 900


@pytest.mark.django_db
def test_holds_older_than_the_setting_are_released_once(settings) -> None:
    budget = Budget.objects.create(name="team", limit_usd=Decimal("10.00"))
    now = timezone.now()
    # Reserved "now" so every hold lands in the same period, then aged by hand.
    ages_min = {"0.40": 20, "0.30": 10, "0.20": 1}
    for amount, age in ages_min.items():
        held = budget_reserve(max_cost_usd=Decimal(amount), now=now)
        BudgetReservation.objects.filter(pk=held.holds[0].reservation_id).update(
            created_at=now - timedelta(minutes=age)
        )
    period = BudgetPeriod.objects.get(budget=budget)
    assert period.reserved_usd == Decimal("0.90")

    assert budget_reservations_expire.delay().get() == 1  # only the 20-minute hold (> 15 min)

    period.refresh_from_db()
    assert (period.reserved_usd, period.spent_usd) == (Decimal("0.50"), Decimal(0))
    assert sorted(BudgetReservation.objects.values_list("amount_usd", "state", "actual_usd")) == [
        (Decimal("0.20"), "held", None),
        (Decimal("0.30"), "held", None),
        (Decimal("0.40"), "released", Decimal(0)),
    ]

    settings.ORCHESTRATOR_BUDGET_HOLD_MAX_S = 300
    assert budget_reservations_expire.delay().get() == 1  # the 10-minute hold now
    assert budget_reservations_expire.delay().get() == 0  # nothing released twice

    period.refresh_from_db()
    assert period.reserved_usd == Decimal("0.20")
