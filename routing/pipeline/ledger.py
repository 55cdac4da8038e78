"""The request's ledger: what its log row will say, filled in as the request goes, and the one
place its end is written. The terminal events (`Finished`, `Failed`) are built here from the
ledger, the cost of an answer (or of the part a cancelled client received) is counted here, and
`finish` settles the budget hold, corrects the token bucket and queues the log row (grouped by
`routing.pipeline.closing`) however the stream ended. `RequestStatus` names the log row's
statuses (the values stored in `RequestLog.status`)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from analytics.outcome import RequestOutcome
from analytics.pricing import (
    CostResult,
    CostState,
    Prices,
    baseline_cost_for,
    cost_for,
    max_cost_for,
    prices_ceiling,
)
from core.threads import LARGE_BODY_BYTES, cpu_bound
from providers.adapters.types import (
    Message,
    ProviderAuthFailed,
    ProviderError,
    Tool,
    ToolCall,
    Usage,
)
from routing.budgets import BudgetClose, Reservation
from routing.config.cache import ConfigSnapshot
from routing.engine.values import ModelSpec, RouteDecision
from routing.guards.ratelimit import Limit, RateLimitResult, TokenDebit
from routing.metrics import request_observe
from routing.pipeline.closing import RequestClose
from routing.pipeline.events import Failed, Finished, GatewayRequest, RateLimitInfo
from routing.pipeline.execution import ChainOutcome
from routing.pipeline.shared import closer


class RequestStatus(StrEnum):
    """A request's status on its log row (`RequestLog.Status`'s values, unchanged)."""

    SUCCESS = "success"
    PARTIAL = "partial"
    ERROR = "error"
    CANCELLED = "cancelled"
    INVALID = "invalid"
    BUDGET_REFUSED = "budget_refused"
    RATE_LIMITED = "rate_limited"


@dataclass
class Ledger:
    """What the request log row will say, filled in as the request goes."""

    request: GatewayRequest
    created_at: Any
    began: float
    decision: RouteDecision | None = None
    chain: ChainOutcome = field(default_factory=ChainOutcome)
    status: RequestStatus = RequestStatus.ERROR
    error_code: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = None
    cost_state: str = CostState.NONE.value
    baseline_cost_usd: Decimal | None = None
    reservation: Reservation | None = None
    cache_hit: bool = False
    rate_limit: RateLimitResult | None = None
    token_charge: int = 0
    config: ConfigSnapshot | None = None

    def outcome(self) -> RequestOutcome:
        model = self.chain.model
        trace = dict(self.decision.trace) if self.decision else {}
        if self.chain.log:
            trace["attempts"] = [record.as_json() for record in self.chain.log]
        # Which web process served it: one of several workers (docs/deployment.md).
        trace["pid"] = os.getpid()
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
            end_user=request.metadata.end_user,
            project=request.metadata.project,
            tags=request.metadata.tags,
            task_type=self.decision.task_type if self.decision else (request.task_type or ""),
            complexity=self.decision.complexity if self.decision else "",
            requested_model=request.model or "auto",
            model_id=model.id if model else None,
            model_name=model.name if model else "",
            provider_name=model.provider_name if model else "",
            locality=model.locality if model else "",
            model_tier=model.tier if model else "",
            input_tokens=self.usage.input,
            output_tokens=self.usage.output,
            cached_tokens=self.usage.cached,
            cost_usd=self.cost_usd,
            baseline_cost_usd=self.baseline_cost_usd,
            latency_ms=int((time.perf_counter() - self.began) * 1000),
            time_to_first_token_ms=self.chain.time_to_first_token_ms,
            attempts=self.chain.attempts,
            fallbacks=self.chain.fallbacks,
            cache_hit=self.cache_hit,
            decision_trace=trace,
            parent_id=request.parent_request_id,
            # A request kept on local models keeps its text off the log (docs/routing.md).
            prompt_text=None if self.private else prompt_text(request.messages),
            response_text=None if self.private else answer_text(self.chain),
        )

    @property
    def private(self) -> bool:
        """Kept on local models: by its key, its own flag or the privacy agent."""
        request = self.request
        if request.caller.local_only or request.metadata.local_only:
            return True
        return bool(self.decision is not None and self.decision.trace.get("privacy"))

    def fail(
        self,
        status: RequestStatus,
        code: str,
        message: str,
        *,
        partial: bool = False,
        details: dict[str, Any] | None = None,
        rate_limit: RateLimitInfo | None = None,
        retry_after_s: float | None = None,
    ) -> Failed:
        """The request's `Failed`, its status and error code put on the ledger."""
        self.status, self.error_code = status, code
        return Failed(
            self.request.request_id,
            code,
            message,
            partial=partial,
            details={} if details is None else details,
            rate_limit=rate_limit,
            retry_after_s=retry_after_s,
        )

    def finished(
        self,
        model: ModelSpec,
        *,
        finish_reason: str | None,
        cached: bool,
        rate_limit: RateLimitInfo | None,
    ) -> Finished:
        """The request's `Finished`, from the ledger's answer, usage and cost; a model's answer
        (not a cached one) carries its attempts in the trace."""
        self.status = RequestStatus.SUCCESS
        decision = self.decision
        assert decision is not None
        chain = self.chain
        trace = dict(decision.trace)
        if not cached:
            trace["attempts"] = [record.as_json() for record in chain.log]
        return Finished(
            request_id=self.request.request_id,
            model_id=model.id,
            model_ref=model.ref,
            provider_name=model.provider_name,
            locality=model.locality,
            text=chain.text,
            finish_reason=finish_reason,
            usage=self.usage,
            cost_usd=self.cost_usd,
            cost_state=self.cost_state,
            baseline_cost_usd=self.baseline_cost_usd,
            latency_ms=int((time.perf_counter() - self.began) * 1000),
            time_to_first_token_ms=chain.time_to_first_token_ms,
            attempts=chain.attempts,
            fallbacks=chain.fallbacks,
            cached=cached,
            decision_trace=trace,
            rate_limit=rate_limit,
            tool_calls=chain.tool_calls,
            embeddings=chain.embeddings,
        )


