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
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from analytics.pricing import Prices, max_cost_for, prices_ceiling
from core.db import prepared_available, prepared_rows
from providers.models import LLMModel
from routing.budget_alerts import budget_alert_open
from routing.budget_amounts import usd_quantize, usd_rounded
from routing.models import Budget, BudgetPeriod, BudgetReservation

logger = logging.getLogger(__name__)


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


# Never trust the memo longer than this, even without a version change (edits made with
# queryset.update() send no signal).
BUDGETS_MAX_AGE_S = 300.0

_memo_lock = threading.Lock()
_specs_memo: tuple[str, float, tuple[BudgetSpec, ...]] | None = None
# budget id -> (period start, period end, period row id)
_periods_memo: dict[int, tuple[datetime, datetime, int]] = {}


def budgets_forget() -> None:
    """Drop this process's memo of budgets and periods (a budget changed here)."""
    global _specs_memo
    with _memo_lock:
        _specs_memo = None
        _periods_memo.clear()


def _enabled_budgets() -> tuple[BudgetSpec, ...]:
    from routing.config_cache import shared_read

    global _specs_memo
    version = shared_read().version
    memo = _specs_memo
    if memo and memo[0] == version and time.monotonic() - memo[1] < BUDGETS_MAX_AGE_S:
        return memo[2]
    specs = tuple(
        BudgetSpec(
            id=b.pk,
            name=b.name,
            scope=b.scope,
            api_key_id=b.api_key_id,
            user_id=b.user_id,
            model_id=b.model_id,
            period=b.period,
            limit_usd=b.limit_usd,
            soft_alert_share=b.soft_alert_share,
            hard_stop=b.hard_stop,
            max_cost_per_request_usd=b.max_cost_per_request_usd,
        )
        for b in Budget.objects.filter(enabled=True).order_by("pk")
    )
    with _memo_lock:
        if memo is not None and memo[0] != version:
            _periods_memo.clear()
        _specs_memo = (version, time.monotonic(), specs)
    return specs


class BudgetExceeded(Exception):
    """The request could cost more than a budget allows; names the budget."""

    code = "BUDGET_EXCEEDED"

    def __init__(self, *, budget_name: str, reason: str) -> None:
        super().__init__(f"Budget '{budget_name}' exceeded: {reason}")
        self.budget_name = budget_name
        self.reason = reason


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


