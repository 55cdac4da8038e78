from __future__ import annotations

import json
from dataclasses import replace

import pytest

from routing.engine import RungBalancer, decide
from routing.engine.values import (
    AgentSnapshot,
    AgentState,
    BalanceSpec,
    RegistrySnapshot,
    RouteRequest,
    RoutingError,
    RuleSpec,
    Rung,
    RungOrder,
    StateRuleSpec,
)
from tests.routing.factories import BIG, GPT4O, MINI, POLICY, REGISTRY, TINY, snapshot


def request(task: str, complexity: str, tokens: int = 100, **kw: object) -> RouteRequest:
    return RouteRequest(task_type=task, complexity=complexity, prompt_tokens=tokens, **kw)  # type: ignore[arg-type]


CASES = [
    # id, task, complexity, tokens, snapshot, expected chain, expected rule, not_considered
    (
        "ladder-simple",
        "general",
        "simple",
        100,
        snapshot(),
        ["local:tiny", "local:big", "openai:mini", "gemini:flash", "openai:gpt-4o"],
        None,
        1,
    ),
    (
        "rule-primary-then-ladder",
        "code",
        "moderate",
        100,
        snapshot(),
        ["openai:gpt-4o", "anthropic:sonnet", "local:big", "openai:mini", "gemini:flash"],
        "code/*",
        1,
    ),
    (
        "rule-exact-complexity-wins",
        "code",
        "simple",
        100,
        snapshot(),
        ["local:big", "local:tiny", "openai:mini", "gemini:flash", "openai:gpt-4o"],
        "code/simple",
        1,
    ),
    (
        "ladder-complex-premium-first",
        "general",
        "complex",
        100,
        snapshot(),
        ["openai:gpt-4o", "anthropic:sonnet", "openai:mini", "gemini:flash", "local:big"],
        None,
        1,
    ),
    (
        "rule-tiers",
        "research",
        "moderate",
        100,
        snapshot(),
        ["gemini:flash", "openai:mini", "openai:gpt-4o", "anthropic:sonnet"],
        "research/*",
        0,
    ),
    (
        "disconnected-local-only",
        "code",
        "moderate",
        100,
        snapshot(connectivity="DISCONNECTED"),
        ["local:big", "local:tiny"],
        "code/*",
        0,
    ),
    (
        "degraded-no-premium",
        "code",
        "moderate",
        100,
        snapshot(connectivity="DEGRADED"),
        ["local:big", "openai:mini", "gemini:flash", "local:tiny"],
        "code/*",
        0,
    ),
    (
        "resources-critical-prefers-cloud",
        "general",
        "simple",
        100,
        snapshot(resources="CRITICAL"),
        ["openai:mini", "gemini:flash", "openai:gpt-4o", "local:tiny", "local:big"],
        None,
        1,
    ),
    (
        "budget-critical-free-only-leaves-nothing",
        "research",
        "complex",
        100,
        snapshot(budget="budget_critical"),
        [],
        "research/*",
        0,
    ),
    (
        "budget-critical-free-only-keeps-local",
        "general",
        "moderate",
        100,
        snapshot(budget="budget_critical"),
        ["local:big", "local:tiny"],
        None,
        0,
    ),
    (
        "one-provider-disconnected",
        "code",
        "moderate",
        100,
        snapshot(targets={"openai": "DISCONNECTED"}),
        ["anthropic:sonnet", "local:big", "gemini:flash", "local:tiny"],
        "code/*",
        0,
    ),
    (
        "context-window-fit",
        "long_context",
        "complex",
        150_000,
        snapshot(),
        ["anthropic:sonnet", "gemini:flash"],
        None,
        0,
    ),
    (
        "unknown-states-match-no-rule",
        "code",
        "moderate",
        100,
        snapshot("unknown", "unknown", "unknown"),
        ["openai:gpt-4o", "anthropic:sonnet", "local:big", "openai:mini", "gemini:flash"],
        "code/*",
        1,
    ),
]


