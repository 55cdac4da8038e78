"""Budget agent: spend against budgets, read through a `BudgetReader`.

Until budgets are configured the reader returns None and the state is `no_budget`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from routing.agents.base import AgentCheck

NO_BUDGET = "no_budget"


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """The tightest budget right now: what was spent of what limit, and its soft alert share."""

    name: str
    spent_usd: Decimal
    limit_usd: Decimal
    soft_alert_share: Decimal = Decimal("0.8")


BudgetReader = Callable[[], BudgetStatus | None]


def no_budget() -> BudgetStatus | None:
    return None


def budget_state(status: BudgetStatus | None) -> tuple[str, str]:
    if status is None:
        return NO_BUDGET, "no budget configured"
    if status.limit_usd <= 0 or status.spent_usd >= status.limit_usd:
        return "budget_critical", f"{status.name}: {status.spent_usd} of {status.limit_usd} USD"
    share = status.spent_usd / status.limit_usd
    if share >= status.soft_alert_share:
        return "budget_constrained", f"{status.name}: {share:.0%} of {status.limit_usd} USD"
    return "budget_available", f"{status.name}: {share:.0%} of {status.limit_usd} USD"


class BudgetAgent:
    name = "budget"

    def __init__(self, reader: BudgetReader = no_budget) -> None:
        self.reader = reader

    def initialize(self) -> None:
        return None

    def check(self, **_: Any) -> AgentCheck:
        status = self.reader()
        state, reason = budget_state(status)
        metrics = (
            {
                "budget": status.name,
                "spent_usd": str(status.spent_usd),
                "limit_usd": str(status.limit_usd),
            }
            if status
            else {}
        )
        return AgentCheck(
            state=state, proceed=state != "budget_critical", reason=reason, metrics=metrics
        )

    def shutdown(self) -> None:
        return None
