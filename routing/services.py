"""`chat_stream`: the one path every request takes, whatever door it came through.

Rate limit → route (`route_decide`) → budget admission per model → response cache →
execution with fallback → cost → settle → one request log row. Entry points only translate
the events this yields; exactly one `Finished` or `Failed` ends every stream, and the log row is
written after it, so the client never waits on the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone

from analytics.outcome import RequestOutcome
from analytics.pricing import (
    CostState,
    Prices,
    baseline_cost_for,
    cost_for,
    max_cost_for,
    prices_ceiling,
)
from analytics.services import request_record
from providers.adapters.registry import adapter_for
from providers.adapters.types import ChatRequest, Endpoint, Message, ProviderError, Usage
from providers.models import Provider
from providers.selectors import provider_endpoint
from routing.budgets import (
    BudgetExceeded,
    Reservation,
    budget_release,
    budget_reserve,
    budget_settle,
)
from routing.config_cache import RoutingConfig, routing_config_get
from routing.decision import ModelSpec, RouteDecision, RoutingError
from routing.decisions import route_decide
from routing.events import (
    Event,
    Failed,
    Finished,
    GatewayRequest,
    Started,
)
from routing.execution import ChainOutcome, ModelRuntime, execute_chain

STATUS_SUCCESS = "success"
STATUS_PARTIAL = "partial"
STATUS_ERROR = "error"
STATUS_CANCELLED = "cancelled"
STATUS_INVALID = "invalid"
STATUS_BUDGET = "budget_refused"
STATUS_RATE_LIMITED = "rate_limited"


@dataclass
class _Ledger:
    """What the request log row will say, filled in as the request goes."""

    request: GatewayRequest
    created_at: Any
    began: float
    decision: RouteDecision | None = None
    chain: ChainOutcome = field(default_factory=ChainOutcome)
    status: str = STATUS_ERROR
    error_code: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = None
    cost_state: str = CostState.NONE.value
    baseline_cost_usd: Decimal | None = None
    reservation: Reservation | None = None
    reservation_model_id: int | None = None

    def outcome(self) -> RequestOutcome:
        model = self.chain.model
        trace = dict(self.decision.trace) if self.decision else {}
        if self.chain.log:
            trace["attempts"] = [record.as_json() for record in self.chain.log]
        request = self.request
        return RequestOutcome(
            request_id=request.request_id,
            created_at=self.created_at,
            entry_point=request.entry_point,
            status=self.status,
            error_code=self.error_code,
            cost_state=self.cost_state,
            user_id=request.caller.user_id,
            api_key_id=request.caller.api_key_id,
            conversation_id=request.conversation_id,
            session_id=request.session_id,
            task_type=self.decision.task_type if self.decision else (request.task_type or ""),
            complexity=self.decision.complexity if self.decision else "",
            requested_model=request.model or "auto",
            model_id=model.id if model else None,
            model_name=model.name if model else "",
            provider_name=model.provider_name if model else "",
            locality=model.locality if model else "",
            input_tokens=self.usage.input,
            output_tokens=self.usage.output,
            cached_tokens=self.usage.cached,
            cost_usd=self.cost_usd,
            baseline_cost_usd=self.baseline_cost_usd,
            latency_ms=int((time.perf_counter() - self.began) * 1000),
            time_to_first_token_ms=self.chain.time_to_first_token_ms,
            attempts=self.chain.attempts,
            fallbacks=self.chain.fallbacks,
            cache_hit=False,
            decision_trace=trace,
            prompt_text=_prompt_text(request.messages),
            response_text=self.chain.text,
        )


def _prompt_text(messages: tuple[Message, ...]) -> str:
    return "\n\n".join(f"{m.role}: {m.content}" for m in messages)


def prices_of(model: ModelSpec) -> Prices:
    return Prices(
        input_per_mtok_usd=model.input_price_per_mtok_usd,
        output_per_mtok_usd=model.output_price_per_mtok_usd,
        cached_per_mtok_usd=model.cached_input_price_per_mtok_usd,
    )


def baseline_prices(config: RoutingConfig) -> Prices | None:
    baseline = next((m for m in config.registry.models if m.is_baseline), None)
    return prices_of(baseline) if baseline else None


_endpoints: dict[str, tuple[str, dict[str, Endpoint]]] = {}


def _endpoints_for(config: RoutingConfig) -> dict[str, Endpoint]:
    """Every enabled provider's endpoint, resolved once per configuration version."""
    memo = _endpoints.get("current")
    if memo and memo[0] == config.version:
        return memo[1]
    endpoints: dict[str, Endpoint] = {}
    for provider in Provider.objects.filter(enabled=True):
        try:
            endpoints[provider.name] = provider_endpoint(provider)
        except ProviderError:
            # A missing credential: the model fails at call time with the same clear error.
            continue
    _endpoints["current"] = (config.version, endpoints)
    return endpoints


