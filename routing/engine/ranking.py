"""Which models a policy offers for a request, and in what order: the rule's models and the
tiers of the complexity (or of the learned router's rung), each checked for eligibility against
the request and the agents' states, balanced within a rung, and a conversation's sticky model
first. Pure helpers of `routing.engine.route.decide`, which writes what they return into the trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from routing.engine.values import (
    AgentSnapshot,
    BalanceSpec,
    JsonDict,
    ModelSpec,
    PolicySpec,
    RegistrySnapshot,
    RouteRequest,
    RuleSpec,
    Rung,
    RungOrder,
    StickyInfo,
    capability_missing,
)
from routing.router.ladder import complexity_for, rung_for, rung_thresholds, tier_order

DEFAULT_TIER_LADDER: dict[str, tuple[str, ...]] = {
    "simple": ("small_local", "large_local", "standard", "premium"),
    "moderate": ("large_local", "standard", "premium", "small_local"),
    "complex": ("premium", "standard", "large_local", "small_local"),
}
FILTER_ACTIONS = frozenset({"local_only", "cloud_only", "smaller_cloud_or_local", "free_only"})
# The reason a candidate's window is too small starts with this (read by `token_limit_exceeded`).
CONTEXT_REFUSAL = "context window"
IMAGES_REFUSAL = "does not accept images"


RungBalancer = Callable[[tuple[Rung, ...], BalanceSpec], Sequence[RungOrder]]
"""Orders the models of each rung by the policy's strategy (routing.guards.balancer): given to
`decide` by the caller, which owns the shared state (turns, latencies, breakers) it reads."""


def _rung_key(policy: PolicySpec, request: RouteRequest, model: ModelSpec) -> str:
    strong = request.task_type if request.task_type in model.task_strengths else "other"
    return f"{policy.name}/{model.tier}/{strong}"


def balanced_chain(
    chain: list[ModelSpec],
    sources: dict[int, str],
    request: RouteRequest,
    policy: PolicySpec,
    balance: RungBalancer,
) -> tuple[list[ModelSpec], tuple[tuple[Rung, RungOrder], ...]]:
    """The chain with each rung's models (those a tier brought, grouped by tier and by
    strength at the task; a rule's own models keep their places) in the balancer's order."""
    members: dict[str, list[ModelSpec]] = {}
    for model in chain:
        if sources[model.id].startswith("tier:"):
            members.setdefault(_rung_key(policy, request, model), []).append(model)
    rungs = tuple(
        Rung(key, tuple(m.ref for m in models))
        for key, models in members.items()
        if len(models) > 1
    )
    if not rungs:
        return chain, ()
    orders = tuple(zip(rungs, balance(rungs, policy.balance), strict=True))
    by_ref = {m.ref: m for m in chain}
    reordered = list(chain)
    for rung, order in orders:
        assert sorted(order.order) == sorted(rung.models), "a balancer only reorders"
        slots = [i for i, m in enumerate(reordered) if m.ref in rung.models]
        for slot, ref in zip(slots, order.order, strict=True):
            reordered[slot] = by_ref[ref]
    return reordered, orders


def balance_trace(policy: PolicySpec, orders: tuple[tuple[Rung, RungOrder], ...]) -> JsonDict:
    return {
        "strategy": policy.balance.strategy,
        "rungs": [{"rung": rung.key, **order.trace} for rung, order in orders],
    }


def pick_trace(
    chain: list[ModelSpec],
    sources: dict[int, str],
    orders: tuple[tuple[Rung, RungOrder], ...],
    policy: PolicySpec,
    sticky: StickyInfo | None,
) -> JsonDict | None:
    """Why the first model of the chain is the first: the strategy and its candidates."""
    if not chain:
        return None
    first = chain[0]
    if sticky is not None and sticky.kept:
        return {"model": first.ref, "by": "sticky", "among": [first.ref]}
    for rung, _ in orders:
        if first.ref in rung.models:
            return {"model": first.ref, "by": policy.balance.strategy, "among": list(rung.models)}
    source = sources.get(first.id, "")
    if source.startswith("tier:"):
        tier = [m.ref for m in chain if sources.get(m.id) == source]
        return {"model": first.ref, "by": f"{source} registry order", "among": tier}
    return {"model": first.ref, "by": source, "among": [first.ref]}


def rule_match(rules: tuple[RuleSpec, ...], task_type: str, complexity: str) -> RuleSpec | None:
    generic = None
    for rule in rules:
        if rule.task_type != task_type:
            continue
        if rule.complexity == complexity:
            return rule
        if not rule.complexity and generic is None:
            generic = rule
    return generic


def router_rung(
    request: RouteRequest, policy: PolicySpec
) -> tuple[JsonDict | None, tuple[str, ...]]:
    """The rung of the policy's ladder that the router's probability reaches, and the tiers to
    try from it (that rung, better rungs, then cheaper ones)."""
    verdict = request.router
    knob = policy.router
    if verdict is None or knob is None or request.override or request.fallback_chain:
        return None, ()
    thresholds = rung_thresholds(verdict.threshold, len(knob.ladder))
    rung = rung_for(verdict.probability, thresholds)
    return (
        {
            "mode": "learned",
            "version": verdict.version,
            "probability": verdict.probability,
            "threshold": verdict.threshold,
            "quality_target_pct": verdict.quality_target_pct,
            "ladder": list(knob.ladder),
            "rung_thresholds": list(thresholds),
            "rung": rung,
            "tier": knob.ladder[rung],
            "complexity": complexity_for(rung, len(knob.ladder)),
        },
        tier_order(knob.ladder, rung),
    )


def tiers_for(
    request: RouteRequest,
    policy: PolicySpec,
    rule: RuleSpec | None,
    ladder_tiers: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """A rule's own tiers win; then the router's ladder; then the complexity's tier ladder."""
    return (
        (rule.tiers if rule else ())
        or ladder_tiers
        or tuple(
            policy.tier_ladder.get(
                request.complexity, DEFAULT_TIER_LADDER.get(request.complexity, ())
            )
        )
    )


