"""Where holds are taken and closed: one `BudgetStore` per process, chosen once on first use.

On Postgres (`PreparedStore`) a hold, a close and a group of closes are each one prepared
statement (`routing.budgets.sql`). On SQLite, the zero-setup site (`OrmStore`), the same steps
are conditional ORM UPDATEs in one transaction, and a group is closed one reservation at a
time. Either store records the soft alert a settlement crosses (`budget_alert_open`), once per
period. `budget_store()` is cached like `prepared_available()`, which decides it, so a caller
pays one cached call, as it paid for asking `prepared_available()`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from django.db import connection, transaction
from django.db.models import F

from core.db import prepared_available, prepared_rows
from routing.budget_alerts import budget_alert_open
from routing.budgets.amounts import usd_rounded
from routing.budgets.sql import (
    CLOSE_MANY_SQL,
    CLOSE_ONE_SQL,
    CLOSE_SQL,
    HOLD_MANY_SQL,
    HOLD_ONE_SQL,
)
from routing.budgets.values import BudgetClose, BudgetHold, BudgetSpec, refused
from routing.models import BudgetPeriod, BudgetReservation


class BudgetStore(Protocol):
    groups: bool
    """Whether `close_group` closes a group in one statement (otherwise: one at a time)."""

    def hold(
        self,
        budgets: list[tuple[BudgetSpec, int]],
        amount: Decimal,
        request_id: uuid.UUID,
        now: datetime,
    ) -> list[int]:
        """Hold `amount` on every `(budget, period id)` or on none (raising `BudgetExceeded`);
        the new reservation ids, in the order of `budgets`."""
        ...

    def close(self, close: BudgetClose, now: datetime) -> None:
        """Settle or release one reservation's holds that are still held."""
        ...

    def close_group(self, closes: Sequence[BudgetClose], now: datetime) -> None:
        """Settle or release several reservations in one statement (only where `groups`)."""
        ...


@functools.cache
def budget_store() -> BudgetStore:
    """This process's store, for the database it was configured with."""
    return PreparedStore() if prepared_available() else OrmStore()


class OrmStore:
    """Conditional ORM UPDATEs, one per budget, in one transaction (SQLite)."""

    groups = False

    def hold(
        self,
        budgets: list[tuple[BudgetSpec, int]],
        amount: Decimal,
        request_id: uuid.UUID,
        now: datetime,
    ) -> list[int]:
        """One conditional UPDATE per budget in one transaction; all held or none."""
        with transaction.atomic():
            # Rows are locked in id order so two multi-budget requests cannot deadlock.
            for budget, period_id in sorted(budgets, key=lambda pair: pair[1]):
                rows = BudgetPeriod.objects.filter(pk=period_id)
                if budget.hard_stop:
                    rows = rows.filter(
                        limit_usd__gte=usd_rounded(F("spent_usd") + F("reserved_usd") + amount)
                    )
                if rows.update(reserved_usd=usd_rounded(F("reserved_usd") + amount)) != 1:
                    raise refused(budget, amount)
            lines = BudgetReservation.objects.bulk_create(
                [
                    BudgetReservation(
                        request_id=request_id,
                        period_id=period_id,
                        amount_usd=amount,
                        created_at=now,
                    )
                    for _, period_id in budgets
                ]
            )
        return [line.pk for line in lines]

    def close(self, close: BudgetClose, now: datetime) -> None:
        reservation, spent, state = close.reservation, close.spent, close.state
        with transaction.atomic():
            for hold in sorted(reservation.holds, key=lambda h: h.period_id):
                if not claim(hold.reservation_id, state, spent, now):
                    continue
                BudgetPeriod.objects.filter(pk=hold.period_id).update(
                    spent_usd=usd_rounded(F("spent_usd") + spent),
                    reserved_usd=usd_rounded(F("reserved_usd") - reservation.amount_usd),
                )
                if spent > 0:
                    _soft_alert_record(hold, now)

    def close_group(self, closes: Sequence[BudgetClose], now: datetime) -> None:
        raise NotImplementedError("the ORM closes a group one reservation at a time")


