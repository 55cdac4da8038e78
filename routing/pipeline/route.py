"""The decision service: the cached configuration, the published agent snapshot, the classifier
and the pure engine. Warm, it reads no table, and at most once a second two keys of the shared
cache (one round trip); a policy that balances a rung adds one round trip for the balancer's
turns, breakers and latencies (routing.guards.balancer)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from functools import cache as memoize
from importlib import import_module
from typing import Any

from django.core.cache import caches
from django.utils import timezone

from core.dependencies import REDIS_AWAY
from providers.adapters.types import IMAGE_TOKENS_ESTIMATE
from routing import conf
from routing.agents.context import request_agents_check
from routing.agents.context import request_context as agent_request_context
from routing.config.cache import routing_config_get, shared_read
from routing.engine import decide
from routing.engine.classify import HeuristicClassifier, PromptClassifier, estimate_tokens
from routing.engine.taxonomy import COMPLEXITIES, TASK_TYPES, task_type_resolve
from routing.engine.values import (
    BalanceSpec,
    PolicySpec,
    RouteDecision,
    RouteRequest,
    RouterVerdict,
    RoutingError,
    Rung,
    RungOrder,
)
from routing.guards.balancer import Balancer
from routing.privacy import privacy_scan
from routing.router.model import ArtifactError
from routing.router.store import active_router
from routing.sampling import agents_snapshot_current, background_sampling_ensure, request_agents

logger = logging.getLogger("routing.decisions")


@memoize
def _balancer() -> Balancer:
    # Its own cache backend object, as the other guards' (routing.pipeline.shared explains why).
    return Balancer(caches.create_connection("default"))


def rungs_balance(rungs: tuple[Rung, ...], spec: BalanceSpec) -> list[RungOrder]:
    """The engine's balancer: the shared turns, breakers and latencies. Fails open: without
    Redis each rung keeps the registry's order, and the trace says why."""
    try:
        return _balancer().rungs_order(rungs, spec)
    except REDIS_AWAY as exc:
        logger.warning("balancing skipped, Redis unreachable: %s", exc)
        why = f"shared state unreachable: {exc}"
        return [
            RungOrder(
                order=rung.models,
                trace={"strategy": spec.strategy, "candidates": list(rung.models), "error": why},
            )
            for rung in rungs
        ]


def latency_wanted(decision: RouteDecision) -> bool:
    """Whether the answer's latency steers the balancing of this decision's policy."""
    return bool((decision.trace.get("balance") or {}).get("strategy") == "least_latency")


def latency_record(*, model_ref: str, latency_ms: int) -> None:
    """A model's latency (time to first token of a first attempt), for least latency."""
    try:
        _balancer().record_latency(model_ref, latency_ms)
    except REDIS_AWAY as exc:  # fails open: the next answer measures it again
        logger.warning("latency not recorded, Redis unreachable: %s", exc)


@memoize
def _classifier(path: str) -> PromptClassifier:
    if not path:
        return HeuristicClassifier()
    module_name, _, attr = path.rpartition(".")
    classifier: PromptClassifier = getattr(import_module(module_name), attr)()
    return classifier


