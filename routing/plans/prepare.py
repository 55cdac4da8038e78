"""Everything a plan by parts decides before any model is called, in one worker-thread call:
whether the request needs a plan at all, the model the parts go to, the parts, the reduce tree,
and the plan's refusal when it cannot fit the caller's budgets or rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from functools import partial
from typing import Any

from providers.adapters.types import Message
from routing.budgets.amounts import usd_quantize
from routing.config.cache import ConfigSnapshot, routing_config_get
from routing.engine.tokens import estimate_tokens, plan_tokens, window_usable
from routing.engine.values import ModelSpec, RouteDecision, RoutingError
from routing.pipeline.admission import agent_context, local_only_of, resolve_chain, resolve_target
from routing.pipeline.events import GatewayRequest
from routing.pipeline.ledger import max_cost
from routing.pipeline.route import route_decide
from routing.plans.shape import (
    OVERLAP_TOKENS,
    PART_OUTPUT_TOKENS,
    PlanImpossible,
    PlanShape,
    ReduceStep,
    plan_shape,
)
from routing.plans.split import Part, document_split

PLAN_TASK_TYPE = "long_context"
FRAMING_TOKENS = 64
"""What the plan's own words around a part or the partial answers may take."""


def document_message(document: str) -> Message:
    """The document as the native API injects a string `context`."""
    return Message(role="system", content=f"Context:\n{document}")


def with_document(request: GatewayRequest, document: str) -> tuple[Message, ...]:
    """`request`'s messages with the document after its leading system messages."""
    messages = list(request.messages)
    at = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    messages.insert(at, document_message(document))
    return tuple(messages)


def largest_window(config: ConfigSnapshot, request: GatewayRequest) -> int:
    """The largest window that could answer `request` as one call: the named model's, else the
    largest enabled model's (a local one when the request is kept on local models)."""
    try:
        _, override = resolve_target(config, request.model)
    except RoutingError:
        return 0
    if override is not None:
        named = config.registry.by_ref.get(override)
        return named.context_window if named is not None else 0
    local = bool(local_only_of(request))
    return max(
        (
            m.context_window
            for m in config.registry.models
            if m.enabled and (m.is_local or not local)
        ),
        default=0,
    )


def plan_needed(request: GatewayRequest, document: str) -> bool:
    """Whether no model could take the request with its document in one call, by the routing
    estimate (the same count that would refuse it with TOKEN_LIMIT_EXCEEDED)."""
    prompt = "\n".join(m.content for m in request.messages if m.role != "assistant")
    needed = (
        estimate_tokens(prompt)
        + estimate_tokens(document_message(document).content)
        + (request.max_tokens or 0)
    )
    return needed > largest_window(routing_config_get(), request)


def request_fits(request: GatewayRequest) -> bool:
    """Whether some model could take `request` (its messages as they are) in one call, by the
    same routing estimate as `plan_needed`."""
    prompt = "\n".join(m.content for m in request.messages if m.role != "assistant")
    needed = estimate_tokens(prompt) + (request.max_tokens or 0)
    return needed <= largest_window(routing_config_get(), request)


@dataclass(frozen=True)
class PlanReady:
    """A plan that may run: its route, parts, reduce tree and what it may cost at most."""

    decision: RouteDecision
    config: ConfigSnapshot
    model: ModelSpec
    shape: PlanShape
    parts: tuple[Part, ...]
    steps: tuple[ReduceStep, ...]
    max_cost_usd: Decimal | None
    max_tokens: int
    """The most tokens (read and written) all its calls may use together."""

    @property
    def calls(self) -> int:
        return len(self.parts) + len(self.steps)


@dataclass(frozen=True)
class PlanRefused:
    code: str
    message: str
    details: dict[str, Any]
    decision: RouteDecision | None = None


def _instructions(request: GatewayRequest) -> str:
    return "\n".join(m.content for m in request.messages if m.role != "assistant")