def period_bounds(period: str, at: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The calendar day, week (Monday first) or month containing `at`, in `tz`."""
    local = at.astimezone(tz)
    day = datetime(local.year, local.month, local.day)
    if period == Budget.Period.DAY:
        start, end = day, day + timedelta(days=1)
    elif period == Budget.Period.WEEK:
        start = day - timedelta(days=local.weekday())
        end = start + timedelta(days=7)
    elif period == Budget.Period.MONTH:
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    else:
        raise ValueError(f"unknown budget period {period!r}")
    # Local midnights, attached to the zone only now so a DST change inside the period
    # gives each bound its own offset.
    return start.replace(tzinfo=tz), end.replace(tzinfo=tz)


def request_max_cost_usd(
    *, model: LLMModel, prompt_tokens: int, max_output_tokens: int
) -> Decimal | None:
    """The most this request could cost on `model`; an unpriced model is priced like the
    dearest known one. None only when no model has a price at all."""
    known = [
        Prices(m.input_price_per_mtok_usd, m.output_price_per_mtok_usd)
        for m in LLMModel.objects.only("input_price_per_mtok_usd", "output_price_per_mtok_usd")
    ]
    prices = Prices(model.input_price_per_mtok_usd, model.output_price_per_mtok_usd)
    return max_cost_for(prompt_tokens, max_output_tokens, prices, prices_ceiling(known))


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
        return _reserve(_covering_budgets(**scope, at=now), max_cost_usd, amount, request_id, now)
    except BudgetExceeded:
        # Decided on remembered budgets and periods: confirm on fresh ones before refusing.
        budgets_forget()
        return _reserve(_covering_budgets(**scope, at=now), max_cost_usd, amount, request_id, now)


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

    if not prepared_available():
        lines = _hold_each(budgets, amount, request_id, now)
    elif len(budgets) == 1:
        lines = _hold_one(budgets[0], amount, request_id, now)
    else:
        lines = _hold_many(budgets, amount, request_id, now)
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


def _refused(budget: BudgetSpec, amount: Decimal) -> BudgetExceeded:
    return BudgetExceeded(
        budget_name=budget.name,
        reason=(
            f"{amount:f} USD more would pass its {budget.limit_usd:f} USD limit"
            f" this {budget.period}"
        ),
    )


def _hold_each(
    budgets: list[tuple[BudgetSpec, int]], amount: Decimal, request_id: uuid.UUID, now: datetime
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
                raise _refused(budget, amount)
        lines = BudgetReservation.objects.bulk_create(
            [
                BudgetReservation(
                    request_id=request_id, period_id=period_id, amount_usd=amount, created_at=now
                )
                for _, period_id in budgets
            ]
        )
    return [line.pk for line in lines]


# Holds and settlements commit without waiting for their WAL flush (`synchronous_commit` off
# for their own transaction only). Locking and visibility are unchanged, so concurrent holds
# still cannot pass a limit together. In exchange a period row is never locked through a disk
# flush (~2 ms on an ordinary disk), which capped every budget at a few hundred requests a
# second and made each request wait for the one before. What a Postgres crash can take is the
# flush window (wal_writer_delay, 200 ms by default): a lost settlement is redone from its
# request's log row, which is written synchronously first (`budget_reservations_expire`); a
# lost hold belongs to a request whose settlement could not be recorded at that moment either.
# Only a statement that is its own transaction is relaxed: inside a caller's transaction the
# setting would reach the caller's other writes too.
_RELAXED_COMMIT = (
    "(SELECT CASE WHEN %(relaxed)s THEN set_config('synchronous_commit', 'off', true)"
    " ELSE 'off' END) = 'off'"
)

# The common case, one budget, in one statement and one round trip: the conditional UPDATE
# and the insert of its hold are atomic together, and a refused UPDATE inserts nothing.
_HOLD_ONE_SQL = f"""
WITH held AS (
    UPDATE routing_budgetperiod SET reserved_usd = reserved_usd + %(amount)s
    WHERE id = %(period_id)s
      AND (NOT %(hard_stop)s OR spent_usd + reserved_usd + %(amount)s <= limit_usd)
      AND {_RELAXED_COMMIT}
    RETURNING id
)
INSERT INTO routing_budgetreservation (request_id, period_id, amount_usd, state, created_at)
SELECT %(request_id)s, id, %(amount)s, 'held', %(now)s FROM held
RETURNING id
"""


# Several budgets in one statement: lock their period rows in id order (so two such requests
# cannot deadlock), and hold on all of them only if no hard-stop one lacks room. Returns the
# new holds, or the refusing periods.
_HOLD_MANY_SQL = f"""
WITH locked AS MATERIALIZED (
    SELECT id, spent_usd, reserved_usd, limit_usd FROM routing_budgetperiod
    WHERE id = ANY(%(period_ids)s) AND {_RELAXED_COMMIT} ORDER BY id FOR UPDATE
), refused AS (
    SELECT id FROM locked
    WHERE id = ANY(%(hard_ids)s) AND spent_usd + reserved_usd + %(amount)s > limit_usd
), held AS (
    UPDATE routing_budgetperiod AS p SET reserved_usd = p.reserved_usd + %(amount)s
    FROM locked WHERE p.id = locked.id AND NOT EXISTS (SELECT 1 FROM refused)
    RETURNING p.id
), lines AS (
    INSERT INTO routing_budgetreservation (request_id, period_id, amount_usd, state, created_at)
    SELECT %(request_id)s, id, %(amount)s, 'held', %(now)s FROM held
    RETURNING id, period_id
)
SELECT TRUE, id, period_id FROM lines
UNION ALL
SELECT FALSE, NULL, id FROM refused
"""


def _hold_many(
    budgets: list[tuple[BudgetSpec, int]], amount: Decimal, request_id: uuid.UUID, now: datetime
) -> list[int]:
    rows = prepared_rows(
        _HOLD_MANY_SQL,
        {
            "period_ids": [period_id for _, period_id in budgets],
            "hard_ids": [period_id for budget, period_id in budgets if budget.hard_stop],
            "amount": amount,
            "request_id": request_id,
            "now": now,
            "relaxed": not connection.in_atomic_block,
        },
    )
    refused = {period_id for held, _, period_id in rows if not held}
    for budget, period_id in budgets:
        if period_id in refused:
            raise _refused(budget, amount)
    lines = {period_id: line_id for held, line_id, period_id in rows if held}
    if len(lines) != len(budgets):
        # A period row that no longer exists: refuse, so the caller looks again on fresh facts.
        missing = next(b for b, period_id in budgets if period_id not in lines)
        raise _refused(missing, amount)
    return [lines[period_id] for _, period_id in budgets]


def _hold_one(
    pair: tuple[BudgetSpec, int], amount: Decimal, request_id: uuid.UUID, now: datetime
) -> list[int]:
    budget, period_id = pair
    rows = prepared_rows(
        _HOLD_ONE_SQL,
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
        raise _refused(budget, amount)
    return [rows[0][0]]


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
    if not prepared_available() or len(held) == 1:
        # One reservation is one statement, a transaction of its own.
        for close in held:
            _close(close, now=now)
        return
    holds = [(hold, close) for close in held for hold in close.reservation.holds]
    rows = prepared_rows(
        _CLOSE_MANY_SQL,
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


abudget_reserve = sync_to_async(budget_reserve)
abudget_settle = sync_to_async(budget_settle)
abudget_release = sync_to_async(budget_release)


def budget_reservations_expire(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Close the holds older than `older_than` that were never settled; returns how many.

    A request's settlement commits without waiting for its flush (see `_RELAXED_COMMIT`), so a
    Postgres crash can take it back; its log row, written durably before it, cannot. A stale
    hold of a request whose row says it produced something is therefore settled again from the
    row: at the row's cost, or the whole hold when the price is unknown. Only the request's
    last reservation is settled so (a request that fell back to another model released the
    earlier model's hold first); every other stale hold, and every hold without a row (its
    process died mid-request), is released.
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
            if _claim(reservation_id, state, spent, now):
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


def _covering_budgets(
    *, api_key_id: int | None, user_id: int | None, model_id: int | None, at: datetime
) -> list[tuple[BudgetSpec, int]]:
    """Enabled budgets covering the request, each with the id of its current period."""
    found: list[tuple[BudgetSpec, int]] = []
    for budget in _enabled_budgets():
        if budget.covers(api_key_id=api_key_id, user_id=user_id, model_id=model_id):
            found.append((budget, _current_period(budget, at)))
    return found


def _current_period(budget: BudgetSpec, at: datetime) -> int:
    remembered = _periods_memo.get(budget.id)
    if remembered is not None and remembered[0] <= at < remembered[1]:
        return remembered[2]
    row = (
        BudgetPeriod.objects.filter(budget_id=budget.id, starts_at__lte=at, ends_at__gt=at)
        .values_list("starts_at", "ends_at", "pk")
        .first()
    )
    if row is None:
        starts_at, ends_at = period_bounds(budget.period, at, ZoneInfo(settings.TIME_ZONE))
        row = (starts_at, ends_at, _period_open(budget, starts_at, ends_at))
    with _memo_lock:
        _periods_memo[budget.id] = row
    return row[2]


def _period_open(budget: BudgetSpec, starts_at: datetime, ends_at: datetime) -> int:
    """A new period row, created on the first request of a period (racing creators agree
    through the unique constraint)."""
    BudgetPeriod.objects.bulk_create(
        [
            BudgetPeriod(
                budget_id=budget.id,
                starts_at=starts_at,
                ends_at=ends_at,
                limit_usd=budget.limit_usd,
            )
        ],
        ignore_conflicts=True,
    )
    return BudgetPeriod.objects.only("pk").get(budget_id=budget.id, starts_at=starts_at).pk


def _claim(reservation_id: int, state: str, spent: Decimal, now: datetime) -> bool:
    return (
        BudgetReservation.objects.filter(
            pk=reservation_id, state=BudgetReservation.State.HELD
        ).update(state=state, actual_usd=spent, settled_at=now)
        == 1
    )


# Settling in one statement: claim the holds (only those still held, which makes settling
# idempotent) and move their amounts from reserved to spent. Several holds also lock their
# period rows in id order first, as admission locks them, so two requests settling the same
# budgets cannot deadlock; a single hold cannot deadlock with anything and skips that lock.
_CLAIM_SQL = f"""
WITH claimed AS (
    UPDATE routing_budgetreservation
    SET state = %(state)s, actual_usd = %(spent)s, settled_at = %(now)s
    WHERE id = ANY(%(reservation_ids)s) AND state = 'held' AND {_RELAXED_COMMIT}
    RETURNING period_id, amount_usd
)"""
_LOCK_SQL = """, locked AS MATERIALIZED (
    SELECT id FROM routing_budgetperiod
    WHERE id = ANY(%(period_ids)s) ORDER BY id FOR UPDATE
)"""
_SPEND_SQL = """
UPDATE routing_budgetperiod AS p
SET spent_usd = p.spent_usd + %(spent)s, reserved_usd = p.reserved_usd - claimed.amount_usd
FROM claimed {join}WHERE p.id = claimed.period_id
RETURNING p.id, p.spent_usd, p.soft_alerted_at IS NULL
"""
_CLOSE_ONE_SQL = _CLAIM_SQL + _SPEND_SQL.format(join="")
_CLOSE_SQL = (
    _CLAIM_SQL
    + _LOCK_SQL
    + _SPEND_SQL.format(join="JOIN locked ON locked.id = claimed.period_id\n")
)


# A group: one row per hold (reservation, its new state, what it spent), claimed together;
# each period is updated once, by the sums of its claimed holds.
_CLOSE_MANY_SQL = f"""
WITH closing AS (
    SELECT * FROM unnest(%(reservation_ids)s::bigint[], %(states)s::text[], %(spent)s::numeric[])
        AS c(reservation_id, state, spent)
), claimed AS (
    UPDATE routing_budgetreservation AS r
    SET state = c.state, actual_usd = c.spent, settled_at = %(now)s
    FROM closing AS c
    WHERE r.id = c.reservation_id AND r.state = 'held' AND {_RELAXED_COMMIT}
    RETURNING r.period_id, r.amount_usd, c.spent
), totals AS (
    SELECT period_id, sum(spent) AS spent, sum(amount_usd) AS amount
    FROM claimed GROUP BY period_id
){_LOCK_SQL}
UPDATE routing_budgetperiod AS p
SET spent_usd = p.spent_usd + totals.spent, reserved_usd = p.reserved_usd - totals.amount
FROM totals JOIN locked ON locked.id = totals.period_id
WHERE p.id = totals.period_id
RETURNING p.id, p.spent_usd, p.soft_alerted_at IS NULL
"""


def _close_params(close: BudgetClose, now: datetime, *, relaxed: bool) -> dict[str, Any]:
    holds = close.reservation.holds
    return {
        "state": close.state,
        "spent": close.spent,
        "now": now,
        "reservation_ids": [hold.reservation_id for hold in holds],
        "period_ids": [hold.period_id for hold in holds],
        "relaxed": relaxed,
    }


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


def _close(close: BudgetClose, *, now: datetime | None) -> None:
    """Settle or release one reservation. A settlement that fails still gives its hold back
    (logged with the spend it could not record, and raised again): a hold left held would count
    against the limit until the sweep, which the zero-setup site never runs."""
    if not close.reservation.holds:
        return
    now = now or timezone.now()
    try:
        # Outside a caller's transaction (the request path) the failed statement was a
        # transaction of its own and the release can follow; inside one on Postgres the
        # transaction is spoilt, the release fails too and the caller's rollback decides.
        _close_once(close, now)
    except DatabaseError:
        if close.state != BudgetReservation.State.SETTLED:
            raise
        logger.exception(
            "budget settlement of request %s (%s USD) failed; releasing its hold",
            close.reservation.request_id,
            close.spent,
        )
        try:
            _close_once(BudgetClose.released(close.reservation), now)
        except DatabaseError:
            logger.exception(
                "budget release of request %s failed too; the hold waits for the sweep",
                close.reservation.request_id,
            )
        raise


def _close_once(close: BudgetClose, now: datetime) -> None:
    reservation, spent, state = close.reservation, close.spent, close.state
    if prepared_available():
        params = _close_params(close, now, relaxed=not connection.in_atomic_block)
        sql = _CLOSE_ONE_SQL if len(reservation.holds) == 1 else _CLOSE_SQL
        holds = [(hold, close) for hold in reservation.holds]
        _soft_alerts(holds, prepared_rows(sql, params), now)
        return
    with transaction.atomic():
        for hold in sorted(reservation.holds, key=lambda h: h.period_id):
            if not _claim(hold.reservation_id, state, spent, now):
                continue
            BudgetPeriod.objects.filter(pk=hold.period_id).update(
                spent_usd=usd_rounded(F("spent_usd") + spent),
                reserved_usd=usd_rounded(F("reserved_usd") - reservation.amount_usd),
            )
            if spent > 0:
                _soft_alert_record(hold, now)


def _soft_alert_record(hold: BudgetHold, now: datetime) -> None:
    crossed = BudgetPeriod.objects.filter(
        pk=hold.period_id, soft_alerted_at__isnull=True, spent_usd__gte=hold.soft_alert_usd
    ).update(soft_alerted_at=now)
    if crossed:
        # Only the settlement that won the conditional UPDATE gets here: one alert per period.
        budget_alert_open(period_id=hold.period_id, now=now)


class Spend:
    """What the guarded request ended up costing; set by the caller inside `budget_guard`."""

    def __init__(self) -> None:
        self.recorded = False
        self.cost_usd: Decimal | None = None

    def record(self, cost_usd: Decimal | None) -> None:
        """`None` is a finished request on a model whose price is unknown."""
        self.recorded = True
        self.cost_usd = cost_usd


@asynccontextmanager
async def budget_guard(
    *,
    max_cost_usd: Decimal | None,
    api_key_id: int | None = None,
    user_id: int | None = None,
    model_id: int | None = None,
    request_id: uuid.UUID | None = None,
) -> AsyncIterator[Spend]:
    """Reserve on entry; on exit settle what was recorded, or release everything when nothing
    was, when the body raised, or when the task was cancelled."""
    reservation = await abudget_reserve(
        max_cost_usd=max_cost_usd,
        api_key_id=api_key_id,
        user_id=user_id,
        model_id=model_id,
        request_id=request_id,
    )
    spend = Spend()
    try:
        yield spend
    except BaseException:
        # Shielded: a second cancellation must not strand the hold.
        await asyncio.shield(abudget_release(reservation=reservation))
        raise
    if spend.recorded:
        await asyncio.shield(
            abudget_settle(reservation=reservation, actual_cost_usd=spend.cost_usd)
        )
    else:
        await asyncio.shield(abudget_release(reservation=reservation))