@pytest.mark.parametrize(
    ("task", "complexity", "tokens", "snap", "chain", "rule", "not_considered"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide_chains(task, complexity, tokens, snap, chain, rule, not_considered):
    decision = decide(request(task, complexity, tokens), POLICY, snap, REGISTRY)

    assert [m.ref for m in decision.chain] == chain
    assert decision.trace["chain"] == chain
    assert decision.trace["rule"] == rule
    assert decision.trace["not_considered"] == not_considered
    assert decision.blocked_reason == ("" if chain else "no eligible model")
    assert decision.override is False
    kept = [c["model"] for c in decision.trace["candidates"] if c["kept"]]
    assert sorted(kept) == sorted(chain)


def test_trace_records_every_skip_with_its_reason():
    decision = decide(
        request("code", "moderate"), POLICY, snapshot(connectivity="DISCONNECTED"), REGISTRY
    )

    assert decision.trace["candidates"] == [
        {
            "model": "openai:gpt-4o",
            "id": 4,
            "source": "rule:primary",
            "kept": False,
            "reason": "connectivity DISCONNECTED: local models only",
        },
        {
            "model": "anthropic:sonnet",
            "id": 5,
            "source": "rule:fallback",
            "kept": False,
            "reason": "connectivity DISCONNECTED: local models only",
        },
        {"model": "local:big", "id": 2, "source": "tier:large_local", "kept": True, "reason": ""},
        {
            "model": "openai:off",
            "id": 7,
            "source": "tier:standard",
            "kept": False,
            "reason": "disabled",
        },
        {
            "model": "openai:mini",
            "id": 3,
            "source": "tier:standard",
            "kept": False,
            "reason": "connectivity DISCONNECTED: local models only",
        },
        {
            "model": "gemini:flash",
            "id": 6,
            "source": "tier:standard",
            "kept": False,
            "reason": "connectivity DISCONNECTED: local models only",
        },
        {"model": "local:tiny", "id": 1, "source": "tier:small_local", "kept": True, "reason": ""},
    ]
    assert decision.trace["state_rules"] == [
        {
            "agent": "resources",
            "state": "CRITICAL",
            "action": "prefer_cloud",
            "observed": "AVAILABLE",
            "matched": False,
        },
        {
            "agent": "connectivity",
            "state": "DISCONNECTED",
            "action": "local_only",
            "observed": "DISCONNECTED",
            "matched": True,
        },
        {
            "agent": "connectivity",
            "state": "DEGRADED",
            "action": "smaller_cloud_or_local",
            "observed": "DISCONNECTED",
            "matched": False,
        },
        {
            "agent": "budget",
            "state": "budget_critical",
            "action": "free_only",
            "observed": "no_budget",
            "matched": False,
        },
    ]
    assert decision.trace["agents"][1] == {
        "agent": "connectivity",
        "target": "",
        "state": "DISCONNECTED",
        "reason": "",
        "metrics": {},
        "proceed": True,
        "recommend": "",
        "source": "sampled",
    }


def test_context_skip_reason_names_window_and_need():
    decision = decide(request("long_context", "complex", 150_000), POLICY, snapshot(), REGISTRY)

    reasons = {c["model"]: c["reason"] for c in decision.trace["candidates"]}
    assert reasons["openai:gpt-4o"] == "context window 128000 < 150000 tokens needed"
    assert reasons["local:tiny"] == "context window 2048 < 150000 tokens needed"


def test_max_output_tokens_count_towards_context_fit():
    decision = decide(
        request("general", "simple", 1500, max_output_tokens=600), POLICY, snapshot(), REGISTRY
    )

    assert decision.chain[0] == BIG
    assert decision.trace["candidates"][0]["reason"] == "context window 2048 < 2100 tokens needed"


@pytest.mark.parametrize("snap", [snapshot(), snapshot(connectivity="DISCONNECTED")])
def test_override_bypasses_routing_but_is_recorded(snap):
    decision = decide(request("simple", "simple", override="openai:gpt-4o"), POLICY, snap, REGISTRY)

    assert decision.chain == (GPT4O,)
    assert decision.override is True
    assert decision.trace["override"] == {"model": "openai:gpt-4o", "context_fits": True}
    assert decision.trace["outcome"] == "override"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("openai:gpt-5", "unknown model 'openai:gpt-5'"),
        ("gpt-4o", "unknown model 'gpt-4o'"),
        # A disabled model is ModelUnavailable (tests/routing/test_requested_chain.py).
        ("openai:off", "model 'openai:off' is unavailable: model disabled"),
    ],
)
def test_override_of_unknown_or_disabled_model_is_refused(ref, message):
    with pytest.raises(RoutingError, match=message):
        decide(request("code", "simple", override=ref), POLICY, snapshot(), REGISTRY)


