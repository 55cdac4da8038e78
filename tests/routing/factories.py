"""A small registry and the balanced-like policy used by the engine tests and the benchmark."""

from __future__ import annotations

from decimal import Decimal

from routing.engine import DEFAULT_TIER_LADDER
from routing.engine.values import (
    AgentSnapshot,
    AgentState,
    ModelSpec,
    PolicySpec,
    RegistrySnapshot,
    RuleSpec,
    StateRuleSpec,
)


def spec(
    id: int,
    ref: str,
    tier: str,
    *,
    price: str | None,
    ctx: int,
    strengths: tuple[str, ...] = (),
    enabled: bool = True,
) -> ModelSpec:
    provider, name = ref.split(":")
    local = provider == "local"
    p = Decimal(price) if price is not None else None
    return ModelSpec(
        id=id,
        provider_name=provider,
        provider_kind="openai_compatible" if local else provider,
        name=name,
        locality="local" if local else "cloud",
        tier=tier,
        input_price_per_mtok_usd=p,
        output_price_per_mtok_usd=p * 4 if p is not None else None,
        cached_input_price_per_mtok_usd=None,
        context_window=ctx,
        max_output_tokens=4096,
        task_strengths=strengths,
        enabled=enabled,
    )


TINY = spec(1, "local:tiny", "small_local", price="0", ctx=2048, strengths=("simple", "general"))
BIG = spec(2, "local:big", "large_local", price="0", ctx=32768, strengths=("code",))
MINI = spec(3, "openai:mini", "standard", price="0.15", ctx=128000, strengths=("simple",))
GPT4O = spec(4, "openai:gpt-4o", "premium", price="2.50", ctx=128000, strengths=("code",))
SONNET = spec(
    5, "anthropic:sonnet", "premium", price="3.00", ctx=200000, strengths=("long_context",)
)
FLASH = spec(
    6, "gemini:flash", "standard", price="0.30", ctx=1048576, strengths=("long_context", "research")
)
OFF = spec(7, "openai:off", "standard", price="0.10", ctx=128000, enabled=False)

REGISTRY = RegistrySnapshot.build((TINY, BIG, MINI, GPT4O, SONNET, FLASH, OFF))

STATE_RULES = (
    StateRuleSpec("resources", "CRITICAL", "prefer_cloud"),
    StateRuleSpec("connectivity", "DISCONNECTED", "local_only"),
    StateRuleSpec("connectivity", "DEGRADED", "smaller_cloud_or_local"),
    StateRuleSpec("budget", "budget_critical", "free_only"),
)
POLICY = PolicySpec(
    name="balanced",
    tier_ladder=DEFAULT_TIER_LADDER,
    rules=(
        RuleSpec("code", "", primary_id=GPT4O.id, fallback_ids=(SONNET.id,)),
        RuleSpec("code", "simple", primary_id=BIG.id),
        RuleSpec("research", "", primary_id=None, tiers=("standard", "premium")),
    ),
    state_rules=STATE_RULES,
)


def snapshot(
    resources: str = "AVAILABLE",
    connectivity: str = "OPTIMAL",
    budget: str = "no_budget",
    targets: dict[str, str] | None = None,
) -> AgentSnapshot:
    states = [
        AgentState("resources", resources),
        AgentState("connectivity", connectivity),
        AgentState("budget", budget),
    ]
    states += [AgentState("connectivity", s, target=t) for t, s in (targets or {}).items()]
    return AgentSnapshot(tuple(states), taken_at="2026-01-01T00:00:00+00:00")