def candidates_for(
    request: RouteRequest,
    registry: RegistrySnapshot,
    rule: RuleSpec | None,
    tiers: tuple[str, ...],
) -> Iterator[tuple[ModelSpec, str]]:
    if rule is not None:
        if rule.primary_id is not None and rule.primary_id in registry.by_id:
            yield registry.by_id[rule.primary_id], "rule:primary"
        for fallback_id in rule.fallback_ids:
            if fallback_id in registry.by_id:
                yield registry.by_id[fallback_id], "rule:fallback"
    for tier in tiers:
        for model in registry.tier_for_task(tier, request.task_type):
            yield model, f"tier:{tier}"


def not_considered(
    registry: RegistrySnapshot, rule: RuleSpec | None, tiers: tuple[str, ...], seen: set[int]
) -> int:
    """Distinct candidates left out because the chain was full."""
    universe: set[int] = set()
    if rule is not None:
        ids = (rule.primary_id, *rule.fallback_ids)
        universe.update(i for i in ids if i is not None and i in registry.by_id)
    for tier in tiers:
        universe |= registry.tier_ids.get(tier, frozenset())
    return len(universe - seen)


EMBEDDING_ONLY = "embedding model: does not answer chat"


def ineligible_reason(
    model: ModelSpec,
    request: RouteRequest,
    snapshot: AgentSnapshot,
    actions: list[tuple[str, str]],
) -> str | None:
    if not model.enabled:
        return "disabled"
    if not model.answers_chat:
        return EMBEDDING_ONLY
    if request.images and not model.accepts_images:
        return IMAGES_REFUSAL
    lacking = capability_missing(model, request) if request.needs else None
    if lacking is not None:
        return lacking.refusal
    needed = request.prompt_tokens + request.max_output_tokens
    if needed > model.context_window:
        return f"{CONTEXT_REFUSAL} {model.context_window} < {needed} tokens needed"
    if not model.is_local:
        reach = snapshot.target_state("connectivity", model.provider_name)
        if reach == "DISCONNECTED":
            return f"provider {model.provider_name} DISCONNECTED"
    for action, why in actions:
        if action == "local_only" and not model.is_local:
            return f"{why}: local models only"
        if action == "cloud_only" and model.is_local:
            return f"{why}: cloud models only"
        if action == "smaller_cloud_or_local" and model.tier == "premium":
            return f"{why}: no premium models"
        if action == "free_only" and not model.is_free:
            return f"{why}: free or local models only"
    return None


def sticky_apply(
    previous_id: int,
    chain: list[ModelSpec],
    registry: RegistrySnapshot,
    ineligible: Callable[[ModelSpec], str | None],
) -> tuple[StickyInfo, list[ModelSpec]]:
    previous = registry.by_id.get(previous_id)
    if previous is None:
        return StickyInfo(previous_id, False, "model no longer in the registry"), chain
    reason = ineligible(previous)
    if reason is not None:
        return StickyInfo(previous_id, False, f"switched: {reason}"), chain
    rest = [m for m in chain if m.id != previous_id]
    return StickyInfo(previous_id, True, "conversation keeps its model"), [previous, *rest]
