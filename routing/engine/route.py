"""The routing decision: `decide` turns a request, a policy, the agents' snapshot and the
registry into a ranked chain of models and a trace that says why. A model the caller names (an
override, or its own fallback chain) bypasses the policy here; otherwise the policy's state
rules and task rules pick the candidates (`routing.engine.ranking`). Refusals (a disabled named
model, a request kept on local models with none to answer it) are raised with their trace.
"""

from __future__ import annotations

from dataclasses import replace

from routing.engine.ranking import (
    CONTEXT_REFUSAL,
    EMBEDDING_ONLY,
    IMAGES_REFUSAL,
    RungBalancer,
    balance_trace,
    balanced_chain,
    candidates_for,
    ineligible_reason,
    not_considered,
    pick_trace,
    router_rung,
    rule_match,
    sticky_apply,
    tiers_for,
)
from routing.engine.values import (
    CAPABILITIES,
    UNKNOWN,
    AgentBlocked,
    AgentSnapshot,
    Capability,
    CapabilityRefused,
    ImagesRefused,
    JsonDict,
    ModelSpec,
    ModelUnavailable,
    PolicySpec,
    PrivacyRefused,
    RegistrySnapshot,
    RouteDecision,
    RouteRequest,
    RoutingError,
    Rung,
    RungOrder,
    StickyInfo,
    UnknownModel,
    capability_missing,
)

TRACE_VERSION = 1


def decide(
    request: RouteRequest,
    policy: PolicySpec,
    snapshot: AgentSnapshot,
    registry: RegistrySnapshot,
    balance: RungBalancer | None = None,
) -> RouteDecision:
    """`balance` is asked once, for every rung of two or more eligible models, when the
    policy balances (`policy.balance`); without it the registry's order stands."""
    router_trace, ladder_tiers = router_rung(request, policy)
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
    if request.images:
        trace["request"]["images"] = request.images
    if request.needs:
        trace["request"]["needs"] = list(request.needs)
    if request.private:
        # Which detectors fired and who asked; never the text that made them fire.
        trace["privacy"] = {
            "triggered": list(request.privacy_triggered),
            "local_only": list(request.local_only),
            "action": "local_only",
        }
    _refuse_if_blocked(request, policy, snapshot, trace)
    if request.fallback_chain:
        trace["request"]["fallback_chain"] = list(request.fallback_chain)
        return _requested(request, policy, registry, trace)
    if request.override:
        return _overridden(request, policy, registry, trace)

    actions: list[tuple[str, str]] = []
    if request.private:
        actions.append(("local_only", "privacy"))
    # Recommendations first, so that a matched state rule's preference (appended after them)
    # wins; a request agent's (checked last) wins over a sampled one's.
    recommendations = sorted(
        (s for s in snapshot.states if not s.target and s.recommend),
        key=lambda s: s.source == "request",
    )
    trace["recommendations"] = [
        {"agent": s.agent, "recommend": s.recommend, "source": s.source} for s in recommendations
    ]
    for state in recommendations:
        actions.append((f"prefer_{state.recommend}", f"{state.agent} recommends {state.recommend}"))
    state_trace: list[JsonDict] = []
    for state_rule in policy.state_rules:
        found = snapshot.overall_of(state_rule.agent)
        matched = state_rule.matches(found)
        entry: JsonDict = {
            "agent": state_rule.agent,
            "state": state_rule.state,
            "action": state_rule.action,
            "observed": found.state if found else UNKNOWN,
            "matched": matched,
        }
        if state_rule.target:
            entry["target"] = state_rule.target
            entry["observed_target"] = found.recommend if found else ""
        state_trace.append(entry)
        if matched:
            what = " ".join(
                w
                for w in (state_rule.state, state_rule.target and (f"target {state_rule.target}"))
                if w
            )
            actions.append((state_rule.action, f"{state_rule.agent} {what}"))
    trace["state_rules"] = state_trace

    rule = rule_match(policy.rules, request.task_type, request.complexity)
    trace["rule"] = rule.label if rule else None
    blocked = next((why for action, why in actions if action == "block"), None)
    if blocked:
        trace.update(
            candidates=[],
            chain=[],
            sticky=None,
            balance=balance_trace(policy, ()),
            pick=None,
            outcome=f"blocked by {blocked}",
        )
        return _decision((), request, policy, trace, None, f"blocked: {blocked}")

    def ineligible(model: ModelSpec) -> str | None:
        return ineligible_reason(model, request, snapshot, actions)

    chain: list[ModelSpec] = []
    seen: set[int] = set()
    sources: dict[int, str] = {}
    candidates: list[JsonDict] = []
    tiers = tiers_for(request, policy, rule, ladder_tiers)
    # A balanced rung is chosen among all its eligible models, so none is cut off unseen.
    balancing = balance if policy.balance.strategy != "none" else None
    for model, source in candidates_for(request, registry, rule, tiers):
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
        chain, orders = balanced_chain(chain, sources, request, policy, balancing)
        chain = chain[: policy.chain_limit]
    trace["balance"] = balance_trace(policy, orders)
    trace["candidates"] = candidates
    trace["not_considered"] = not_considered(registry, rule, tiers, seen)

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
        sticky, chain = sticky_apply(request.sticky_model_id, chain, registry, ineligible)
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
    trace["pick"] = pick_trace(chain, sources, orders, policy, sticky)
    trace["outcome"] = "routed" if chain else "no eligible model"
    if request.images and not chain and not _any_reads_images(registry, request):
        trace["outcome"] = "images: no model accepts images"
        decision = _decision((), request, policy, trace, sticky, trace["outcome"])
        raise ImagesRefused(decision, message=f"{_images_why(request)}, and {_no_reader(request)}")
    lacking = None if chain else _capability_nowhere(registry, request)
    if lacking is not None:
        trace["outcome"] = f"{lacking.name}: no model {_capable(lacking)}"
        decision = _decision((), request, policy, trace, sticky, trace["outcome"])
        raise CapabilityRefused(
            decision,
            capability=lacking,
            message=f"{_needs_why(lacking)}, and {_no_capable(lacking, request)}",
        )
    if not chain and len(request.needs) > 1 and not _all_needs_somewhere(registry, request):
        first = CAPABILITIES[request.needs[0]]
        both = " and ".join(
            _capable(CAPABILITIES[n]).removeprefix("accepts ") for n in request.needs
        )
        trace["outcome"] = f"no model accepts {both} together"
        decision = _decision((), request, policy, trace, sticky, trace["outcome"])
        raise CapabilityRefused(
            decision,
            capability=first,
            message=f"{_needs_why(first)} and asks for a JSON answer (response_format), and no "
            f"enabled model accepts {both} together",
        )
    if request.private and not chain:
        trace["outcome"] = "privacy: no local model"
        decision = _decision((), request, policy, trace, sticky, "privacy: no local model")
        raise PrivacyRefused(
            decision, message=f"{privacy_why(request)}, and no enabled local model can answer it"
        )
    return _decision(
        tuple(chain), request, policy, trace, sticky, "" if chain else "no eligible model"
    )