STICKY_CASES = [
    (
        "kept-moves-to-front",
        BIG.id,
        "general",
        "simple",
        100,
        snapshot(),
        ["local:big", "local:tiny", "openai:mini", "gemini:flash", "openai:gpt-4o"],
        {"previous_model_id": 2, "kept": True, "reason": "conversation keeps its model"},
    ),
    (
        "kept-although-not-a-candidate",
        GPT4O.id,
        "general",
        "simple",
        100,
        snapshot(budget="budget_available"),
        ["openai:gpt-4o", "local:tiny", "local:big", "openai:mini", "gemini:flash"],
        {"previous_model_id": 4, "kept": True, "reason": "conversation keeps its model"},
    ),
    (
        "switched-when-offline",
        GPT4O.id,
        "general",
        "simple",
        100,
        snapshot(connectivity="DISCONNECTED"),
        ["local:tiny", "local:big"],
        {
            "previous_model_id": 4,
            "kept": False,
            "reason": "switched: connectivity DISCONNECTED: local models only",
        },
    ),
    (
        "switched-when-prompt-outgrows-window",
        TINY.id,
        "general",
        "simple",
        3000,
        snapshot(),
        ["local:big", "openai:mini", "gemini:flash", "openai:gpt-4o", "anthropic:sonnet"],
        {
            "previous_model_id": 1,
            "kept": False,
            "reason": "switched: context window 2048 < 3000 tokens needed",
        },
    ),
    (
        "model-removed",
        99,
        "general",
        "simple",
        100,
        snapshot(resources="CRITICAL"),
        ["openai:mini", "gemini:flash", "openai:gpt-4o", "local:tiny", "local:big"],
        {"previous_model_id": 99, "kept": False, "reason": "model no longer in the registry"},
    ),
]


@pytest.mark.parametrize(
    ("previous", "task", "complexity", "tokens", "snap", "chain", "sticky"),
    [c[1:] for c in STICKY_CASES],
    ids=[c[0] for c in STICKY_CASES],
)
def test_sticky_sessions(previous, task, complexity, tokens, snap, chain, sticky):
    decision = decide(
        request(task, complexity, tokens, sticky_model_id=previous), POLICY, snap, REGISTRY
    )

    assert [m.ref for m in decision.chain] == chain
    assert decision.trace["sticky"] == sticky
    assert decision.sticky is not None
    assert decision.sticky.kept is sticky["kept"]


def test_sticky_sessions_off_ignores_the_previous_model():
    policy = replace(POLICY, sticky_sessions=False)

    decision = decide(
        request("general", "simple", sticky_model_id=GPT4O.id), policy, snapshot(), REGISTRY
    )

    assert decision.chain[0] == TINY
    assert decision.sticky is None
    assert decision.trace["sticky"] is None


def test_override_beats_sticky_session():
    decision = decide(
        request("general", "simple", override="local:big", sticky_model_id=TINY.id),
        POLICY,
        snapshot(),
        REGISTRY,
    )

    assert decision.chain == (BIG,)
    assert decision.sticky is None


def test_block_rule_refuses_with_reason():
    policy = replace(
        POLICY, state_rules=(StateRuleSpec("quiet_hours", "closed", "block"), *POLICY.state_rules)
    )
    snap = AgentSnapshot((*snapshot().states, AgentState("quiet_hours", "closed")))

    decision = decide(request("general", "simple"), policy, snap, REGISTRY)

    assert decision.chain == ()
    assert decision.blocked_reason == "blocked: quiet_hours closed"
    assert decision.trace["outcome"] == "blocked by quiet_hours closed"