class PreparedStore:
    """One prepared statement per hold, close or group of closes (Postgres)."""

    groups = True

    def hold(
        self,
        budgets: list[tuple[BudgetSpec, int]],
        amount: Decimal,
        request_id: uuid.UUID,
        now: datetime,
    ) -> list[int]:
        if len(budgets) != 1:
            return self._hold_many(budgets, amount, request_id, now)
        # The common case, one budget: the conditional UPDATE and the insert of its hold.
        budget, period_id = budgets[0]
        rows = prepared_rows(
            HOLD_ONE_SQL,
            {
                "amount": amount,
                "period_id": period_id,
                "hard_stop": budget.hard_stop,
                "request_id": request_id,
                "now": now,
                "relaxed": not connection.in_atomic_block,
            },
        )
        if not rows:
            raise refused(budget, amount)
        return [rows[0][0]]

    @staticmethod
    def _hold_many(
        budgets: list[tuple[BudgetSpec, int]],
        amount: Decimal,
        request_id: uuid.UUID,
        now: datetime,
    ) -> list[int]:
        rows = prepared_rows(
            HOLD_MANY_SQL,
            {
                "period_ids": [period_id for _, period_id in budgets],
                "hard_ids": [period_id for budget, period_id in budgets if budget.hard_stop],
                "amount": amount,
                "request_id": request_id,
                "now": now,
                "relaxed": not connection.in_atomic_block,
            },
        )
        refusing = {period_id for held, _, period_id in rows if not held}
        for budget, period_id in budgets:
            if period_id in refusing:
                raise refused(budget, amount)
        lines = {period_id: line_id for held, line_id, period_id in rows if held}
        if len(lines) != len(budgets):
            # A period row that no longer exists: refuse, so the caller looks again on fresh
            # facts.
            missing = next(b for b, period_id in budgets if period_id not in lines)
            raise refused(missing, amount)
        return [lines[period_id] for _, period_id in budgets]

    def close(self, close: BudgetClose, now: datetime) -> None:
        holds = close.reservation.holds
        params = {
            "state": close.state,
            "spent": close.spent,
            "now": now,
            "reservation_ids": [hold.reservation_id for hold in holds],
            "period_ids": [hold.period_id for hold in holds],
            "relaxed": not connection.in_atomic_block,
        }
        sql = CLOSE_ONE_SQL if len(holds) == 1 else CLOSE_SQL
        _soft_alerts([(hold, close) for hold in holds], prepared_rows(sql, params), now)

    def close_group(self, closes: Sequence[BudgetClose], now: datetime) -> None:
        holds = [(hold, close) for close in closes for hold in close.reservation.holds]
        rows = prepared_rows(
            CLOSE_MANY_SQL,
            {
                "reservation_ids": [hold.reservation_id for hold, _ in holds],
                "states": [close.state for _, close in holds],
                "spent": [close.spent for _, close in holds],
                "period_ids": sorted({hold.period_id for hold, _ in holds}),
                "now": now,
                "relaxed": not connection.in_atomic_block,
            },
        )
        _soft_alerts(holds, rows, now)


def claim(reservation_id: int, state: str, spent: Decimal, now: datetime) -> bool:
    """Mark one hold settled or released, if it is still held (through the ORM)."""
    return (
        BudgetReservation.objects.filter(
            pk=reservation_id, state=BudgetReservation.State.HELD
        ).update(state=state, actual_usd=spent, settled_at=now)
        == 1
    )


def _soft_alerts(
    holds: Sequence[tuple[BudgetHold, BudgetClose]], rows: list[tuple[Any, ...]], now: datetime
) -> None:
    """Record the soft alerts that settlements' returned `(period, spent, unalerted)` rows
    cross: one per period, though several closes that spent on it crossed it."""
    totals = {period_id: (total, unalerted) for period_id, total, unalerted in rows}
    crossed: dict[int, BudgetHold] = {}
    for hold, close in holds:
        total, unalerted = totals.get(hold.period_id, (None, False))
        if total is not None and close.spent > 0 and unalerted and total >= hold.soft_alert_usd:
            crossed.setdefault(hold.period_id, hold)
    for hold in crossed.values():
        _soft_alert_record(hold, now)


def _soft_alert_record(hold: BudgetHold, now: datetime) -> None:
    crossed = BudgetPeriod.objects.filter(
        pk=hold.period_id, soft_alerted_at__isnull=True, spent_usd__gte=hold.soft_alert_usd
    ).update(soft_alerted_at=now)
    if crossed:
        # Only the settlement that won the conditional UPDATE gets here: one alert per period.
        budget_alert_open(period_id=hold.period_id, now=now)