def _refuse_if_blocked(
    request: RouteRequest, policy: PolicySpec, snapshot: AgentSnapshot, trace: JsonDict
) -> None:
    """Raise AgentBlocked when an agent's overall check says the request may not proceed:
    before anything else, a model the caller named included."""
    stop = next((s for s in snapshot.states if not s.target and not s.proceed), None)
    if stop is None:
        return
    trace.update(
        candidates=[],
        chain=[],
        sticky=None,
        pick=None,
        outcome=f"blocked by agent {stop.agent}",
    )
    decision = _decision((), request, policy, trace, None, f"blocked by agent {stop.agent}")
    raise AgentBlocked(decision, agent=stop.agent, state=stop.state, reason=stop.reason)


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
        raise UnknownModel(
            f"unknown model {ref!r}; expected provider:model of a registered model", model=ref
        )
    if not model.enabled:
        raise _unavailable(model, "override", request, policy, trace)
    if not model.answers_chat:
        raise RoutingError(f"{ref!r} is an {EMBEDDING_ONLY}; use /v1/embeddings", field="model")
    if request.private and not model.is_local:
        raise _privacy_refusal(model, "override", request, policy, trace)
    if request.images and not model.accepts_images:
        raise _images_refusal(model, "override", request, policy, trace)
    lacking = capability_missing(model, request)
    if lacking is not None:
        decision = _named_refused(
            model,
            "override",
            request,
            policy,
            trace,
            reason=lacking.refusal,
            outcome=f"{lacking.name}: {model.ref} {lacking.refusal}",
        )
        raise CapabilityRefused(
            decision,
            capability=lacking,
            message=f"{_needs_why(lacking)}, and {model.ref} {lacking.refusal}",
        )
    needed = request.prompt_tokens + request.max_output_tokens
    trace.update(
        state_rules=[],
        rule=None,
        candidates=[
            {"model": ref, "id": model.id, "source": "override", "kept": True, "reason": ""}
        ],
        sticky=None,
        balance=balance_trace(policy, ()),
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
        balance=balance_trace(policy, ()),
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
            raise UnknownModel(
                f"{where}unknown model {ref!r}; expected provider:model of a registered model",
                model=ref,
                field=field,
            )
        if model.id in seen:
            raise RoutingError(f"{where}{ref!r} is already in the chain", field=field)
        seen.add(model.id)
        if not model.enabled:
            raise _unavailable(model, source, request, policy, trace, field)
        if not model.answers_chat:
            raise RoutingError(
                f"{where}{ref!r} is an {EMBEDDING_ONLY}; use /v1/embeddings",
                field=field or "model",
            )
        reason = ""
        if request.private and not model.is_local:
            reason = "privacy: local models only"
        elif request.images and not model.accepts_images:
            reason = IMAGES_REFUSAL
        elif (lacking := capability_missing(model, request)) is not None:
            reason = lacking.refusal
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
        balance=balance_trace(policy, ()),
        pick={"model": refs[0], "by": "request", "among": refs} if refs else None,
        requested_chain={"from": "request", "models": [ref for ref, _, _ in named]},
        chain=refs,
        outcome="requested chain" if chain else "no model of the requested chain fits",
    )
    blocked = "" if chain else "no model of the requested chain fits"
    if request.images and not any(registry.by_ref[ref].accepts_images for ref, _, _ in named):
        trace["outcome"] = "images: no model of the requested chain accepts images"
        decision = _decision((), request, policy, trace, None, trace["outcome"], override=True)
        raise ImagesRefused(
            decision,
            message=f"{_images_why(request)}, and no model of the requested chain accepts images",
        )
    for name in request.needs:
        need = CAPABILITIES[name]
        if not any(getattr(registry.by_ref[ref], need.flag) for ref, _, _ in named):
            trace["outcome"] = f"{need.name}: no model of the requested chain {_capable(need)}"
            decision = _decision((), request, policy, trace, None, trace["outcome"], override=True)
            raise CapabilityRefused(
                decision,
                capability=need,
                message=f"{_needs_why(need)}, and no model of the requested chain {_capable(need)}",
            )
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


