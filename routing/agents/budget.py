"""Budget agent: spend against budgets, read through a `BudgetReader`.

A reader returns one `BudgetStatus`, a list of them (one per budget), or None when no budget is
configured (state `no_budget`). With a list, every budget is reported as its own target and the
overall state is the tightest of the budgets that cover every request (scope `global`): a
budget of one key, user or model is enforced when a request reserves against it, so it must not
send everyone else's requests to free models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from analytics.money import usd_json
from routing.agents.base import AgentCheck

NO_BUDGET = "no_budget"
AVAILABLE = "budget_available"
CONSTRAINED = "budget_constrained"
CRITICAL = "budget_critical"
_RANK = {AVAILABLE: 0, CONSTRAINED: 1, CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget right now: what was spent and is held of what limit, and its shares.

    `critical_share` 1 means critical only at the limit itself.
    """

    name: str
    spent_usd: Decimal
    limit_usd: Decimal
    soft_alert_share: Decimal = Decimal("0.8")
    reserved_usd: Decimal = Decimal(0)
    critical_share: Decimal = Decimal(1)
    scope: str = "global"
    hard_stop: bool = True

    @property
    def committed_usd(self) -> Decimal:
        return self.spent_usd + self.reserved_usd


BudgetReader = Callable[[], BudgetStatus | Sequence[BudgetStatus] | None]


def no_budget() -> BudgetStatus | None:
    return None


def budget_state(status: BudgetStatus | None) -> tuple[str, str]:
    if status is None:
        return NO_BUDGET, "no budget configured"
    committed = status.committed_usd
    if status.limit_usd <= 0 or committed >= status.limit_usd:
        return CRITICAL, f"{status.name}: {committed} of {status.limit_usd} USD"
    share = committed / status.limit_usd
    where = f"{status.name}: {share:.0%} of {status.limit_usd} USD"
    if share >= status.critical_share:
        return CRITICAL, where
    if share >= status.soft_alert_share:
        return CONSTRAINED, where
    return AVAILABLE, where


def _metrics(status: BudgetStatus) -> dict[str, Any]:
    return {
        "budget": status.name,
        "scope": status.scope,
        "spent_usd": usd_json(status.spent_usd),
        "reserved_usd": usd_json(status.reserved_usd),
        "limit_usd": usd_json(status.limit_usd),
        "soft_alert_share": str(status.soft_alert_share),
        "critical_share": str(status.critical_share),
        "hard_stop": status.hard_stop,
    }


def _overall_state(status: BudgetStatus) -> tuple[str, str]:
    state, reason = budget_state(status)
    # A budget without a hard stop only tracks: it never narrows routing to free models.
    if state == CRITICAL and not status.hard_stop:
        return CONSTRAINED, f"{reason} (tracking only)"
    return state, reason


def _recommend(state: str) -> str:
    """Near a hard limit the agent recommends the local models, which cost nothing; the budget
    guard, not the agent, refuses what would overspend."""
    return "local" if state == CRITICAL else ""


def budget_checks(statuses: Sequence[BudgetStatus]) -> list[AgentCheck]:
    """The overall check (target "") first, then one check per budget, named by the budget."""
    if not statuses:
        return [AgentCheck(state=NO_BUDGET, reason="no budget configured")]
    per_budget = []
    for status in statuses:
        state, reason = budget_state(status)
        per_budget.append(
            AgentCheck(
                state=state,
                target=status.name,
                reason=reason,
                metrics=_metrics(status),
            )
        )
    covering = [s for s in statuses if s.scope == "global"]
    if not covering:
        overall = AgentCheck(
            state=AVAILABLE,
            reason=f"no global budget; {len(statuses)} scoped budget(s) reported per target",
            metrics={"budgets": len(statuses)},
        )
        return [overall, *per_budget]
    judged = [(s, *_overall_state(s)) for s in covering]
    tightest, state, reason = max(
        judged, key=lambda item: (_RANK[item[1]], item[0].committed_usd / (item[0].limit_usd or 1))
    )
    overall = AgentCheck(
        state=state,
        reason=reason,
        metrics={**_metrics(tightest), "budgets": len(statuses)},
        recommend=_recommend(state),
    )
    return [overall, *per_budget]


class BudgetAgent:
    name = "budget"

    def __init__(self, reader: BudgetReader = no_budget) -> None:
        self.reader = reader

    def initialize(self) -> None:
        return None

    def check(self, **_: Any) -> AgentCheck | list[AgentCheck]:
        status = self.reader()
        if status is not None and not isinstance(status, BudgetStatus):
            return budget_checks(list(status))
        state, reason = budget_state(status)
        metrics = (
            {
                "budget": status.name,
                "spent_usd": usd_json(status.spent_usd),
                "limit_usd": usd_json(status.limit_usd),
            }
            if status
            else {}
        )
        return AgentCheck(state=state, reason=reason, metrics=metrics, recommend=_recommend(state))

    def shutdown(self) -> None:
        return None
