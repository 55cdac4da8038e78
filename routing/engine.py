"""The routing engine: a pure function from a request and the state of the world to a ranked
chain of models and the reasons for it. No I/O, no ORM, no clock: the same inputs replay to the
same decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from routing.decision import (
    AgentSnapshot,
    BalanceSpec,
    JsonDict,
    ModelSpec,
    ModelUnavailable,
    PolicySpec,
    PrivacyRefused,
    RegistrySnapshot,
    RouteDecision,
    RouteRequest,
    RoutingError,
    RuleSpec,
    Rung,
    RungOrder,
    StickyInfo,
    TokenLimitExceeded,
)
from routing.router.ladder import complexity_for, rung_for, rung_thresholds, tier_order

TRACE_VERSION = 1
DEFAULT_TIER_LADDER: dict[str, tuple[str, ...]] = {
    "simple": ("small_local", "large_local", "standard", "premium"),
    "moderate": ("large_local", "standard", "premium", "small_local"),
    "complex": ("premium", "standard", "large_local", "small_local"),
}
FILTER_ACTIONS = frozenset({"local_only", "cloud_only", "smaller_cloud_or_local", "free_only"})

RungBalancer = Callable[[tuple[Rung, ...], BalanceSpec], Sequence[RungOrder]]
"""Orders the models of each rung by the policy's strategy (routing.guards.balancer): given to
`decide` by the caller, which owns the shared state (turns, latencies, breakers) it reads."""


def decide(
    request: RouteRequest,
    policy: PolicySpec,
    snapshot: AgentSnapshot,
    registry: RegistrySnapshot,
    balance: RungBalancer | None = None,
) -> RouteDecision:
    """`balance` is asked once, for every rung of two or more eligible models, when the
    policy balances (`policy.balance`); without it the registry's order stands."""
    router_trace, ladder_tiers = _router_rung(request, policy)
    if router_trace is not None:
        request = replace(request, complexity=router_trace["complexity"])
    trace: JsonDict = {
        "version": TRACE_VERSION,
        "policy": policy.name,
        "request": {
            "task_type": request.task_type,
            "complexity": request.complexity,
            "prompt_tokens": request.prompt_tokens,
            "max_output_tokens": request.max_output_tokens,
            "override": request.override,
            "sticky_model_id": request.sticky_model_id,
        },
        "classification": dict(request.classification),
        "snapshot_taken_at": snapshot.taken_at,
        "agents": [state.as_json() for state in snapshot.states],
    }
    if router_trace is not None:
        trace["router"] = router_trace
    if request.private:
        # Which detectors fired and who asked; never the text that made them fire.
        trace["privacy"] = {
            "triggered": list(request.privacy_triggered),
            "local_only": list(request.local_only),
            "action": "local_only",
        }
    if request.fallback_chain:
        trace["request"]["fallback_chain"] = list(request.fallback_chain)
        return _requested(request, policy, registry, trace)
    if request.override:
        return _overridden(request, policy, registry, trace)

    actions: list[tuple[str, str]] = []
    if request.private:
        actions.append(("local_only", "privacy"))
    state_trace: list[JsonDict] = []
    for state_rule in policy.state_rules:
        observed = snapshot.overall(state_rule.agent)
        matched = observed == state_rule.state
        state_trace.append(
            {
                "agent": state_rule.agent,
                "state": state_rule.state,
                "action": state_rule.action,
                "observed": observed,
                "matched": matched,
            }
        )
        if matched:
            actions.append((state_rule.action, f"{state_rule.agent} {state_rule.state}"))
    trace["state_rules"] = state_trace

    rule = _match_rule(policy.rules, request.task_type, request.complexity)
    trace["rule"] = rule.label if rule else None
    blocked = next((why for action, why in actions if action == "block"), None)
    if blocked:
        trace.update(
            candidates=[],
            chain=[],
            sticky=None,
            balance=_balance_trace(policy, ()),
            pick=None,
            outcome=f"blocked by {blocked}",
        )
        return _decision((), request, policy, trace, None, f"blocked: {blocked}")

    def ineligible(model: ModelSpec) -> str | None:
        return _ineligible(model, request, snapshot, actions)

    chain: list[ModelSpec] = []
    seen: set[int] = set()
    sources: dict[int, str] = {}
    candidates: list[JsonDict] = []
    tiers = _tiers(request, policy, rule, ladder_tiers)
    # A balanced rung is chosen among all its eligible models, so none is cut off unseen.
    balancing = balance if policy.balance.strategy != "none" else None
    for model, source in _candidates(request, registry, rule, tiers):
        if model.id in seen:
            continue
        if balancing is None and len(chain) >= policy.chain_limit:
            break
        seen.add(model.id)
        reason = ineligible(model)
        candidates.append(
            {
                "model": model.ref,
                "id": model.id,
                "source": source,
                "kept": reason is None,
                "reason": reason or "",
            }
        )
        if reason is None:
            chain.append(model)
            sources[model.id] = source
    orders: tuple[tuple[Rung, RungOrder], ...] = ()
    if balancing is not None:
        chain, orders = _balanced(chain, sources, request, policy, balancing)
        chain = chain[: policy.chain_limit]
    trace["balance"] = _balance_trace(policy, orders)
    trace["candidates"] = candidates
    trace["not_considered"] = _not_considered(registry, rule, tiers, seen)

    preference = next(
        (a for a, _ in reversed(actions) if a in ("prefer_local", "prefer_cloud")), None
    )
    if preference == "prefer_local":
        chain.sort(key=lambda m: not m.is_local)
    elif preference == "prefer_cloud":
        chain.sort(key=lambda m: m.is_local)
    trace["preference"] = preference

    sticky = None
    if policy.sticky_sessions and request.sticky_model_id is not None:
        sticky, chain = _apply_sticky(request.sticky_model_id, chain, registry, ineligible)
        chain = chain[: policy.chain_limit]
    trace["sticky"] = (
        {
            "previous_model_id": sticky.previous_model_id,
            "kept": sticky.kept,
            "reason": sticky.reason,
        }
        if sticky
        else None
    )
    trace["chain"] = [m.ref for m in chain]
    trace["pick"] = _pick(chain, sources, orders, policy, sticky)
    trace["outcome"] = "routed" if chain else "no eligible model"
    if request.private and not chain:
        trace["outcome"] = "privacy: no local model"
        decision = _decision((), request, policy, trace, sticky, "privacy: no local model")
        raise PrivacyRefused(
            decision, message=f"{privacy_why(request)}, and no enabled local model can answer it"
        )
    return _decision(
        tuple(chain), request, policy, trace, sticky, "" if chain else "no eligible model"
    )


