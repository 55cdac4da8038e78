"""Request agents: agents whose `check(request_context)` reads the request itself (its prompt,
its API key, its metadata) and run for every request, inside its one worker-thread hop, just
before the route is decided. Their results join the agents' snapshot for that decision only:
a `proceed: false` refuses the request, a `target` of local or cloud is a recommendation, and
the policy's state rules read their states like any sampled agent's."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from routing import conf
from routing.agents.base import UNKNOWN, Agent, AgentCheck, checks_from
from routing.agents.runner import AgentTimeout, agent_call
from routing.engine.values import AgentState, ModelSpec

logger = logging.getLogger(__name__)


def request_context(
    *,
    base: Mapping[str, Any],
    prompt: str,
    task_type: str,
    complexity: str,
    prompt_tokens: int,
    max_output_tokens: int,
    policy: str,
    models: Sequence[ModelSpec],
) -> dict[str, Any]:
    """What a request agent reads: the door's part (`base`: messages, model, api_key,
    metadata, ...) and the route's (the prompt, its task type and complexity, its tokens, and
    `estimated_cost`: the most this request could cost on an enabled model of known price, in
    USD)."""
    return {
        **base,
        "prompt": prompt,
        "task_type": task_type,
        "complexity": complexity,
        "estimated_tokens": prompt_tokens + max_output_tokens,
        "prompt_tokens": prompt_tokens,
        "max_tokens": max_output_tokens or None,
        "estimated_cost": float(_most_costly(models, prompt_tokens, max_output_tokens)),
        "policy": policy,
    }


def _most_costly(models: Sequence[ModelSpec], prompt_tokens: int, output_tokens: int) -> Decimal:
    costs = [
        (
            prompt_tokens * m.input_price_per_mtok_usd
            + (output_tokens or m.max_output_tokens) * m.output_price_per_mtok_usd
        )
        / 1_000_000
        for m in models
        if m.enabled
        and m.input_price_per_mtok_usd is not None
        and m.output_price_per_mtok_usd is not None
    ]
    return max(costs, default=Decimal(0))


def request_agents_check(
    agents: Sequence[Agent], context: Mapping[str, Any]
) -> tuple[AgentState, ...]:
    """Each request agent's checks of this request, as states of the decision's snapshot. A
    check that raises, returns junk, or (async) runs past ORCHESTRATOR_REQUEST_AGENT_TIMEOUT_MS
    is an unknown state that neither blocks nor recommends."""
    states: list[AgentState] = []
    for agent in agents:
        name = getattr(agent, "name", type(agent).__name__)
        try:
            # Each agent gets its own copy: one cannot change what the next one reads.
            result = agent.check(dict(context))
            checks = checks_from(agent_call(result, timeout_s=conf.request_agent_timeout_s()))
        except AgentTimeout as error:
            checks = [AgentCheck(UNKNOWN, ok=False, reason=str(error))]
        except Exception as error:
            logger.warning("request agent %s check failed", name, exc_info=True)
            checks = [AgentCheck(UNKNOWN, ok=False, reason=f"check failed: {error}"[:500])]
        for check in checks:
            states.append(
                AgentState(
                    name,
                    check.state if check.ok else UNKNOWN,
                    check.target,
                    check.reason[:500],
                    dict(check.metrics),
                    proceed=check.proceed or not check.ok,
                    recommend=check.recommend if check.ok else "",
                    source="request",
                )
            )
    return tuple(states)
