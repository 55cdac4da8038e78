"""Closing reservations: `budget_settle` turns a hold into spend, `budget_release` gives it back,
`budgets_close` does either for many reservations at once; all are idempotent per reservation.
A settlement that fails still releases its hold. Also the upkeep of holds and periods:
`budget_reservations_expire` closes holds whose process never did, from the request's log row
where it says what the request cost, and `budget_limit_apply` copies an edited limit into the
budget's open and future periods.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from routing.budgets.amounts import usd_quantize, usd_rounded
from routing.budgets.store import budget_store, claim
from routing.budgets.values import BudgetClose, Reservation
from routing.models import Budget, BudgetPeriod, BudgetReservation

logger = logging.getLogger(__name__)


def budget_settle(
    *, reservation: Reservation, actual_cost_usd: Decimal | None, now: datetime | None = None
) -> None:
    """Turn the hold into spend of `actual_cost_usd` and release the rest. `None` means the
    model's price is unknown: the whole reservation (priced at the dearest known model) counts
    as spent. Settling twice changes nothing."""
    _close(BudgetClose.settled(reservation, actual_cost_usd), now=now)


def budget_release(*, reservation: Reservation, now: datetime | None = None) -> None:
    """Give the whole hold back: the request failed or was cancelled before costing anything."""
    _close(BudgetClose.released(reservation), now=now)


def budgets_close(closes: Sequence[BudgetClose], *, now: datetime | None = None) -> None:
    """Settle or release many reservations in one statement, whatever their number.

    The statement claims every reservation still held, locks their period rows in id order (as
    admission locks them, so this cannot deadlock with holds or with another group) and moves
    each period's claimed amounts from reserved to spent at once. Idempotent per reservation,
    like `budget_settle`. (A statement per reservation, pipelined in one round trip, cost the
    web process several times the CPU: psycopg builds and reads each statement's result in
    Python.)

    Like a hold, the group commits without waiting for its WAL flush, so a budget's row is never
    locked through a disk flush. Callers write the requests' log rows first (synchronously):
    a settlement lost with a Postgres crash is redone from its row by
    `budget_reservations_expire`.
    """
    held = [close for close in closes if close.reservation.holds]
    if not held:
        return
    now = now or timezone.now()
    store = budget_store()
    if not store.groups or len(held) == 1:
        # One reservation is one statement, a transaction of its own.
        for close in held:
            _close(close, now=now)
        return
    store.close_group(held, now)


def _close(close: BudgetClose, *, now: datetime | None) -> None:
    """Settle or release one reservation. A settlement that fails still gives its hold back
    (logged with the spend it could not record, and raised again): a hold left held would count
    against the limit until the sweep, which the zero-setup site never runs."""
    if not close.reservation.holds:
        return
    now = now or timezone.now()
    store = budget_store()
    try:
        # Outside a caller's transaction (the request path) the failed statement was a
        # transaction of its own and the release can follow; inside one on Postgres the
        # transaction is spoilt, the release fails too and the caller's rollback decides.
        store.close(close, now)
    except DatabaseError:
        if close.state != BudgetReservation.State.SETTLED:
            raise
        logger.exception(
            "budget settlement of request %s (%s USD) failed; releasing its hold",
            close.reservation.request_id,
            close.spent,
        )
        try:
            store.close(BudgetClose.released(close.reservation), now)
        except DatabaseError:
            logger.exception(
                "budget release of request %s failed too; the hold waits for the sweep",
                close.reservation.request_id,
            )
        raise


def budget_reservations_expire(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Close the holds older than `older_than` that were never settled; returns how many.

    A request's settlement commits without waiting for its flush (see
    `routing.budgets.sql.RELAXED_COMMIT`), so a Postgres crash can take it back; its log row,
    written durably before it, cannot. A stale hold of a request whose row says it produced
    something is therefore settled again from the row: at the row's cost, or the whole hold
    when the price is unknown. Only the request's last reservation is settled so (a request
    that fell back to another model released the earlier model's hold first); every other
    stale hold, and every hold without a row (its process died mid-request), is released.
    """
    from analytics.models import RequestLog

    now = now or timezone.now()
    stale = list(
        BudgetReservation.objects.filter(
            state=BudgetReservation.State.HELD, created_at__lt=now - older_than
        ).values_list("pk", "period_id", "amount_usd", "request_id", "created_at")
    )
    request_ids = {line[3] for line in stale}
    spent_by_request = {
        request_id: cost_usd
        for request_id, status, output_tokens, cost_usd in RequestLog.objects.filter(
            request_id__in=request_ids
        ).values_list("request_id", "status", "output_tokens", "cost_usd")
        if status in ("success", "partial") or output_tokens > 0
    }
    last_taken: dict[uuid.UUID, datetime] = {}
    for request_id, created_at in BudgetReservation.objects.filter(
        request_id__in=list(spent_by_request)
    ).values_list("request_id", "created_at"):
        last_taken[request_id] = max(created_at, last_taken.get(request_id, created_at))
    closed = 0
    for reservation_id, period_id, amount, request_id, created_at in stale:
        state, spent = BudgetReservation.State.RELEASED, Decimal(0)
        if request_id in spent_by_request and created_at == last_taken[request_id]:
            cost = spent_by_request[request_id]
            state = BudgetReservation.State.SETTLED
            spent = amount if cost is None else usd_quantize(cost)
        with transaction.atomic():
            if claim(reservation_id, state, spent, now):
                BudgetPeriod.objects.filter(pk=period_id).update(
                    spent_usd=usd_rounded(F("spent_usd") + spent),
                    reserved_usd=usd_rounded(F("reserved_usd") - amount),
                )
                closed += 1
    return closed


def budget_limit_apply(*, budget: Budget, now: datetime | None = None) -> int:
    """Copy an edited budget's limit into its current and future periods."""
    now = now or timezone.now()
    return BudgetPeriod.objects.filter(budget=budget, ends_at__gt=now).update(
        limit_usd=budget.limit_usd
    )
