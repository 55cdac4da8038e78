"""Moved to `routing.budgets.reader`. Kept so that the dotted path
`routing.budget_reader.budget_read` (the default of `ORCHESTRATOR_BUDGET_READER`, and any
setting that names it) keeps working."""

from routing.budgets.reader import (
    BudgetNow,
    budget_read,
    budget_statuses_for_analytics,
    budgets_now,
)

__all__ = ["BudgetNow", "budget_read", "budget_statuses_for_analytics", "budgets_now"]