def resolve_target(config: RoutingConfig, model: str | None) -> tuple[str | None, str | None]:
    """`(policy_name, override_ref)` for the `model` field of a request."""
    if model is None or model in ("", "auto"):
        return None, None
    if model in config.policies:
        return model, None
    if ":" in model:
        return None, model
    named = [m.ref for m in config.registry.models if m.name == model]
    if len(named) == 1:
        return None, named[0]
    if len(named) > 1:
        raise RoutingError(
            f"model name {model!r} is ambiguous; use one of {', '.join(sorted(named))}"
        )
    raise RoutingError(f"unknown model or policy {model!r}")


def _route(request: GatewayRequest) -> tuple[RouteDecision, RoutingConfig, dict[str, Endpoint]]:
    config = routing_config_get()
    policy_name, override = resolve_target(config, request.model)
    prompt = "\n".join(m.content for m in request.messages if m.role != "assistant")
    decision = route_decide(
        prompt=prompt,
        task_type=request.task_type,
        override=override,
        conversation_model_id=request.sticky_model_id,
        policy_name=policy_name,
        max_output_tokens=request.max_tokens or 0,
    )
    return decision, config, _endpoints_for(config)


_route_async = sync_to_async(_route, thread_sensitive=False)
_record_async = sync_to_async(request_record, thread_sensitive=False)


async def chat_stream(request: GatewayRequest) -> AsyncIterator[Event]:
    ledger = _Ledger(request=request, created_at=timezone.now(), began=time.perf_counter())
    terminal: Event | None = None
    try:
        async for event in _run(request, ledger):
            if isinstance(event, Finished | Failed):
                terminal = event
            yield event
    except (asyncio.CancelledError, GeneratorExit):
        if terminal is None:
            ledger.status = STATUS_CANCELLED
            ledger.error_code = "CANCELLED"
        raise
    finally:
        await asyncio.shield(_finish(ledger))


async def _finish(ledger: _Ledger) -> None:
    """Settle the budget and write the log row; runs however the stream ended."""
    if ledger.reservation is not None:
        if ledger.status in (STATUS_SUCCESS, STATUS_PARTIAL) or ledger.usage.output:
            await sync_to_async(budget_settle, thread_sensitive=False)(
                reservation=ledger.reservation, actual_cost_usd=ledger.cost_usd
            )
        else:
            await sync_to_async(budget_release, thread_sensitive=False)(
                reservation=ledger.reservation
            )
    await _record_async(outcome=ledger.outcome())


