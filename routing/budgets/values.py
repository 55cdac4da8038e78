"""The values budgets pass around: what admission knows of an enabled budget (`BudgetSpec`), what
it held for a request (`Reservation`, one `BudgetHold` per budget), how one reservation is to be
closed (`BudgetClose`: settled at a cost, or released), and the refusal (`BudgetExceeded`).
None of them touches the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from routing.budgets.amounts import usd_quantize
from routing.models import Budget, BudgetReservation


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """What admission needs of an enabled budget; limits are read from its period row."""

    id: int
    name: str
    scope: str
    api_key_id: int | None
    user_id: int | None
    model_id: int | None
    period: str
    limit_usd: Decimal
    soft_alert_share: Decimal
    hard_stop: bool
    max_cost_per_request_usd: Decimal | None

    def covers(self, *, api_key_id: int | None, user_id: int | None, model_id: int | None) -> bool:
        if self.scope == Budget.Scope.GLOBAL:
            return True
        if self.scope == Budget.Scope.API_KEY:
            return api_key_id is not None and self.api_key_id == api_key_id
        if self.scope == Budget.Scope.USER:
            return user_id is not None and self.user_id == user_id
        if self.scope == Budget.Scope.MODEL:
            return model_id is not None and self.model_id == model_id
        return False


class BudgetExceeded(Exception):
    """The request could cost more than a budget allows; names the budget."""

    code = "BUDGET_EXCEEDED"

    def __init__(self, *, budget_name: str, reason: str) -> None:
        super().__init__(f"Budget '{budget_name}' exceeded: {reason}")
        self.budget_name = budget_name
        self.reason = reason


def refused(budget: BudgetSpec, amount: Decimal) -> BudgetExceeded:
    """The refusal of a hold of `amount` that `budget`'s period has no room for."""
    return BudgetExceeded(
        budget_name=budget.name,
        reason=(
            f"{amount:f} USD more would pass its {budget.limit_usd:f} USD limit"
            f" this {budget.period}"
        ),
    )


@dataclass(frozen=True)
class BudgetHold:
    reservation_id: int
    period_id: int
    budget_name: str
    soft_alert_usd: Decimal


@dataclass(frozen=True)
class Reservation:
    """What `budget_reserve` held for one request; hand it back to settle or release."""

    request_id: uuid.UUID
    amount_usd: Decimal
    holds: tuple[BudgetHold, ...]


@dataclass(frozen=True, slots=True)
class BudgetClose:
    """One reservation's settlement (`settled`) or release (`released`), for `budgets_close`."""

    reservation: Reservation
    spent: Decimal
    state: str

    @classmethod
    def settled(cls, reservation: Reservation, actual_cost_usd: Decimal | None) -> BudgetClose:
        """`None` means the model's price is unknown: the whole reservation (priced at the
        dearest known model) counts as spent."""
        spent = reservation.amount_usd if actual_cost_usd is None else usd_quantize(actual_cost_usd)
        return cls(reservation, spent, BudgetReservation.State.SETTLED)

    @classmethod
    def released(cls, reservation: Reservation) -> BudgetClose:
        return cls(reservation, Decimal(0), BudgetReservation.State.RELEASED)
