"""The refusal of a request too long for any model that could answer it: read from a decision
already made (its trace and chain) and the registry, after `decide`, so that every door answers
TOKEN_LIMIT_EXCEEDED with the needed and the largest available window instead of a bare empty
chain. Pure, like the rest of the engine.
"""

from __future__ import annotations

from routing.engine.ranking import CONTEXT_REFUSAL
from routing.engine.values import RegistrySnapshot, RouteDecision, TokenLimitExceeded


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