async def _run(request: GatewayRequest, ledger: _Ledger) -> AsyncIterator[Event]:
    if not request.messages or not any(m.content.strip() for m in request.messages):
        ledger.status, ledger.error_code = STATUS_INVALID, "INVALID_REQUEST"
        yield Failed(request.request_id, "INVALID_REQUEST", "messages must contain some text")
        return
    try:
        decision, config, endpoints = await _route_async(request)
    except RoutingError as exc:
        ledger.status, ledger.error_code = STATUS_INVALID, "INVALID_REQUEST"
        yield Failed(request.request_id, "INVALID_REQUEST", str(exc))
        return
    ledger.decision = decision
    if not decision.chain:
        code = "MODEL_UNAVAILABLE"
        message = decision.blocked_reason or "no enabled model fits this request"
        ledger.status, ledger.error_code = STATUS_ERROR, code
        yield Failed(request.request_id, code, message, details={"trace": decision.trace})
        return

    def chat_request_for(model: ModelSpec) -> ChatRequest:
        return ChatRequest(
            model=model.name,
            messages=request.messages,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop,
        )

    def runtime_for(model: ModelSpec) -> ModelRuntime:
        endpoint = endpoints.get(model.provider_name) or Endpoint(base_url="")
        return ModelRuntime(adapter=adapter_for(model.provider_kind), endpoint=endpoint)

    def started(model: ModelSpec) -> Started:
        return Started(
            request_id=request.request_id,
            model_id=model.id,
            model_ref=model.ref,
            provider_name=model.provider_name,
            locality=model.locality,
            task_type=decision.task_type,
            complexity=decision.complexity,
            decision_trace=decision.trace,
        )

    prompt_tokens = int(decision.trace.get("request", {}).get("prompt_tokens", 0))

    async def admit(model: ModelSpec) -> ProviderError | None:
        if ledger.reservation is not None:
            await sync_to_async(budget_release, thread_sensitive=False)(
                reservation=ledger.reservation
            )
            ledger.reservation = None
        try:
            ledger.reservation = await sync_to_async(budget_reserve, thread_sensitive=False)(
                max_cost_usd=_max_cost(model, config, prompt_tokens, request.max_tokens),
                api_key_id=request.caller.api_key_id,
                user_id=request.caller.user_id,
                model_id=model.id,
                request_id=request.request_id,
            )
        except BudgetExceeded as exc:
            refusal = ProviderError(str(exc))
            refusal.code = "BUDGET_EXCEEDED"
            return refusal
        return None

    async for event in execute_chain(
        request_id=request.request_id,
        chain=decision.chain,
        chat_request_for=chat_request_for,
        runtime_for=runtime_for,
        started_event=started,
        outcome=ledger.chain,
        admit=admit,
    ):
        yield event

    chain = ledger.chain
    model = chain.model
    if chain.error is not None or model is None:
        error = chain.error or ProviderError("no model answered")
        ledger.error_code = error.code
        ledger.status = (
            STATUS_PARTIAL
            if chain.partial
            else STATUS_BUDGET
            if error.code == "BUDGET_EXCEEDED"
            else STATUS_ERROR
        )
        if chain.partial and model is not None:
            _cost(ledger, model, config, request)
        yield Failed(
            request.request_id,
            error.code,
            error.message,
            partial=chain.partial,
            details={"status": error.status, "attempts": [r.as_json() for r in chain.log]},
            retry_after_s=error.retry_after_s,
        )
        return
    _cost(ledger, model, config, request)
    ledger.status = STATUS_SUCCESS
    trace = dict(decision.trace)
    trace["attempts"] = [record.as_json() for record in chain.log]
    yield Finished(
        request_id=request.request_id,
        model_id=model.id,
        model_ref=model.ref,
        provider_name=model.provider_name,
        locality=model.locality,
        text=chain.text,
        finish_reason=chain.finish_reason,
        usage=ledger.usage,
        cost_usd=ledger.cost_usd,
        cost_state=ledger.cost_state,
        baseline_cost_usd=ledger.baseline_cost_usd,
        latency_ms=int((time.perf_counter() - ledger.began) * 1000),
        time_to_first_token_ms=chain.time_to_first_token_ms,
        attempts=chain.attempts,
        fallbacks=chain.fallbacks,
        cached=False,
        decision_trace=trace,
    )


def _cost(
    ledger: _Ledger, model: ModelSpec, config: RoutingConfig, request: GatewayRequest
) -> None:
    result = cost_for(
        ledger.chain.usage,
        prices_of(model),
        prompt=_prompt_text(request.messages),
        completion=ledger.chain.text,
    )
    ledger.usage = result.usage
    ledger.cost_usd = result.cost_usd
    ledger.cost_state = str(result.state.value)
    ledger.baseline_cost_usd = baseline_cost_for(result.usage, baseline_prices(config))


def _max_cost(
    model: ModelSpec, config: RoutingConfig, prompt_tokens: int, max_tokens: int | None
) -> Decimal | None:
    ceiling = prices_ceiling(prices_of(m) for m in config.registry.models)
    output_tokens = max_tokens or model.max_output_tokens
    return max_cost_for(prompt_tokens, output_tokens, prices_of(model), ceiling)