def plan_prepare(request: GatewayRequest, document: str) -> PlanReady | PlanRefused | None:
    """The plan for `request` (its messages without the document), or its refusal; None when no
    plan can be made for it (no model routed, a window too small even for one part): the request
    then runs whole and is refused as any request too long for every model is."""
    config = routing_config_get()
    instructions = _instructions(request)
    output_tokens = request.max_tokens or PART_OUTPUT_TOKENS
    try:
        policy_name, override = resolve_target(config, request.model)
        decision = route_decide(
            prompt=instructions,
            task_type=request.task_type or PLAN_TASK_TYPE,
            override=override,
            fallback_chain=resolve_chain(config, request.fallback_chain),
            policy_name=policy_name,
            max_output_tokens=output_tokens,
            local_only=local_only_of(request),
            privacy_text=instructions,
            request_context=partial(agent_context, request, 0),
        )
    except RoutingError:
        return None
    if not decision.chain:
        return None
    model = decision.chain[0]
    kind = model.provider_kind
    try:
        shape = plan_shape(
            usable_window=window_usable(model.context_window),
            instructions_tokens=plan_tokens(instructions, kind) + FRAMING_TOKENS,
            requested_output_tokens=request.max_tokens,
            model_max_output_tokens=model.max_output_tokens,
        )
    except PlanImpossible:
        return None
    parts = tuple(
        document_split(
            document,
            max_tokens=shape.part_tokens,
            overlap_tokens=OVERLAP_TOKENS,
            count=partial(plan_tokens, provider_kind=kind),
        )
    )
    steps = tuple(shape.reduce_steps(len(parts)))
    reads = [shape.instructions_tokens + part.tokens for part in parts]
    writes = [shape.part_output_tokens] * len(parts)
    for step in steps:
        reads.append(shape.reduce_prompt_tokens(len(step.inputs)))
        writes.append(shape.final_output_tokens if step.final else shape.part_output_tokens)
    costs = [
        max_cost(model, config, read, write) for read, write in zip(reads, writes, strict=True)
    ]
    total_cost: Decimal | None = None
    if all(cost is not None for cost in costs):
        # Rounded up to the budgets' places, as the hold itself is.
        total_cost = usd_quantize(
            sum((cost for cost in costs if cost is not None), Decimal(0)), rounding=ROUND_CEILING
        )
    ready = PlanReady(
        decision=decision,
        config=config,
        model=model,
        shape=shape,
        parts=parts,
        steps=steps,
        max_cost_usd=total_cost,
        max_tokens=sum(reads) + sum(writes),
    )
    return _rate_refusal(request, ready) or ready


def _rate_refusal(request: GatewayRequest, ready: PlanReady) -> PlanRefused | None:
    """The refusal of a plan that needs more calls or tokens than its API key may use in a
    minute: it could never run within the key's limits."""
    caller = request.caller
    figures: dict[str, Any] = {
        "parts": len(ready.parts),
        "calls": ready.calls,
        "max_tokens": ready.max_tokens,
        "rpm_limit": caller.rpm_limit,
        "tpm_limit": caller.tpm_limit,
    }
    if caller.rpm_limit and ready.calls > caller.rpm_limit:
        return PlanRefused(
            "PLAN_EXCEEDS_RATE_LIMIT",
            f"this document needs {ready.calls} model calls ({len(ready.parts)} parts and "
            f"{len(ready.steps)} combining steps), above the API key's {caller.rpm_limit} "
            "requests per minute",
            figures,
            ready.decision,
        )
    if caller.tpm_limit and ready.max_tokens > caller.tpm_limit:
        return PlanRefused(
            "PLAN_EXCEEDS_RATE_LIMIT",
            f"this document's {ready.calls} model calls may use up to {ready.max_tokens} "
            f"tokens, above the API key's {caller.tpm_limit} tokens per minute",
            figures,
            ready.decision,
        )
    return None