def _decision(
    chain: tuple[ModelSpec, ...],
    request: RouteRequest,
    policy: PolicySpec,
    trace: JsonDict,
    sticky: StickyInfo | None,
    blocked_reason: str,
    *,
    override: bool = False,
) -> RouteDecision:
    return RouteDecision(
        chain=chain,
        task_type=request.task_type,
        complexity=request.complexity,
        policy_name=policy.name,
        override=override,
        sticky=sticky,
        trace=trace,
        blocked_reason=blocked_reason,
    )


def _overridden(
    request: RouteRequest, policy: PolicySpec, registry: RegistrySnapshot, trace: JsonDict
) -> RouteDecision:
    ref = request.override or ""
    model = registry.by_ref.get(ref)
    if model is None:
        raise RoutingError(f"unknown model {ref!r}; expected provider:model of a registered model")
    if not model.enabled:
        raise _unavailable(model, "override", request, policy, trace)
    if request.private and not model.is_local:
        raise _privacy_refusal(model, "override", request, policy, trace)
    needed = request.prompt_tokens + request.max_output_tokens
    trace.update(
        state_rules=[],
        rule=None,
        candidates=[
            {"model": ref, "id": model.id, "source": "override", "kept": True, "reason": ""}
        ],
        sticky=None,
        balance=_balance_trace(policy, ()),
        pick={"model": ref, "by": "override", "among": [ref]},
        override={
            "model": ref,
            "context_fits": needed <= model.context_window,
        },
        chain=[ref],
        outcome="override",
    )
    return _decision((model,), request, policy, trace, None, "", override=True)


