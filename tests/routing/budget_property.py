"""A property of budget arithmetic, checked on Postgres (tests/routing/test_budget_arithmetic.py)
and on SQLite (tests/routing/sqlite_budget_run.py, in a child process).

Sequences of holds, settlements and releases with costs of many decimal places, against a global
budget and a user's budget (a request of the user's is held against both). After every step the
database must agree exactly with a ledger kept here in `Decimal`: spent is the sum of the
settled costs rounded to the stored places, reserved is the sum of the open holds, neither is
ever negative, admission refuses exactly when a hold would pass a limit, and spent plus reserved
never passes it (settled costs never exceed their holds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.budgets.close import budget_release, budget_settle, budgets_close
from routing.budgets.periods import budgets_forget
from routing.budgets.reserve import budget_reserve
from routing.budgets.values import BudgetClose, BudgetExceeded, Reservation
from routing.models import Budget, BudgetPeriod, BudgetReservation

NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
STORED = Decimal("0.00000001")
SCALE = 10**13


def _decimal(n: int) -> Decimal:
    return Decimal(n).scaleb(-13)


costs = st.integers(1, SCALE // 3).map(_decimal)  # up to 0.33…, 13 places
shares = st.one_of(st.none(), st.integers(0, SCALE).map(_decimal))  # None: unknown price
limits = st.integers(SCALE // 5, 2 * SCALE).map(lambda n: _decimal(n).quantize(STORED))
steps = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.booleans(), costs),
        st.tuples(st.just("fill"), st.booleans()),
        st.tuples(st.just("settle"), st.integers(0, 20), shares),
        st.tuples(st.just("release"), st.integers(0, 20)),
        st.tuples(st.just("settle_all"), shares),
    ),
    min_size=1,
    max_size=16,
)


@dataclass
class Ledger:
    limits: dict[str, Decimal]
    spent: dict[str, Decimal] = field(default_factory=dict)
    open: list[tuple[Reservation, Decimal, tuple[str, ...]]] = field(default_factory=list)

    def reserved(self, name: str) -> Decimal:
        return sum((r.amount_usd for r, _, names in self.open if name in names), Decimal(0))

    def room(self, name: str) -> Decimal:
        return self.limits[name] - self.spent.get(name, Decimal(0)) - self.reserved(name)

    def settled(self, index: int, share: Decimal | None) -> tuple[Reservation, Decimal | None]:
        """Take the hold at `index` off the ledger as settled at `share` of its cost (None: an
        unknown price, the whole hold); the reservation and the unrounded actual cost."""
        reservation, cost, names = self.open.pop(index)
        actual = None if share is None else cost * share
        spent = (
            reservation.amount_usd
            if actual is None
            else actual.quantize(STORED, rounding=ROUND_HALF_EVEN)
        )
        for name in names:
            self.spent[name] = self.spent.get(name, Decimal(0)) + spent
        return reservation, actual


def _reserve(ledger: Ledger, *, as_user: bool, cost: Decimal, user_id: int) -> None:
    names = ("team", "ana") if as_user else ("team",)
    amount = cost.quantize(STORED, rounding=ROUND_CEILING)
    fits = all(amount <= ledger.room(name) for name in names)
    try:
        reservation = budget_reserve(
            max_cost_usd=cost, user_id=user_id if as_user else None, now=NOW
        )
    except BudgetExceeded as refused:
        assert not fits, f"refused {amount} with room {[ledger.room(n) for n in names]}: {refused}"
        return
    assert fits, f"admitted {amount} with room {[ledger.room(n) for n in names]}"
    assert reservation.amount_usd == amount
    if amount:
        ledger.open.append((reservation, cost, names))


def _check(ledger: Ledger) -> None:
    periods = {p.budget.name: p for p in BudgetPeriod.objects.select_related("budget")}
    for name, limit in ledger.limits.items():
        period = periods.get(name)
        spent, reserved = (
            (period.spent_usd, period.reserved_usd) if period else (Decimal(0), Decimal(0))
        )
        held = [
            amount
            for amount in BudgetReservation.objects.filter(
                period__budget__name=name, state=BudgetReservation.State.HELD
            ).values_list("amount_usd", flat=True)
        ]
        assert (name, spent, reserved) == (
            name,
            ledger.spent.get(name, Decimal(0)),
            ledger.reserved(name),
        )
        assert sum(held, Decimal(0)) == reserved
        assert spent >= 0 and reserved >= 0
        assert spent + reserved <= limit


def budget_sequence_check(user_id: int, team_limit: Decimal, ana_limit: Decimal, plan: Any) -> None:
    """Run one sequence on fresh budgets, checking the database after every step."""
    Budget.objects.all().delete()
    budgets_forget()
    Budget.objects.create(name="team", scope="global", period="month", limit_usd=team_limit)
    Budget.objects.create(
        name="ana", scope="user", user_id=user_id, period="month", limit_usd=ana_limit
    )
    ledger = Ledger(limits={"team": team_limit, "ana": ana_limit})
    for step in plan:
        kind = step[0]
        if kind == "reserve":
            _reserve(ledger, as_user=step[1], cost=step[2], user_id=user_id)
        elif kind == "fill":
            names = ("team", "ana") if step[1] else ("team",)
            room = min(ledger.room(name) for name in names)
            if room > 0:
                _reserve(ledger, as_user=step[1], cost=room, user_id=user_id)
        elif kind == "settle" and ledger.open:
            reservation, actual = ledger.settled(step[1] % len(ledger.open), step[2])
            budget_settle(reservation=reservation, actual_cost_usd=actual, now=NOW)
        elif kind == "release" and ledger.open:
            reservation, _, _ = ledger.open.pop(step[1] % len(ledger.open))
            budget_release(reservation=reservation, now=NOW)
        elif kind == "settle_all" and ledger.open:
            settling = [ledger.settled(0, step[1]) for _ in range(len(ledger.open))]
            budgets_close([BudgetClose.settled(*pair) for pair in settling], now=NOW)
        _check(ledger)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(team_limit=limits, ana_limit=limits, plan=steps)
def budget_property_check(
    user_id: int, team_limit: Decimal, ana_limit: Decimal, plan: list[tuple[Any, ...]]
) -> None:
    budget_sequence_check(user_id, team_limit, ana_limit, plan)