def _named_refused(
    model: ModelSpec,
    source: str,
    request: RouteRequest,
    policy: PolicySpec,
    trace: JsonDict,
    *,
    reason: str,
    outcome: str,
) -> RouteDecision:
    """The empty decision of a request whose named model cannot take it, `reason` recorded on
    the model's candidate and `outcome` on the trace."""
    trace.update(
        state_rules=[],
        rule=None,
        candidates=[
            {"model": model.ref, "id": model.id, "source": source, "kept": False, "reason": reason}
        ],
        sticky=None,
        balance=balance_trace(policy, ()),
        pick=None,
        chain=[],
        outcome=outcome,
    )
    return _decision((), request, policy, trace, None, outcome, override=True)


def _privacy_refusal(
    model: ModelSpec, source: str, request: RouteRequest, policy: PolicySpec, trace: JsonDict
) -> PrivacyRefused:
    """The refusal of a named cloud model for a request kept on local models."""
    decision = _named_refused(
        model,
        source,
        request,
        policy,
        trace,
        reason="privacy: local models only",
        outcome=f"privacy: {model.ref} is a cloud model",
    )
    return PrivacyRefused(
        decision, message=f"{privacy_why(request)}, and {model.ref} is a cloud model"
    )


def _images_why(request: RouteRequest) -> str:
    count = request.images
    return f"this request carries {count} image{'s' if count != 1 else ''}"


def _any_reads_images(registry: RegistrySnapshot, request: RouteRequest) -> bool:
    """Whether an enabled model that accepts images exists for this request (a private request
    needs a local one); when one does, an empty chain has another cause (its window, an agent)."""
    return any(
        m.enabled and m.accepts_images and (m.is_local or not request.private)
        for m in registry.models
    )


def _no_reader(request: RouteRequest) -> str:
    if request.private:
        return "no enabled local model accepts images"
    return "no enabled model accepts images (mark one that does in the admin: accepts images)"


def _images_refusal(
    model: ModelSpec, source: str, request: RouteRequest, policy: PolicySpec, trace: JsonDict
) -> ImagesRefused:
    """The refusal of a named model that does not read images, for a request that carries some."""
    decision = _named_refused(
        model,
        source,
        request,
        policy,
        trace,
        reason=IMAGES_REFUSAL,
        outcome=f"images: {model.ref} {IMAGES_REFUSAL}",
    )
    return ImagesRefused(
        decision, message=f"{_images_why(request)}, and {model.ref} {IMAGES_REFUSAL}"
    )


def _capable(capability: Capability) -> str:
    """ "accepts tools": what a model that has the capability is (the refusal's affirmative)."""
    return capability.refusal.removeprefix("does not ").replace("accept ", "accepts ")


def _needs_why(capability: Capability) -> str:
    if capability.name == "tools":
        return "this request uses tools (tools, tool_calls or tool messages)"
    return "this request asks for a JSON answer (response_format)"


def _capability_nowhere(registry: RegistrySnapshot, request: RouteRequest) -> Capability | None:
    """The first capability the request needs that no enabled model it may use has (a private
    request needs a local one); None when each has one, and an empty chain has another cause."""
    for name in request.needs:
        need = CAPABILITIES[name]
        if not any(
            m.enabled and getattr(m, need.flag) and (m.is_local or not request.private)
            for m in registry.models
        ):
            return need
    return None


def _all_needs_somewhere(registry: RegistrySnapshot, request: RouteRequest) -> bool:
    """Whether one enabled model the request may use has every capability it needs."""
    return any(
        m.enabled
        and (m.is_local or not request.private)
        and all(getattr(m, CAPABILITIES[n].flag) for n in request.needs)
        for m in registry.models
    )


def _no_capable(capability: Capability, request: RouteRequest) -> str:
    local = " local" if request.private else ""
    flag = capability.flag.replace("_", " ")
    return (
        f"no enabled{local} model {_capable(capability)} (mark one that does in the admin: {flag})"
    )
