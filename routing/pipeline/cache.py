"""The response cache on the request path (docs/guards.md): whether a request's answer may come
from or go to the cache (`cache_plan`, decided with the route, before the guards' read), the
answer of a cache hit (`answer_from_cache`: no model is called, it costs nothing), and keeping a
model's answer under the key of the model that gave it (`response_cache_save`). The request each
model is sent (`chat_request`) is built here too, since the cache's key is taken from it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable
from decimal import Decimal
from typing import Any

from analytics.pricing import CostState, baseline_cost_for
from core.dependencies import REDIS_AWAY
from providers.adapters.types import ChatRequest, Usage
from routing.config.cache import ConfigSnapshot
from routing.engine.values import ModelSpec, RouteDecision
from routing.guards.conf import response_cache_enabled
from routing.guards.response_cache import (
    CACHE_DETERMINISTIC,
    CachedAnswer,
    cache_refusal,
    response_cache_key,
)
from routing.pipeline.events import Delta, Event, GatewayRequest, RateLimitInfo, Started
from routing.pipeline.ledger import Ledger, RequestStatus, baseline_prices
from routing.pipeline.shared import response_cache

logger = logging.getLogger(__name__)


def chat_request(request: GatewayRequest, model: ModelSpec) -> ChatRequest:
    return ChatRequest(
        model=model.name,
        messages=request.messages,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        tools=request.tools,
        tool_choice=request.tool_choice,
        parallel_tool_calls=request.parallel_tool_calls,
        response_format=request.response_format,
    )


def cache_plan(
    request: GatewayRequest,
    decision: RouteDecision,
    config: ConfigSnapshot,
    first: ModelSpec | None,
) -> tuple[str | None, str]:
    """`(key, "")` when the first model's answer may come from or go to the response cache,
    else `(None, why not)` (docs/guards.md)."""
    if first is None:
        return None, "no_model"
    if request.embedding is not None:
        return None, "embeddings"
    if decision.trace.get("privacy"):
        return None, "privacy"
    if not request.use_cache:
        return None, "opted_out"
    if not response_cache_enabled():
        return None, "disabled"
    # The cache's key holds the messages' text only: an answer that depends on tools, tool
    # calls or an answer format is never kept or served.
    if request.uses_tools:
        return None, "tools"
    if request.response_format is not None:
        return None, "response_format"
    policy = config.policies.get(decision.policy_name)
    chat = chat_request(request, first)
    refusal = cache_refusal(chat, mode=policy.response_cache if policy else CACHE_DETERMINISTIC)
    if refusal is not None:
        return None, refusal
    return response_cache_key(chat, provider=first.provider_name), ""


def response_cache_save(
    request: GatewayRequest,
    model: ModelSpec,
    decision: RouteDecision,
    first_key: str,
    *,
    text: str,
    usage: Usage,
) -> dict[str, Any]:
    """Keep the answer under the key of the model that gave it (a fallback's differs from the
    first model's); the trace's `cache` entry."""
    key = first_key
    if model.id != decision.chain[0].id:
        key = response_cache_key(chat_request(request, model), provider=model.provider_name)
    try:
        stored = response_cache.save(
            key, provider=model.provider_name, model=model.name, text=text, usage=usage
        )
    except REDIS_AWAY as exc:  # fails open: the answer is only not remembered
        logger.warning("answer not cached, Redis unreachable: %s", exc)
        stored = False
    return {"result": "miss", "key": key, "stored": stored}


async def answer_from_cache(
    ledger: Ledger,
    answer: CachedAnswer,
    started: Callable[[ModelSpec, bool], Started],
    config: ConfigSnapshot,
    limit_info: RateLimitInfo | None,
) -> AsyncGenerator[Event, None]:
    """A cache hit costs nothing; its baseline cost is kept so cache savings can be shown
    apart from routing savings."""
    decision = ledger.decision
    assert decision is not None
    model = decision.chain[0]
    ledger.chain.model = model
    ledger.chain.text = answer.text
    ledger.chain.time_to_first_token_ms = int((time.perf_counter() - ledger.began) * 1000)
    ledger.cache_hit = True
    ledger.usage = answer.usage
    ledger.cost_usd = Decimal(0)
    ledger.cost_state = CostState.REPORTED.value
    ledger.baseline_cost_usd = baseline_cost_for(answer.usage, baseline_prices(config))
    ledger.status = RequestStatus.SUCCESS
    yield started(model, True)
    yield Delta(answer.text)
    yield ledger.finished(model, finish_reason="stop", cached=True, rate_limit=limit_info)
