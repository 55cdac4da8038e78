"""Budgets as the analytics pages see them.

Budgets belong to routing, and analytics never imports routing. Routing registers a source at
start-up with `budget_source_register`; the source returns the budgets the given scope may see,
already measured. With no source registered the budget view says so and the score leaves its
budget part out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from analytics.scoping import Scope


@dataclass(frozen=True)
class BudgetStatus:
    name: str
    scope: str
    period: str
    limit_usd: Decimal
    spent_usd: Decimal
    soft_alert_share: Decimal
    hard_stop: bool
    reserved_usd: Decimal = Decimal(0)
    alerted_at: datetime | None = None  # when this period's soft alert was recorded

    @property
    def used_share(self) -> Decimal | None:
        if not self.limit_usd:
            return None
        return (self.spent_usd / self.limit_usd).quantize(Decimal("0.0001"))

    @property
    def soft_alert_crossed(self) -> bool:
        return (
            self.alerted_at is not None or self.spent_usd >= self.limit_usd * self.soft_alert_share
        )

    @property
    def exceeded(self) -> bool:
        return self.spent_usd > self.limit_usd


BudgetSource = Callable[[Scope], list[BudgetStatus]]
_sources: list[BudgetSource] = []


def budget_source_register(source: BudgetSource) -> None:
    if source not in _sources:
        _sources.append(source)


def budget_source_unregister(source: BudgetSource) -> None:
    if source in _sources:
        _sources.remove(source)


def budgets_available() -> bool:
    return bool(_sources)


def budget_statuses(scope: Scope) -> list[BudgetStatus]:
    statuses: list[BudgetStatus] = []
    for source in _sources:
        statuses.extend(source(scope))
    return statuses
