"""Budgets as they stand now, for the budget agent and for the analytics budget view.

One query reads every enabled budget with its open period (spent, held, the limit copied in,
whether the soft alert fired). A budget whose period has not opened yet (no request this
period) reads as nothing spent of its configured limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import F, FilteredRelation, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from analytics import budgets as analytics_budgets
from analytics.scoping import Scope
from routing import conf
from routing.agents.budget import BudgetStatus
from routing.models import Budget

ZERO = Value(Decimal(0))


@dataclass(frozen=True)
class BudgetNow:
    name: str
    scope: str
    period: str
    api_key_id: int | None
    user_id: int | None
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal
    soft_alert_share: Decimal
    hard_stop: bool
    alerted_at: datetime | None


def budgets_now(*, now: datetime | None = None) -> list[BudgetNow]:
    """Every enabled budget with its current period's figures, by name."""
    now = now or timezone.now()
    rows = (
        Budget.objects.filter(enabled=True)
        .annotate(
            current=FilteredRelation(
                "periods", condition=Q(periods__starts_at__lte=now, periods__ends_at__gt=now)
            )
        )
        .annotate(
            period_limit_usd=Coalesce(F("current__limit_usd"), F("limit_usd")),
            period_spent_usd=Coalesce(F("current__spent_usd"), ZERO),
            period_reserved_usd=Coalesce(F("current__reserved_usd"), ZERO),
            period_alerted_at=F("current__soft_alerted_at"),
        )
        .order_by("name")
    )
    return [
        BudgetNow(
            name=b.name,
            scope=b.scope,
            period=b.period,
            api_key_id=b.api_key_id,
            user_id=b.user_id,
            limit_usd=b.period_limit_usd,
            spent_usd=b.period_spent_usd,
            reserved_usd=b.period_reserved_usd,
            soft_alert_share=b.soft_alert_share,
            hard_stop=b.hard_stop,
            alerted_at=b.period_alerted_at,
        )
        for b in rows
    ]


def budget_read() -> list[BudgetStatus] | None:
    """The budget agent's reader (setting `ORCHESTRATOR_BUDGET_READER`); None: no budget."""
    critical_share = conf.budget_critical_share()
    statuses = [
        BudgetStatus(
            name=b.name,
            spent_usd=b.spent_usd,
            limit_usd=b.limit_usd,
            soft_alert_share=b.soft_alert_share,
            reserved_usd=b.reserved_usd,
            critical_share=critical_share,
            scope=b.scope,
            hard_stop=b.hard_stop,
        )
        for b in budgets_now()
    ]
    return statuses or None


def _visible(budget: BudgetNow, scope: Scope) -> bool:
    """Staff see every budget; anyone else the budgets that apply to their own requests."""
    if scope.unrestricted or budget.scope in (Budget.Scope.GLOBAL, Budget.Scope.MODEL):
        return True
    if budget.scope == Budget.Scope.USER:
        return budget.user_id == scope.user_id
    return budget.api_key_id in scope.api_key_ids


def budget_statuses_for_analytics(scope: Scope) -> list[analytics_budgets.BudgetStatus]:
    """The source routing registers with analytics (`budget_source_register`)."""
    return [
        analytics_budgets.BudgetStatus(
            name=b.name,
            scope=b.scope,
            period=b.period,
            limit_usd=b.limit_usd,
            spent_usd=b.spent_usd,
            soft_alert_share=b.soft_alert_share,
            hard_stop=b.hard_stop,
            reserved_usd=b.reserved_usd,
            alerted_at=b.alerted_at,
        )
        for b in budgets_now()
        if _visible(b, scope)
    ]