def disabled_reason(model: ModelSpec) -> str:
    """Why a disabled model cannot answer: its own switch or its provider's."""
    if not model.provider_enabled:
        return f"provider {model.provider_name} disabled"
    return "model disabled"


def _unavailable(
    model: ModelSpec,
    source: str,
    request: RouteRequest,
    policy: PolicySpec,
    trace: JsonDict,
    field: str | None = None,
) -> ModelUnavailable:
    """The refusal of a named model that is disabled, with the trace of the refused route."""
    reason = disabled_reason(model)
    candidates = list(trace.get("candidates") or [])
    candidates.append(
        {"model": model.ref, "id": model.id, "source": source, "kept": False, "reason": reason}
    )
    trace.update(
        state_rules=[],
        rule=None,
        candidates=candidates,
        sticky=None,
        balance=_balance_trace(policy, ()),
        pick=None,
        chain=[],
        outcome=f"unavailable: {model.ref} {reason}",
    )
    decision = _decision((), request, policy, trace, None, f"{model.ref} {reason}", override=True)
    return ModelUnavailable(decision, model=model.ref, reason=reason, field=field)


def _requested(
    request: RouteRequest, policy: PolicySpec, registry: RegistrySnapshot, trace: JsonDict
) -> RouteDecision:
    """The caller's own chain: the named model (if any), then `fallback_chain`, in its order.
    It bypasses routing as an override does; every entry must be a known, enabled model, and
    those whose window cannot hold the request are passed over (all of them: no chain)."""
    named: list[tuple[str, str, str | None]] = []
    if request.override:
        named.append((request.override, "request:model", None))
    named += [
        (ref, "request:fallback_chain", f"fallback_chain[{index}]")
        for index, ref in enumerate(request.fallback_chain)
    ]
    needed = request.prompt_tokens + request.max_output_tokens
    chain: list[ModelSpec] = []
    seen: set[int] = set()
    trace["candidates"] = []
    for ref, source, field in named:
        model = registry.by_ref.get(ref)
        where = f"{field}: " if field else ""
        if model is None:
            raise RoutingError(
                f"{where}unknown model {ref!r}; expected provider:model of a registered model",
                field=field,
            )
        if model.id in seen:
            raise RoutingError(f"{where}{ref!r} is already in the chain", field=field)
        seen.add(model.id)
        if not model.enabled:
            raise _unavailable(model, source, request, policy, trace, field)
        reason = ""
        if request.private and not model.is_local:
            reason = "privacy: local models only"
        elif needed > model.context_window:
            reason = f"{CONTEXT_REFUSAL} {model.context_window} < {needed} tokens needed"
        trace["candidates"].append(
            {"model": ref, "id": model.id, "source": source, "kept": not reason, "reason": reason}
        )
        if not reason:
            chain.append(model)
    refs = [m.ref for m in chain]
    trace.update(
        state_rules=[],
        rule=None,
        sticky=None,
        balance=_balance_trace(policy, ()),
        pick={"model": refs[0], "by": "request", "among": refs} if refs else None,
        requested_chain={"from": "request", "models": [ref for ref, _, _ in named]},
        chain=refs,
        outcome="requested chain" if chain else "no model of the requested chain fits",
    )
    blocked = "" if chain else "no model of the requested chain fits"
    if request.private and not any(registry.by_ref[ref].is_local for ref, _, _ in named):
        trace["outcome"] = "privacy: no local model in the requested chain"
        decision = _decision((), request, policy, trace, None, trace["outcome"], override=True)
        raise PrivacyRefused(
            decision,
            message=f"{privacy_why(request)}, and the requested chain names no local model",
        )
    return _decision(tuple(chain), request, policy, trace, None, blocked, override=True)