def _calls_json(calls: tuple[ToolCall, ...]) -> str:
    return orjson.dumps(
        [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
    ).decode()


def prompt_text(messages: tuple[Message, ...], tools: tuple[Tool, ...] = ()) -> str:
    """The conversation as the log keeps it (and as tokens are counted without a reported
    usage): each turn's role and text, the tool calls an assistant turn made, and the tools
    offered, as JSON."""
    turns = [
        f"{m.role}: {m.content}"
        + (f"\ntool_calls: {_calls_json(m.tool_calls)}" if m.tool_calls else "")
        for m in messages
    ]
    if tools:
        turns.append(f"tools: {tools_json(tools)}")
    return "\n\n".join(turns)


def tools_json(tools: tuple[Tool, ...]) -> str:
    """The tools offered, as the JSON a provider is sent (what their prompt tokens count)."""
    return orjson.dumps(
        [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]
    ).decode()


def answer_text(chain: ChainOutcome) -> str:
    """The answer's text, and its tool calls as JSON after it."""
    if not chain.tool_calls:
        return chain.text
    calls = f"tool_calls: {_calls_json(chain.tool_calls)}"
    return f"{chain.text}\n\n{calls}" if chain.text else calls


BREAKER_OPEN = "circuit breaker open"


def chain_failed(ledger: Ledger, rate_limit: RateLimitInfo | None) -> Failed:
    """The `Failed` of a chain that gave no complete answer (partial when text was shown)."""
    chain = ledger.chain
    model = chain.model
    error = chain.error or ProviderError("no model answered")
    code, message = error.code, error.message
    if isinstance(error, ProviderAuthFailed):
        # The provider refused the gateway's own credentials: not the caller's key (which
        # AUTHENTICATION_FAILED would say), and nothing the caller can fix.
        code = "MODEL_UNAVAILABLE"
        where = f" for {model.ref}" if model is not None else ""
        message = f"the provider refused its configured credentials{where}: {message}"
    failure: dict[str, Any] = {"status": error.status}
    if code == "MODEL_UNAVAILABLE":
        unavailable = _unavailable_details(chain)
        failure.update(unavailable)
        if model is None and unavailable.get("reason") == BREAKER_OPEN:
            message = f"model {unavailable['model']!r} is unavailable: {BREAKER_OPEN}"
    status = (
        RequestStatus.PARTIAL
        if chain.partial
        else RequestStatus.BUDGET_REFUSED
        if error.code == "BUDGET_EXCEEDED"
        else RequestStatus.ERROR
    )
    return ledger.fail(
        status,
        code,
        message,
        partial=chain.partial,
        details=failure,
        retry_after_s=error.retry_after_s,
        rate_limit=rate_limit,
    )


def _unavailable_details(chain: ChainOutcome) -> dict[str, str]:
    """`{model, reason}` of a MODEL_UNAVAILABLE failure: the last model the chain reached and
    why it could not answer (its open breaker, or the upstream's message)."""
    if not chain.log:
        return {}
    last = chain.log[-1]
    if last.outcome == "skipped: circuit open":
        return {"model": last.model_ref, "reason": BREAKER_OPEN}
    return {"model": last.model_ref, "reason": last.message or last.outcome}


def prices_of(model: ModelSpec) -> Prices:
    return Prices(
        input_per_mtok_usd=model.input_price_per_mtok_usd,
        output_per_mtok_usd=model.output_price_per_mtok_usd,
        cached_per_mtok_usd=model.cached_input_price_per_mtok_usd,
    )


def baseline_prices(config: ConfigSnapshot) -> Prices | None:
    baseline = next((m for m in config.registry.models if m.is_baseline), None)
    return prices_of(baseline) if baseline else None


def max_cost(
    model: ModelSpec,
    config: ConfigSnapshot,
    prompt_tokens: int,
    max_tokens: int | None,
    *,
    embedding: bool = False,
) -> Decimal | None:
    """The most a request can cost on `model`; an embedding has no output tokens."""
    ceiling = prices_ceiling(prices_of(m) for m in config.registry.models)
    output_tokens = 0 if embedding else max_tokens or model.max_output_tokens
    return max_cost_for(prompt_tokens, output_tokens, prices_of(model), ceiling)


async def cost_off_loop(
    ledger: Ledger, model: ModelSpec, config: ConfigSnapshot, request: GatewayRequest
) -> None:
    """`_cost`, counted in a worker thread when it counts a large prompt's tokens (the
    provider reported no usage): counting 2 MB of text takes the event loop a tenth of a
    second. The ledger is written here, on the loop, so a request cancelled meanwhile keeps
    only what its own cancellation wrote."""
    if ledger.chain.usage is None and (
        sum(len(m.content) for m in request.messages) > LARGE_BODY_BYTES
    ):
        result = await cpu_bound(
            cost_for,
            None,
            prices_of(model),
            prompt=prompt_text(request.messages, request.tools),
            completion=answer_text(ledger.chain),
        )
        _cost_apply(ledger, result, config)
    else:
        _cost(ledger, model, config, request)


def _cost(
    ledger: Ledger, model: ModelSpec, config: ConfigSnapshot, request: GatewayRequest
) -> None:
    usage = ledger.chain.usage
    # The texts are only counted when the provider reported no usage.
    prompt = prompt_text(request.messages, request.tools) if usage is None else ""
    completion = answer_text(ledger.chain) if usage is None else ""
    result = cost_for(usage, prices_of(model), prompt=prompt, completion=completion)
    _cost_apply(ledger, result, config)


def _cost_apply(ledger: Ledger, result: CostResult, config: ConfigSnapshot) -> None:
    ledger.usage = result.usage
    ledger.cost_usd = result.cost_usd
    ledger.cost_state = str(result.state.value)
    ledger.baseline_cost_usd = baseline_cost_for(result.usage, baseline_prices(config))


def cost_received(ledger: Ledger, request: GatewayRequest) -> None:
    """A request cancelled mid-answer is charged for what it received: that text was generated,
    and billed by the provider, all the same. Costed from the usage if it had arrived, else
    estimated from the prompt and the text received."""
    chain = ledger.chain
    received = "".join(chain.streaming)
    if chain.model is None or ledger.config is None or not received:
        return
    chain.text = received
    _cost(ledger, chain.model, ledger.config, request)


def finish(ledger: Ledger) -> asyncio.Future[None]:
    """Settle the budget, correct the token bucket and write the log row (grouped with other
    requests' by `routing.pipeline.closing`); runs however the stream ended."""
    # Whatever was charged is spent: an answer, the part a cancelled client received, or a
    # cancelled plan's calls (routing/plans).
    settle = (
        ledger.status in (RequestStatus.SUCCESS, RequestStatus.PARTIAL)
        or bool(ledger.usage.output)
        or bool(ledger.cost_usd)
    )
    caller = ledger.request.caller
    debit = None
    if ledger.token_charge and caller.api_key_id is not None and caller.tpm_limit:
        used = ledger.usage.input + ledger.usage.output
        debit = TokenDebit(
            caller.api_key_id, Limit.of(caller.tpm_limit), used - ledger.token_charge
        )
    settlement = None
    if ledger.reservation is not None:
        settlement = (
            BudgetClose.settled(ledger.reservation, ledger.cost_usd)
            if settle
            else BudgetClose.released(ledger.reservation)
        )
    outcome = ledger.outcome()
    request_observe(outcome)  # the Prometheus counters: the request is final here
    return closer.enqueue(RequestClose(outcome=outcome, settlement=settlement, debit=debit))
