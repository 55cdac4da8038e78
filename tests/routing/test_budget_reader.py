"""The budget agent over the real budget tables, and what a critical budget does to a decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from providers.models import LLMModel, Provider
from routing import sampling
from routing.agents.base import AgentCheck
from routing.agents.budget import BudgetAgent
from routing.budget_reader import budget_read, budgets_now
from routing.budgets import budget_reserve, budget_settle
from routing.config.cache import shared_forget
from routing.models import Budget, BudgetPeriod
from routing.pipeline.route import route_decide


def budget(name: str, limit: str, **fields: object) -> Budget:
    return Budget.objects.create(name=name, limit_usd=Decimal(limit), **fields)


def open_period(b: Budget, *, spent: str, reserved: str = "0", limit: str | None = None) -> None:
    now = timezone.now()
    BudgetPeriod.objects.create(
        budget=b,
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
        limit_usd=Decimal(limit) if limit is not None else b.limit_usd,
        spent_usd=Decimal(spent),
        reserved_usd=Decimal(reserved),
    )


def sampled() -> list[AgentCheck]:
    """What the budget agent reports with the default reader, once budgets exist."""
    checks = BudgetAgent(budget_read).check()
    assert isinstance(checks, list)
    return checks


def states(checks: list[AgentCheck]) -> list[tuple[str, str, str]]:
    """(target, state, recommendation); a budget agent never blocks (`proceed` stays true):
    the budget guard refuses what would overspend."""
    assert all(c.proceed for c in checks)
    return [(c.target, c.state, c.recommend) for c in checks]


@pytest.mark.django_db
def test_without_budgets_the_agent_reports_no_budget(settings) -> None:
    assert settings.ORCHESTRATOR_BUDGET_READER == "routing.budget_reader.budget_read"
    assert budget_read() is None

    check = BudgetAgent(sampling._budget_reader()).check()

    assert check == AgentCheck(state="no_budget", reason="no budget configured")


@pytest.mark.django_db
def test_each_budget_is_a_target_and_the_global_ones_decide_the_overall_state() -> None:
    team = budget("team", "10.00")
    open_period(team, spent="7.00", reserved="1.50")  # 85 % committed, soft share 80 %
    key = budget("key-7", "1.00", scope="api_key", api_key_id=7)
    open_period(key, spent="0.90", reserved="0.06")  # 96 %: critical, but only for key 7
    ann = get_user_model().objects.create(username="ann")
    budget("ann", "5.00", scope="user", user=ann)  # no request yet this period
    budget("off", "0.01", enabled=False)

    checks = sampled()

    assert states(checks) == [
        ("", "budget_constrained", ""),
        ("ann", "budget_available", ""),
        ("key-7", "budget_critical", ""),
        ("team", "budget_constrained", ""),
    ]
    assert checks[0].reason == "team: 85% of 10.00000000 USD"
    assert checks[0].metrics == {
        "budget": "team",
        "scope": "global",
        "spent_usd": "7.00000000",
        "reserved_usd": "1.50000000",
        "limit_usd": "10.00000000",
        "soft_alert_share": "0.800",
        "critical_share": "0.95",
        "hard_stop": True,
        "budgets": 3,
    }
    assert checks[1].reason == "ann: 0% of 5.00000000 USD"
    assert checks[1].metrics["spent_usd"] == "0"
    assert checks[2].reason == "key-7: 96% of 1.00000000 USD"


@pytest.mark.django_db
def test_critical_at_the_documented_share_or_the_limit(settings) -> None:
    settings.ORCHESTRATOR_BUDGET_CRITICAL_SHARE = "0.95"
    near = budget("near", "100.00")
    open_period(near, spent="90.00", reserved="4.99")  # 94.99 %
    assert states(sampled())[0] == ("", "budget_constrained", "")

    BudgetPeriod.objects.filter(budget=near).update(reserved_usd=Decimal("5.00"))  # 95 %
    assert states(sampled())[0] == ("", "budget_critical", "local")

    settings.ORCHESTRATOR_BUDGET_CRITICAL_SHARE = "1"
    assert states(sampled())[0] == ("", "budget_constrained", "")
    BudgetPeriod.objects.filter(budget=near).update(spent_usd=Decimal("95.00"))  # at the limit
    overall = sampled()[0]
    assert (overall.state, overall.reason) == (
        "budget_critical",
        "near: 100.00000000 of 100.00000000 USD",
    )


@pytest.mark.django_db
def test_a_tracking_only_budget_never_makes_the_overall_state_critical() -> None:
    tracked = budget("tracked", "1.00", hard_stop=False)
    open_period(tracked, spent="1.20")

    checks = sampled()

    assert states(checks) == [
        ("", "budget_constrained", ""),
        ("tracked", "budget_critical", ""),
    ]
    assert checks[0].reason == "tracked: 1.20000000 of 1.00000000 USD (tracking only)"


@pytest.mark.django_db
def test_scoped_budgets_alone_leave_the_overall_state_available() -> None:
    open_period(budget("key-3", "1.00", scope="api_key", api_key_id=3), spent="1.00")

    checks = sampled()

    assert states(checks) == [("", "budget_available", ""), ("key-3", "budget_critical", "")]
    assert checks[0].reason == "no global budget; 1 scoped budget(s) reported per target"


@pytest.mark.django_db
def test_only_the_open_period_counts_with_the_limit_it_holds() -> None:
    team = budget("team", "10.00")
    BudgetPeriod.objects.create(
        budget=team,
        starts_at=datetime(2020, 1, 1, tzinfo=UTC),
        ends_at=datetime(2020, 2, 1, tzinfo=UTC),
        limit_usd=Decimal("10.00"),
        spent_usd=Decimal("10.00"),
    )
    open_period(team, spent="3.00", limit="4.00")  # the limit was lowered after it opened

    [now] = budgets_now()

    assert (now.spent_usd, now.reserved_usd, now.limit_usd) == (
        Decimal("3.00"),
        Decimal("0"),
        Decimal("4.00"),
    )
    assert sampled()[0].reason == "team: 75% of 4.00000000 USD"


@pytest.fixture
def priced_models(db) -> dict[str, LLMModel]:
    local = Provider.objects.create(
        name="local", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", locality="local"
    )
    cloud = Provider.objects.create(
        name="cloud", kind="openai", base_url="http://127.0.0.1:9/v1", locality="cloud"
    )

    def model(provider: Provider, name: str, tier: str, price: str) -> LLMModel:
        return LLMModel.objects.create(
            provider=provider,
            name=name,
            tier=tier,
            context_window=32000,
            input_price_per_mtok_usd=Decimal(price),
            output_price_per_mtok_usd=Decimal(price),
        )

    return {
        "tiny": model(local, "tiny", "small_local", "0"),
        "gratis": model(cloud, "gratis", "standard", "0"),
        "mini": model(cloud, "mini", "standard", "0.15"),
        "big": model(cloud, "big", "premium", "2.50"),
    }


def publish_budget_and_connectivity() -> None:
    """Publish what the real budget agent reports now, beside an optimal connectivity state."""
    at = timezone.now().isoformat()
    checks = BudgetAgent(sampling._budget_reader()).check()
    entries = [
        {
            "agent": "budget",
            "target": c.target,
            "state": c.state,
            "ok": True,
            "reason": c.reason,
            "metrics": dict(c.metrics),
            "sampled_at": at,
        }
        for c in (checks if isinstance(checks, list) else [checks])
    ]
    entries.append(
        {
            "agent": "connectivity",
            "target": "",
            "state": "OPTIMAL",
            "ok": True,
            "reason": "",
            "metrics": {},
            "sampled_at": at,
        }
    )
    cache.set(sampling.SNAPSHOT_KEY, {"taken_at": at, "agents": entries})
    # As sampling does: this process reads the new snapshot at once, not after its 1 s memo.
    shared_forget()


@pytest.mark.django_db
def test_a_critical_budget_keeps_only_free_and_local_models(priced_models) -> None:
    team = budget("team", "1.00")
    publish_budget_and_connectivity()
    before = route_decide(prompt="hello", task_type="general", complexity="complex")
    assert before.policy_name == "builtin"
    assert [m.ref for m in before.chain] == [
        "cloud:big",
        "cloud:gratis",
        "cloud:mini",
        "local:tiny",
    ]

    # Real spend through the request path's services: 0.96 of 1.00 USD.
    held = budget_reserve(max_cost_usd=Decimal("0.96"))
    budget_settle(reservation=held, actual_cost_usd=Decimal("0.96"))
    assert BudgetPeriod.objects.get(budget=team).spent_usd == Decimal("0.96")
    publish_budget_and_connectivity()

    after = route_decide(prompt="hello", task_type="general", complexity="complex")

    assert [m.ref for m in after.chain] == ["cloud:gratis", "local:tiny"]
    skipped = {c["model"]: c["reason"] for c in after.trace["candidates"] if not c["kept"]}
    assert skipped == {
        "cloud:big": "budget budget_critical: free or local models only",
        "cloud:mini": "budget budget_critical: free or local models only",
    }
