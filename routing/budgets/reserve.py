"""Admission: `budget_reserve` holds a request's maximum cost against every enabled budget that
covers it, or against none and raises `BudgetExceeded`. The per-request cap and an unbounded
cost are refused here, before any statement; the hold itself is the store's one conditional
statement (`routing.budgets.store`). A refusal decided on remembered budgets and periods is
checked again on fresh ones before it is given.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from django.utils import timezone

from routing.budgets.amounts import usd_quantize
from routing.budgets.periods import budgets_forget, covering_budgets
from routing.budgets.store import budget_store
from routing.budgets.values import BudgetExceeded, BudgetHold, BudgetSpec, Reservation


def budget_reserve(
    *,
    max_cost_usd: Decimal | None,
    api_key_id: int | None = None,
    user_id: int | None = None,
    model_id: int | None = None,
    request_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> Reservation:
    """Hold `max_cost_usd` against every enabled budget that covers this request, or none.

    A cost of 0 (a free model) is never blocked. `None` (a cost that cannot be bounded) is
    refused by every hard-stop budget. Raises `BudgetExceeded` naming the first budget that
    has no room; nothing is held then.
    """
    now = now or timezone.now()
    request_id = request_id or uuid.uuid4()
    if max_cost_usd is not None and max_cost_usd == 0:
        return Reservation(request_id=request_id, amount_usd=Decimal(0), holds=())
    amount = (
        Decimal(0) if max_cost_usd is None else usd_quantize(max_cost_usd, rounding=ROUND_CEILING)
    )
    scope = {"api_key_id": api_key_id, "user_id": user_id, "model_id": model_id}
    try:
        return _reserve(covering_budgets(**scope, at=now), max_cost_usd, amount, request_id, now)
    except BudgetExceeded:
        # Decided on remembered budgets and periods: confirm on fresh ones before refusing.
        budgets_forget()
        return _reserve(covering_budgets(**scope, at=now), max_cost_usd, amount, request_id, now)


def _reserve(
    budgets: list[tuple[BudgetSpec, int]],
    max_cost_usd: Decimal | None,
    amount: Decimal,
    request_id: uuid.UUID,
    now: datetime,
) -> Reservation:
    for budget, _ in budgets:
        if not budget.hard_stop:
            continue
        if max_cost_usd is None:
            raise BudgetExceeded(budget_name=budget.name, reason="the cost cannot be bounded")
        cap = budget.max_cost_per_request_usd
        if cap is not None and amount > cap:
            raise BudgetExceeded(
                budget_name=budget.name,
                reason=f"this request may cost up to {amount:f} USD, above {cap:f} USD per request",
            )
    if not budgets:
        return Reservation(request_id=request_id, amount_usd=amount, holds=())

    lines = budget_store().hold(budgets, amount, request_id, now)
    holds: list[BudgetHold] = []
    for (budget, period_id), line_id in zip(budgets, lines, strict=True):
        holds.append(
            BudgetHold(
                reservation_id=line_id,
                period_id=period_id,
                budget_name=budget.name,
                # Rounded up: a stored spend reaches it exactly when it reaches the share.
                soft_alert_usd=usd_quantize(
                    budget.limit_usd * budget.soft_alert_share, rounding=ROUND_CEILING
                ),
            )
        )
    return Reservation(request_id=request_id, amount_usd=amount, holds=tuple(holds))
