"""Which enabled budgets cover a request, and the id of each one's current period row.

A period is the calendar day, week or month in `TIME_ZONE` (`period_bounds`); its row is opened
by the first request that falls in it. Both the enabled budgets and each one's current period
are remembered in process memory, tied to the routing configuration version (which every budget
edit changes) and never older than `BUDGETS_MAX_AGE_S`; `budgets_forget` drops them. Limits are
not remembered: admission's statement reads them from the period row.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings

from routing.budgets.values import BudgetSpec
from routing.models import Budget, BudgetPeriod

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
    from routing.config.cache import shared_read

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


def covering_budgets(
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