def privacy_why(request: RouteRequest) -> str:
    """Why a request must stay on local models, in words (no prompt text)."""
    reasons = []
    if request.privacy_triggered:
        reasons.append(f"the privacy agent found {', '.join(request.privacy_triggered)}")
    if "api_key" in request.local_only:
        reasons.append("the API key is local only")
    if "request" in request.local_only:
        reasons.append("the request asks for local models only")
    return "this request must stay on local models (" + "; ".join(reasons) + ")"


def _privacy_refusal(
    model: ModelSpec, source: str, request: RouteRequest, policy: PolicySpec, trace: JsonDict
) -> PrivacyRefused:
    """The refusal of a named cloud model for a request kept on local models."""
    trace.update(
        state_rules=[],
        rule=None,
        candidates=[
            {
                "model": model.ref,
                "id": model.id,
                "source": source,
                "kept": False,
                "reason": "privacy: local models only",
            }
        ],
        sticky=None,
        balance=_balance_trace(policy, ()),
        pick=None,
        chain=[],
        outcome=f"privacy: {model.ref} is a cloud model",
    )
    decision = _decision((), request, policy, trace, None, trace["outcome"], override=True)
    return PrivacyRefused(
        decision, message=f"{privacy_why(request)}, and {model.ref} is a cloud model"
    )


def _rung_key(policy: PolicySpec, request: RouteRequest, model: ModelSpec) -> str:
    strong = request.task_type if request.task_type in model.task_strengths else "other"
    return f"{policy.name}/{model.tier}/{strong}"


def _balanced(
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


def _balance_trace(policy: PolicySpec, orders: tuple[tuple[Rung, RungOrder], ...]) -> JsonDict:
    return {
        "strategy": policy.balance.strategy,
        "rungs": [{"rung": rung.key, **order.trace} for rung, order in orders],
    }


def _pick(
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


def _match_rule(rules: tuple[RuleSpec, ...], task_type: str, complexity: str) -> RuleSpec | None:
    generic = None
    for rule in rules:
        if rule.task_type != task_type:
            continue
        if rule.complexity == complexity:
            return rule
        if not rule.complexity and generic is None:
            generic = rule
    return generic


def _router_rung(
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


def _tiers(
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


def _candidates(
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


def _not_considered(
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


def _ineligible(
    model: ModelSpec,
    request: RouteRequest,
    snapshot: AgentSnapshot,
    actions: list[tuple[str, str]],
) -> str | None:
    if not model.enabled:
        return "disabled"
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


CONTEXT_REFUSAL = "context window"


def token_limit_exceeded(
    decision: RouteDecision, registry: RegistrySnapshot
) -> TokenLimitExceeded | None:
    """The refusal of a request that no window can hold, or None. A named model: its window is
    too small. Routed: the chain is empty only because every candidate was refused for its
    context window, and no enabled model's window is large enough either. Any other empty
    chain keeps its own reason."""
    asked = decision.trace.get("request", {})
    needed = int(asked.get("prompt_tokens", 0)) + int(asked.get("max_output_tokens", 0))
    requested = decision.trace.get("requested_chain")
    if requested is not None:
        # The caller's chain drops only the models whose window is too small.
        if decision.chain:
            return None
        windows = (registry.by_ref[ref].context_window for ref in requested["models"])
        return TokenLimitExceeded(
            decision,
            needed_tokens=needed,
            largest_window=max(windows, default=0),
            target="any model of the requested chain",
        )
    if decision.override and decision.chain:
        model = decision.chain[0]
        if needed <= model.context_window:
            return None
        return TokenLimitExceeded(
            decision, needed_tokens=needed, largest_window=model.context_window, target=model.ref
        )
    # A disabled model was never on offer; what counts is why the others were refused.
    reasons = [
        str(c.get("reason", ""))
        for c in decision.trace.get("candidates") or []
        if c.get("reason") != "disabled"
    ]
    if decision.chain or not reasons:
        return None
    if not all(reason.startswith(CONTEXT_REFUSAL) for reason in reasons):
        return None
    largest = max((m.context_window for m in registry.models if m.enabled), default=0)
    if needed <= largest:
        return None
    return TokenLimitExceeded(
        decision, needed_tokens=needed, largest_window=largest, target="any enabled model"
    )


def _apply_sticky(
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