def route_decide(
    *,
    prompt: str,
    task_type: str | None = None,
    complexity: str | None = None,
    override: str | None = None,
    conversation_model_id: int | None = None,
    policy_name: str | None = None,
    max_output_tokens: int = 0,
    fallback_chain: tuple[str, ...] = (),
    local_only: tuple[str, ...] = (),
    privacy_text: str | None = None,
    images: int = 0,
    needs: tuple[str, ...] = (),
    extra_prompt_tokens: int = 0,
    request_context: Callable[[], Mapping[str, Any]] | None = None,
) -> RouteDecision:
    """Choose the chain of models for a prompt. Raises RoutingError for a bad override, task
    type, complexity or policy name (the caller's mistake, reported as a 400), ModelUnavailable
    for a named model that is disabled. `task_type` may be a seed alias (`code_generation`),
    routed as the task it maps to; `fallback_chain` ("provider:model" refs) is tried after
    `override`, or alone, instead of a routed chain. `local_only` names who asked to keep the
    request on local models ("api_key", "request"); the policy's privacy agent scans
    `privacy_text` (the whole conversation; the prompt when None) and keeps it there too when a
    detector fires. Raises PrivacyRefused when no local model can take such a request. `images`
    (how many the messages carry) keeps the request on models that accept images, each counted
    as IMAGE_TOKENS_ESTIMATE prompt tokens; ImagesRefused when none can take it. `needs` (the
    capabilities the request needs: tools, a JSON answer) keeps it on models that have them;
    CapabilityRefused when none can take it. `extra_prompt_tokens` (the tools' JSON) adds to the
    prompt's estimate. The request
    agents (routing.agents.context) check what `request_context()` gives (the door's part of
    what they read) and join the agents' snapshot; AgentBlocked when one says the request may not
    proceed."""
    sent_task_type = task_type
    if task_type is not None:
        task_type = task_type_resolve(task_type)
        if task_type is None:
            raise RoutingError(
                f"unknown task_type {sent_task_type!r}; expected one of "
                f"{', '.join(TASK_TYPES)} or a seed name such as code_generation "
                "(docs/routing.md)",
                field="task_type",
            )
    if complexity is not None and complexity not in COMPLEXITIES:
        raise RoutingError(
            f"unknown complexity {complexity!r}; expected one of {', '.join(COMPLEXITIES)}"
        )
    background_sampling_ensure()
    shared = shared_read()
    config = routing_config_get(shared)
    policy = config.policy(policy_name)
    classification: dict[str, object] = {}
    if task_type is None or complexity is None:
        found = _classifier(conf.classifier_path()).classify(prompt)
        classification = {
            "task_type": found.task_type,
            "complexity": found.complexity,
            "signals": found.signals,
            "task_type_from": "caller" if task_type else "classifier",
            "complexity_from": "caller" if complexity else "classifier",
        }
        task_type = task_type or found.task_type
        complexity = complexity or found.complexity
    else:
        classification = {"task_type_from": "caller", "complexity_from": "caller"}
    if sent_task_type is not None and sent_task_type != task_type:
        classification["task_type_sent"] = sent_task_type
    verdict = None
    named = override is not None or bool(fallback_chain)
    if not named and classification["complexity_from"] == "classifier":
        verdict = _router_verdict(prompt, policy, classification)
    request = RouteRequest(
        task_type=task_type,
        complexity=complexity,
        prompt_tokens=estimate_tokens(prompt)
        + images * IMAGE_TOKENS_ESTIMATE
        + extra_prompt_tokens,
        max_output_tokens=max_output_tokens,
        override=override or None,
        fallback_chain=fallback_chain,
        sticky_model_id=conversation_model_id,
        classification=classification,
        router=verdict,
        local_only=local_only,
        images=images,
        needs=needs,
        privacy_triggered=(
            privacy_scan(prompt if privacy_text is None else privacy_text, policy.privacy.detectors)
            if policy.privacy.enabled
            else ()
        ),
    )
    snapshot = agents_snapshot_current(
        now=timezone.now(), published=shared.snapshot, disabled=config.disabled_agents
    )
    checking = request_agents(config)
    if checking:
        context = agent_request_context(
            base=request_context() if request_context else {},
            prompt=prompt,
            task_type=task_type,
            complexity=complexity,
            prompt_tokens=request.prompt_tokens,
            max_output_tokens=max_output_tokens,
            policy=policy.name,
            models=config.registry.models,
        )
        snapshot = snapshot.with_states(request_agents_check(checking, context))
    decision = decide(request, policy, snapshot, config.registry, balance=rungs_balance)
    if conf.debug_routing():
        logger.info(json.dumps({"routing_decision": decision.trace}, sort_keys=True))
    return decision


def _router_verdict(
    prompt: str, policy: PolicySpec, classification: dict[str, object]
) -> RouterVerdict | None:
    """The learned router's probability and the policy's threshold; None when the policy routes
    by the heuristic, or when no artifact can be loaded (then the heuristic routes, and the
    trace's classification says why)."""
    knob = policy.router
    if knob is None:
        return None
    try:
        router = active_router()
    except ArtifactError as exc:
        logger.warning("learned router unavailable, the heuristic routes: %s", exc)
        classification["router_error"] = str(exc)
        return None
    classification["complexity_from"] = "router"
    return RouterVerdict(
        version=router.version,
        probability=router.score(prompt),
        threshold=router.threshold_of(knob),
        quality_target_pct=knob.quality_target_pct if knob.threshold is None else None,
    )