def test_trace_is_json_and_replays_identically():
    args = (
        request("code", "moderate", sticky_model_id=BIG.id),
        POLICY,
        snapshot(connectivity="DEGRADED", targets={"openai": "DEGRADED"}),
        REGISTRY,
    )

    first, second = decide(*args), decide(*args)

    assert first == second
    assert json.loads(json.dumps(first.trace)) == first.trace
    assert first.trace["request"] == {
        "task_type": "code",
        "complexity": "moderate",
        "prompt_tokens": 100,
        "max_output_tokens": 0,
        "override": None,
        "sticky_model_id": 2,
    }


def test_chain_limit_is_respected():
    decision = decide(
        request("general", "simple"), replace(POLICY, chain_limit=2), snapshot(), REGISTRY
    )

    assert [m.ref for m in decision.chain] == ["local:tiny", "local:big"]
    assert decision.trace["not_considered"] == 5


def reversing(calls: list[tuple[Rung, ...]]) -> RungBalancer:
    """A balancer that puts each rung's models in reverse order, recording what it was asked."""

    def balance(rungs: tuple[Rung, ...], spec: BalanceSpec) -> list[RungOrder]:
        calls.append(rungs)
        return [RungOrder(tuple(reversed(r.models)), {"picked": r.models[-1]}) for r in rungs]

    return balance


def test_a_balancing_policy_orders_each_rung_among_all_its_eligible_models() -> None:
    calls: list[tuple[Rung, ...]] = []
    policy = replace(POLICY, balance=BalanceSpec("round_robin"))

    decision = decide(request("general", "simple"), policy, snapshot(), REGISTRY, reversing(calls))

    # Asked once, for the two rungs of two models; sonnet, beyond the chain limit in the
    # registry's order, is the premium rung's pick.
    assert calls == [
        (
            Rung("balanced/standard/other", ("openai:mini", "gemini:flash")),
            Rung("balanced/premium/other", ("openai:gpt-4o", "anthropic:sonnet")),
        )
    ]
    assert [m.ref for m in decision.chain] == [
        "local:tiny",
        "local:big",
        "gemini:flash",
        "openai:mini",
        "anthropic:sonnet",
    ]
    assert decision.trace["balance"]["strategy"] == "round_robin"
    assert [r["rung"] for r in decision.trace["balance"]["rungs"]] == [
        "balanced/standard/other",
        "balanced/premium/other",
    ]
    assert decision.trace["pick"] == {
        "model": "local:tiny",
        "by": "tier:small_local registry order",
        "among": ["local:tiny"],
    }


def test_a_rules_own_models_keep_their_places_and_only_the_ladder_is_balanced() -> None:
    calls: list[tuple[Rung, ...]] = []
    policy = replace(POLICY, balance=BalanceSpec("least_latency"))

    decision = decide(request("code", "moderate"), policy, snapshot(), REGISTRY, reversing(calls))

    assert [m.ref for m in decision.chain] == [
        "openai:gpt-4o",
        "anthropic:sonnet",
        "local:big",
        "gemini:flash",
        "openai:mini",
    ]
    assert [[r.key for r in rungs] for rungs in calls] == [["balanced/standard/other"]]
    assert decision.trace["pick"] == {
        "model": "openai:gpt-4o",
        "by": "rule:primary",
        "among": ["openai:gpt-4o"],
    }


def test_models_strong_at_the_task_form_a_rung_of_their_own() -> None:
    calls: list[tuple[Rung, ...]] = []
    standard_only = RuleSpec("simple", "", primary_id=None, tiers=("standard",))
    policy = replace(POLICY, balance=BalanceSpec("round_robin"), rules=(standard_only,))
    strong = replace(MINI, id=8, name="mini-2", task_strengths=("simple",))
    registry = RegistrySnapshot.build((*REGISTRY.models, strong))

    decision = decide(request("simple", "moderate"), policy, snapshot(), registry, reversing(calls))

    # gemini:flash, not strong at "simple", is a rung of one: nothing to balance.
    assert calls == [(Rung("balanced/standard/simple", ("openai:mini", "openai:mini-2")),)]
    assert [m.ref for m in decision.chain] == ["openai:mini-2", "openai:mini", "gemini:flash"]
    assert decision.trace["pick"] == {
        "model": "openai:mini-2",
        "by": "round_robin",
        "among": ["openai:mini", "openai:mini-2"],
    }
