"""What the budget tests share: a fixed moment, a budget, its one period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from routing.models import Budget, BudgetPeriod

NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def make_budget(name: str = "monthly", limit: str = "1.00", **fields: object) -> Budget:
    return Budget.objects.create(name=name, limit_usd=Decimal(limit), **fields)


def period_of(budget: Budget) -> BudgetPeriod:
    return BudgetPeriod.objects.get(budget=budget)
