"""The routing decision of an embeddings request: only embedding models (those with
`embedding_dimensions`) answer it. A named model must be one; otherwise the enabled embedding
models are ranked free first, then by input price. The chain never mixes vector lengths: the
models after the first are only those of the first's `embedding_dimensions`, so a fallback never
hands a client vectors of another length than the ones it stored. (Vectors of two different
models are not comparable even at the same length; docs/providers.md says how to configure
fallbacks that keep them so.) A request kept on local models (its key, its own flag) only
reaches local embedding models."""

from __future__ import annotations

from decimal import Decimal

from routing.engine.values import (
    JsonDict,
    ModelSpec,
    ModelUnavailable,
    PrivacyRefused,
    RegistrySnapshot,
    RouteDecision,
    RoutingError,
    UnknownModel,
)

EMBEDDING_TASK = "embedding"


def _price(model: ModelSpec) -> tuple[bool, Decimal]:
    price = model.input_price_per_mtok_usd
    if model.is_local:
        return (False, Decimal(0))
    return (price is None, price if price is not None else Decimal(0))


def _reason(model: ModelSpec, local_only: tuple[str, ...], dimensions: int | None) -> str:
    if not model.enabled:
        return "disabled"
    if local_only and not model.is_local:
        return "local models only"
    size = model.embedding_dimensions or 0
    if dimensions is not None and dimensions > size:
        return f"dimensions: {dimensions} > its {size}"
    return ""


def embedding_decide(
    *,
    registry: RegistrySnapshot,
    override: str | None,
    prompt_tokens: int,
    inputs: int,
    dimensions: int | None = None,
    local_only: tuple[str, ...] = (),
    privacy_triggered: tuple[str, ...] = (),
) -> RouteDecision:
    """The chain of embedding models for a request of `inputs` texts (`prompt_tokens` in all).
    `local_only` names who keeps it on local models (the key, the request);
    `privacy_triggered`, the privacy agent's detectors that fired on its texts, keeps it there
    too. Raises RoutingError for a named model that does not embed or cannot give
    `dimensions`, ModelUnavailable for a disabled one, PrivacyRefused when no local model may
    answer."""
    trace: JsonDict = {
        "version": 1,
        "policy": EMBEDDING_TASK,
        "request": {
            "task_type": EMBEDDING_TASK,
            "complexity": "",
            "prompt_tokens": prompt_tokens,
            "max_output_tokens": 0,
            "override": override,
            "inputs": inputs,
            "dimensions": dimensions,
        },
    }
    if local_only or privacy_triggered:
        # Which detectors fired and who asked; never the text that made them fire.
        trace["privacy"] = {
            "triggered": list(privacy_triggered),
            "local_only": list(local_only),
            "action": "local_only",
        }
        local_only = (*local_only, *(("privacy",) if privacy_triggered else ()))
    candidates: list[JsonDict] = []
    if override is not None:
        model = registry.by_ref.get(override)
        if model is None:
            raise UnknownModel(
                f"unknown model {override!r}; expected provider:model of a registered model",
                model=override,
            )
        if model.embedding_dimensions is None:
            raise RoutingError(
                f"{override!r} is not an embedding model (it has no embedding_dimensions)",
                field="model",
            )
        reason = _reason(model, local_only, dimensions)
        decision = _decision((), trace, override=True)
        if reason == "disabled":
            raise ModelUnavailable(decision, model=override, reason="disabled")
        if reason == "local models only":
            raise PrivacyRefused(
                decision,
                message=f"the request is kept on local models, and {override!r} is not local",
            )
        if reason:
            raise RoutingError(
                f"{override!r} embeds into {model.embedding_dimensions} dimensions; "
                f"dimensions must be at most that",
                field="dimensions",
            )
        ranked = [model]
        source = "override"
    else:
        ranked = sorted(
            (m for m in registry.models if m.embedding_dimensions is not None), key=_price
        )
        source = "embedding models"
    chain: list[ModelSpec] = []
    for model in ranked:
        reason = _reason(model, local_only, dimensions)
        if not reason and chain and model.embedding_dimensions != chain[0].embedding_dimensions:
            reason = f"dimensions: {model.embedding_dimensions} != {chain[0].embedding_dimensions}"
        candidates.append(
            {
                "model": model.ref,
                "id": model.id,
                "source": source,
                "kept": not reason,
                "reason": reason,
            }
        )
        if not reason:
            chain.append(model)
    trace["candidates"] = candidates
    trace["chain"] = [m.ref for m in chain]
    trace["outcome"] = "override" if override else ("routed" if chain else "no embedding model")
    if local_only and not chain and any(m.embedding_dimensions for m in registry.models):
        raise PrivacyRefused(
            _decision((), trace, override=override is not None),
            message="the request is kept on local models, and no enabled local embedding model "
            "can answer it",
        )
    if not chain and dimensions is not None:
        # Enabled embedding models exist, and every one is too short: the caller's `dimensions`
        # is what no retry can fix, refused as a field (400) rather than as unavailability.
        sizes = [
            m.embedding_dimensions or 0
            for m in ranked
            if not _reason(m, local_only, None) and m.embedding_dimensions is not None
        ]
        if sizes and max(sizes) < dimensions:
            raise RoutingError(
                f"no enabled embedding model gives {dimensions} dimensions (the most is "
                f"{max(sizes)})",
                field="dimensions",
            )
    blocked = "" if chain else "no enabled embedding model fits this request"
    return _decision(tuple(chain), trace, override=override is not None, blocked=blocked)


def _decision(
    chain: tuple[ModelSpec, ...], trace: JsonDict, *, override: bool, blocked: str = ""
) -> RouteDecision:
    return RouteDecision(
        chain=chain,
        task_type=EMBEDDING_TASK,
        complexity="",
        policy_name=EMBEDDING_TASK,
        override=override,
        sticky=None,
        trace=trace,
        blocked_reason=blocked,
    )
