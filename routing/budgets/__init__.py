"""Budgets: reserve a request's maximum cost before it runs, settle to the actual cost after.

Admission is one conditional `UPDATE … SET reserved = reserved + x WHERE spent + reserved + x
<= limit` per budget, inside one transaction, so concurrent requests can never together
reserve past a limit. Every reservation is settled or released exactly once: `budget_settle`
and `budget_release` are idempotent, and `budget_reservations_expire` sweeps up holds whose
process died before it could settle them.

Which budgets cover a request, and the id of each one's current period, are kept in process
memory (tied to the routing configuration version, which every budget edit changes), so a warm
admission is the one conditional statement and nothing else. The limits themselves are never
cached: the statement compares against the period row. A refusal decided on cached facts is
checked again on fresh ones before it is given.

The package: `values` (what is passed around), `periods` (which budgets and periods cover a
request, remembered), `reserve` (admission), `close` (settling, releasing, the expiry sweep),
`store` (the ORM or prepared-statement implementation, chosen once per process) with its
statements in `sql`, `amounts` (rounding to the stored places) and `reader` (budgets as they
stand now, for the budget agent and the analytics view).
"""

from routing.budgets.close import (
    budget_limit_apply,
    budget_release,
    budget_reservations_expire,
    budget_settle,
    budgets_close,
)
from routing.budgets.periods import budgets_forget, period_bounds
from routing.budgets.reserve import budget_reserve
from routing.budgets.values import (
    BudgetClose,
    BudgetExceeded,
    BudgetHold,
    BudgetSpec,
    Reservation,
)

__all__ = [
    "BudgetClose",
    "BudgetExceeded",
    "BudgetHold",
    "BudgetSpec",
    "Reservation",
    "budget_limit_apply",
    "budget_release",
    "budget_reservations_expire",
    "budget_reserve",
    "budget_settle",
    "budgets_close",
    "budgets_forget",
    "period_bounds",
]
