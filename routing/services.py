"""`chat_stream`: the one path every request takes, whatever door it came through.

Rate limit → route (`route_decide`) → budget admission per model → response cache →
execution with fallback → cost → settle → one request log row. Entry points only translate
the events this yields; exactly one `Finished` or `Failed` ends every stream, and the log row is
written after it, so the client never waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import caches
from django.utils import timezone

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
from core.db import prepared_available
from core.dependencies import (
    DEPENDENCY_AWAY,
    DEPENDENCY_UNAVAILABLE,
    REDIS_AWAY,
    dependency_away,
    dependency_message,
)
from core.threads import LARGE_BODY_BYTES, cpu_bound, in_thread
from providers.adapters.registry import adapter_for
from providers.adapters.types import (
    ChatRequest,
    Endpoint,
    Message,
    ProviderAuthFailed,
    ProviderError,
    Usage,
)
from providers.models import Provider
from providers.selectors import provider_endpoint
from routing.budgets import (
    BudgetClose,
    BudgetExceeded,
    Reservation,
    budget_release,
    budget_reserve,
)
from routing.closing import RequestClose, RequestCloser
from routing.config.cache import ConfigSnapshot, routing_config_get
from routing.decisions import latency_record, latency_wanted, route_decide
from routing.engine import token_limit_exceeded
from routing.engine.classify import estimate_tokens
from routing.engine.values import (
    ModelSpec,
    ModelUnavailable,
    PrivacyRefused,
    RouteDecision,
    RoutingError,
    TokenLimitExceeded,
)
from routing.events import (
    Delta,
    Event,
    Failed,
    Finished,
    GatewayRequest,
    RateLimitInfo,
    Started,
)
from routing.execution import ChainOutcome, ModelRuntime, execute_chain
from routing.guards.admission import GuardReads, Guards, RateCheck
from routing.guards.breaker import BreakerConfig, CircuitBreakers, Permit
from routing.guards.conf import response_cache_enabled
from routing.guards.ratelimit import Limit, RateLimiter, RateLimitResult, TokenDebit
from routing.guards.response_cache import (
    CACHE_DETERMINISTIC,
    CachedAnswer,
    ResponseCache,
    cache_refusal,
    response_cache_key,
)
from routing.hang_up import hang_up_pass
from routing.journal import journal_open, journal_open_commands
from routing.metrics import request_observe

logger = logging.getLogger(__name__)

_R = TypeVar("_R")

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
            # A request kept on local models keeps its text off the log (docs/routing.md).
            prompt_text=None if self.private else _prompt_text(request.messages),
            response_text=None if self.private else self.chain.text,
        )

    @property
    def private(self) -> bool:
        """Kept on local models: by its key, its own flag or the privacy agent."""
        request = self.request
        if request.caller.local_only or request.metadata.local_only:
            return True
        return bool(self.decision is not None and self.decision.trace.get("privacy"))


def _prompt_text(messages: tuple[Message, ...]) -> str:
    return "\n\n".join(f"{m.role}: {m.content}" for m in messages)


def prices_of(model: ModelSpec) -> Prices:
    return Prices(
        input_per_mtok_usd=model.input_price_per_mtok_usd,
        output_per_mtok_usd=model.output_price_per_mtok_usd,
        cached_per_mtok_usd=model.cached_input_price_per_mtok_usd,
    )


def baseline_prices(config: ConfigSnapshot) -> Prices | None:
    baseline = next((m for m in config.registry.models if m.is_baseline), None)
    return prices_of(baseline) if baseline else None


_endpoints: dict[str, tuple[ConfigSnapshot, dict[str, Endpoint]]] = {}


def _endpoints_for(config: ConfigSnapshot) -> dict[str, Endpoint]:
    """Every enabled provider's endpoint, resolved once per loaded configuration: by its
    identity, not its version, which a reload after `MAX_AGE_S` keeps (a provider added
    behind the signals' back then has its models in the registry and must have its URL)."""
    memo = _endpoints.get("current")
    if memo and memo[0] is config:
        return memo[1]
    endpoints: dict[str, Endpoint] = {}
    for provider in Provider.objects.filter(enabled=True):
        try:
            endpoints[provider.name] = provider_endpoint(provider)
        except ProviderError:
            # A missing credential: the model fails at call time with the same clear error.
            continue
    _endpoints["current"] = (config, endpoints)
    return endpoints


def resolve_target(config: ConfigSnapshot, model: str | None) -> tuple[str | None, str | None]:
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


def resolve_chain(config: ConfigSnapshot, entries: tuple[str, ...]) -> tuple[str, ...]:
    """The `provider:model` refs of a request's `fallback_chain` (model names resolved); an
    entry that names no model (a policy, an unknown or ambiguous name) is refused by its place."""
    refs = []
    for index, entry in enumerate(entries):
        field = f"fallback_chain[{index}]"
        try:
            _, ref = resolve_target(config, entry)
        except RoutingError as exc:
            raise RoutingError(f"{field}: {exc}", field=field) from exc
        if ref is None:
            raise RoutingError(
                f"{field}: {entry!r} is a routing policy; a fallback chain names models",
                field=field,
            )
        refs.append(ref)
    return tuple(refs)


def local_only_of(request: GatewayRequest) -> tuple[str, ...]:
    """Who keeps `request` on local models: its API key, its own flag."""
    return tuple(
        who
        for who, flag in (
            ("api_key", request.caller.local_only),
            ("request", request.metadata.local_only),
        )
        if flag
    )


def _scan_text(messages: tuple[Message, ...]) -> str:
    """What the privacy agent reads: every message sent upstream, the assistant's included."""
    return "\n".join(m.content for m in messages)


@dataclass(frozen=True)
class _Prepared:
    """Everything decided before the first upstream byte, gathered in one thread hop."""

    rate_limit: RateLimitResult | None
    token_charge: int
    decision: RouteDecision | None = None
    config: ConfigSnapshot | None = None
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    cached: CachedAnswer | None = None
    permit: Permit | None = None
    """The first model's breaker, read with the other guards."""
    admission: Reservation | ProviderError | None = None
    """The first model's budget hold, or the budget's refusal; None when it needs none."""
    cache_key: str | None = None
    """The response cache's key of the first model's answer; None when not cached."""
    cache_skip: str = ""
    """Why the answer is neither read from nor kept in the response cache."""


# The guards' one cache backend, built once. Django's `cache` proxy builds a backend object for
# every async context it is used in, which under ASGI is every request (the connection pool is
# shared, the object and its setup are not). The backends are safe to share across threads.
_store = caches.create_connection("default")
_limiter = RateLimiter(_store)
_breakers = CircuitBreakers(_store)
_response_cache = ResponseCache(_store)
_guards = Guards(_limiter, _breakers, _response_cache)
_closer = RequestCloser(_limiter)


def _rate_check(request: GatewayRequest, token_charge: int) -> RateCheck | None:
    caller = request.caller
    if caller.api_key_id is None or not (caller.rpm_limit or caller.tpm_limit):
        return None
    return RateCheck(
        key_id=caller.api_key_id,
        requests=Limit.of(caller.rpm_limit) if caller.rpm_limit else None,
        tokens=Limit.of(caller.tpm_limit) if caller.tpm_limit else None,
        token_cost=token_charge,
    )


def _prepare(request: GatewayRequest) -> _Prepared:
    """Everything before the first upstream byte, in one worker-thread call: the route, the
    guards (one Redis round trip) and the first model's budget hold (one statement)."""
    prompt = "\n".join(m.content for m in request.messages if m.role != "assistant")
    # Tokens are charged up front at their likely size and corrected once usage is known.
    token_charge = estimate_tokens(prompt) + (request.max_tokens or 0)
    config = routing_config_get()
    try:
        policy_name, override = resolve_target(config, request.model)
        decision = route_decide(
            prompt=prompt,
            task_type=request.task_type,
            override=override,
            fallback_chain=resolve_chain(config, request.fallback_chain),
            conversation_model_id=request.sticky_model_id,
            policy_name=policy_name,
            max_output_tokens=request.max_tokens or 0,
            local_only=local_only_of(request),
            privacy_text=_scan_text(request.messages),
        )
        # Refused before any guard or hold: the caller's mistake, which no retry can fix.
        too_long = token_limit_exceeded(decision, config.registry)
        if too_long is not None:
            raise too_long
    except RoutingError:
        journal_open(request=request)  # refused before the guards' round trip: on its own
        raise
    first = decision.chain[0] if decision.chain else None
    cache_key, cache_skip = _cache_plan(request, decision, config, first)
    # The first model's hold is taken while the guards' replies travel, when a cached answer
    # cannot make it unneeded; a rate limit or an open breaker hands it back.
    early = first is not None and cache_key is None and prepared_available()
    held: list[Reservation | ProviderError | None] = []

    def hold_first() -> None:
        assert first is not None
        held.append(_admit(request, decision, config, first))

    try:
        # The request journal's entry goes out with the guards' reads (one round trip for
        # both), before the request's first event.
        reads = _guards.read(
            rate=_rate_check(request, token_charge),
            breaker=(first.ref, BreakerConfig.for_model()) if first else None,
            cache_key=cache_key,
            also=partial(journal_open_commands, request=request) if settings.REDIS_URL else None,
            meanwhile=hold_first if early else None,
        )
    except REDIS_AWAY as exc:
        reads = _guards_away(first, exc)
    except BaseException:
        for admission in held:
            with contextlib.suppress(Exception):
                _give_back(admission)
        raise
    if early and not held:  # Redis failed before the hold could be taken meanwhile
        hold_first()
    if not reads.also_sent:
        journal_open(request=request)
    admitted = first is not None and reads.cached is None and reads.permit and reads.permit.allowed
    limited = reads.rate_limit is not None and not reads.rate_limit.allowed
    admission = None
    if early:
        admission = held[0]
        if limited or not admitted:
            _give_back(admission)
            admission = None
    elif admitted and not limited:
        assert first is not None
        admission = _admit(request, decision, config, first)
    if limited:
        return _Prepared(rate_limit=reads.rate_limit, token_charge=0)
    return _Prepared(
        rate_limit=reads.rate_limit,
        token_charge=token_charge,
        decision=decision,
        config=config,
        endpoints=_endpoints_for(config),
        cached=reads.cached,
        permit=reads.permit,
        admission=admission,
        cache_key=cache_key,
        cache_skip=cache_skip,
    )


def _cache_plan(
    request: GatewayRequest,
    decision: RouteDecision,
    config: ConfigSnapshot,
    first: ModelSpec | None,
) -> tuple[str | None, str]:
    """`(key, "")` when the first model's answer may come from or go to the response cache,
    else `(None, why not)` (docs/guards.md)."""
    if first is None:
        return None, "no_model"
    if decision.trace.get("privacy"):
        return None, "privacy"
    if not request.use_cache:
        return None, "opted_out"
    if not response_cache_enabled():
        return None, "disabled"
    policy = config.policies.get(decision.policy_name)
    chat = _chat_request(request, first)
    refusal = cache_refusal(chat, mode=policy.response_cache if policy else CACHE_DETERMINISTIC)
    if refusal is not None:
        return None, refusal
    return response_cache_key(chat, provider=first.provider_name), ""


def _guards_away(first: ModelSpec | None, exc: Exception) -> GuardReads:
    """The guards' answers while Redis cannot be reached: no rate limit, the breaker closed, no
    cached answer (each fails open, docs/guards.md)."""
    logger.warning("guards fail open, Redis unreachable: %s", exc)
    permit = None
    if first is not None:
        # A closed breaker's permit is decided without the store.
        permit = _breakers.permit(first.ref, BreakerConfig.for_model(), None, False)
    return GuardReads(rate_limit=None, permit=permit, cached=None)


def _give_back(admission: Reservation | ProviderError | None) -> None:
    if isinstance(admission, Reservation) and admission.holds:
        budget_release(reservation=admission)


def _admit(
    request: GatewayRequest, decision: RouteDecision, config: ConfigSnapshot, model: ModelSpec
) -> Reservation | ProviderError | None:
    """Hold the most `model` could cost against the budgets covering the request."""
    prompt_tokens = int(decision.trace.get("request", {}).get("prompt_tokens", 0))
    max_cost = _max_cost(model, config, prompt_tokens, request.max_tokens)
    if max_cost == 0:
        # A free model is never blocked by a cost budget: no hold, no database round trip.
        return None
    try:
        return budget_reserve(
            max_cost_usd=max_cost,
            api_key_id=request.caller.api_key_id,
            user_id=request.caller.user_id,
            model_id=model.id,
            request_id=request.request_id,
        )
    except BudgetExceeded as exc:
        refusal = ProviderError(str(exc))
        refusal.code = "BUDGET_EXCEEDED"
        return refusal


def _chat_request(request: GatewayRequest, model: ModelSpec) -> ChatRequest:
    return ChatRequest(
        model=model.name,
        messages=request.messages,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
    )


class _SharedBreakers:
    """The execution's view of the shared circuit breakers: one permit per model and call.
    The first model's permit was read with the other guards before execution began."""

    def __init__(self, chain: tuple[ModelSpec, ...], first: Permit | None) -> None:
        self.chain = chain
        self.permits: dict[int, Permit] = {}
        self.first = (chain[0].id, first) if chain and first is not None else None

    @functools.cached_property
    def config(self) -> BreakerConfig:
        # Read when a breaker is asked or told of a failure: most requests need neither.
        return BreakerConfig.for_model()

    def allow(self, model_id: int) -> bool:
        if self.first is not None and self.first[0] == model_id:
            permit = self.first[1]
            self.first = None
        else:
            ref = next(m.ref for m in self.chain if m.id == model_id)
            try:
                permit = _breakers.allow(ref, self.config)
            except REDIS_AWAY:  # fails open: the breaker is taken as closed
                permit = _breakers.permit(ref, self.config, None, False)
        self.permits[model_id] = permit
        return permit.allowed

    def record_success(self, model_id: int) -> None:
        with contextlib.suppress(*REDIS_AWAY):
            _breakers.record_success(self.permits[model_id])

    def record_failure(self, model_id: int) -> None:
        with contextlib.suppress(*REDIS_AWAY):
            _breakers.record_failure(self.permits[model_id], self.config)


def _rate_limit_info(result: RateLimitResult | None) -> RateLimitInfo | None:
    if result is None:
        return None
    requests, tokens = result.requests, result.tokens
    resets = [b.reset_us for b in (requests, tokens) if b is not None]
    return RateLimitInfo(
        limit_requests=result.requests_limit,
        remaining_requests=requests.remaining if requests else None,
        limit_tokens=result.tokens_limit,
        remaining_tokens=tokens.remaining if tokens else None,
        reset_s=round(max(resets, default=0) / 1_000_000, 3),
        retry_after_s=float(result.retry_after_s) if not result.allowed else None,
    )


_prepare_async = in_thread(_prepare)


async def _hold_taking(call: Awaitable[_R], ledger: _Ledger) -> _R:
    """The result of a worker-thread call that may take a budget hold (`_prepare`, `_admit`).

    Cancelling the request (its client hung up) cannot stop the thread, which takes the hold
    all the same, and the hold would stay stranded until the expiry sweep. So the call runs
    shielded: a request cancelled meanwhile waits for the thread (milliseconds), puts the hold
    it took on the ledger, where `_finish` gives it back with the request's `cancelled` row,
    and only then goes on being cancelled."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled() and task.exception() is None:
            taken = task.result()
            admission = taken.admission if isinstance(taken, _Prepared) else taken
            if isinstance(admission, Reservation):
                ledger.reservation = admission
        raise


async def chat_stream(request: GatewayRequest) -> AsyncGenerator[Event, None]:
    ledger = _Ledger(request=request, created_at=timezone.now(), began=time.perf_counter())
    terminal: Event | None = None
    run = _run(request, ledger)
    try:
        # From here a client's hang-up ends the request as one `cancelled` row (routing/hang_up).
        hang_up_pass()
        async with contextlib.aclosing(run):
            async for event in run:
                if isinstance(event, Finished | Failed):
                    terminal = event
                yield event
    except (asyncio.CancelledError, GeneratorExit):
        if terminal is None:
            ledger.status = STATUS_CANCELLED
            ledger.error_code = "CANCELLED"
            _cost_received(ledger, request)
        raise
    finally:
        # Queued at once, waited for shielded: a consumer that stops waiting cannot undo it.
        await asyncio.shield(_finish(ledger))


def _cost_received(ledger: _Ledger, request: GatewayRequest) -> None:
    """A request cancelled mid-answer is charged for what it received: that text was generated,
    and billed by the provider, all the same. Costed from the usage if it had arrived, else
    estimated from the prompt and the text received."""
    chain = ledger.chain
    received = "".join(chain.streaming)
    if chain.model is None or ledger.config is None or not received:
        return
    chain.text = received
    _cost(ledger, chain.model, ledger.config, request)


def _finish(ledger: _Ledger) -> asyncio.Future[None]:
    """Settle the budget, correct the token bucket and write the log row (grouped with other
    requests' by `routing.closing`); runs however the stream ended."""
    settle = ledger.status in (STATUS_SUCCESS, STATUS_PARTIAL) or bool(ledger.usage.output)
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
    return _closer.enqueue(RequestClose(outcome=outcome, settlement=settlement, debit=debit))


async def _run(request: GatewayRequest, ledger: _Ledger) -> AsyncGenerator[Event, None]:
    if not request.messages or not any(m.content.strip() for m in request.messages):
        ledger.status, ledger.error_code = STATUS_INVALID, "INVALID_REQUEST"
        await in_thread(journal_open)(request=request)
        yield Failed(request.request_id, "INVALID_REQUEST", "messages must contain some text")
        return
    try:
        prepared = await _hold_taking(_prepare_async(request), ledger)
    except DEPENDENCY_AWAY as exc:
        # Fails closed: a budget hold that cannot be taken, a configuration that cannot be
        # read. The refusal's row is journaled and written once the database is back.
        dependency = dependency_away(exc) or "database"
        logger.warning(
            "request %s refused, %s unreachable: %s", request.request_id, dependency, exc
        )
        ledger.error_code = DEPENDENCY_UNAVAILABLE
        await in_thread(journal_open)(request=request)
        yield Failed(
            request.request_id,
            DEPENDENCY_UNAVAILABLE,
            dependency_message(dependency),
            details={"dependency": dependency},
        )
        return
    except TokenLimitExceeded as exc:
        ledger.decision = exc.decision
        ledger.status, ledger.error_code = STATUS_INVALID, "TOKEN_LIMIT_EXCEEDED"
        details = {"needed_tokens": exc.needed_tokens, "largest_window": exc.largest_window}
        yield Failed(request.request_id, "TOKEN_LIMIT_EXCEEDED", str(exc), details=details)
        return
    except PrivacyRefused as exc:
        ledger.decision = exc.decision
        ledger.status, ledger.error_code = STATUS_INVALID, exc.code
        refused: dict[str, Any] = {
            "triggered": list(exc.triggered),
            "local_only": list(exc.local_only),
        }
        yield Failed(request.request_id, exc.code, str(exc), details=refused)
        return
    except ModelUnavailable as exc:
        ledger.decision = exc.decision
        ledger.status, ledger.error_code = STATUS_ERROR, "MODEL_UNAVAILABLE"
        named: dict[str, Any] = {"model": exc.model, "reason": exc.reason}
        if exc.field:
            named["field"] = exc.field
        yield Failed(request.request_id, "MODEL_UNAVAILABLE", str(exc), details=named)
        return
    except RoutingError as exc:
        ledger.status, ledger.error_code = STATUS_INVALID, "INVALID_REQUEST"
        yield Failed(
            request.request_id,
            "INVALID_REQUEST",
            str(exc),
            details={"field": exc.field} if exc.field else {},
        )
        return
    ledger.rate_limit, ledger.token_charge = prepared.rate_limit, prepared.token_charge
    limit_info = _rate_limit_info(prepared.rate_limit)
    if prepared.decision is None or prepared.config is None:
        ledger.status, ledger.error_code = STATUS_RATE_LIMITED, "RATE_LIMIT_EXCEEDED"
        assert limit_info is not None
        yield Failed(
            request.request_id,
            "RATE_LIMIT_EXCEEDED",
            f"rate limit of API key {request.caller.api_key_id} exceeded; retry in "
            f"{limit_info.retry_after_s:.0f} s",
            rate_limit=limit_info,
            retry_after_s=limit_info.retry_after_s,
        )
        return
    decision, config, endpoints = prepared.decision, prepared.config, prepared.endpoints
    ledger.decision, ledger.config = decision, config
    if not decision.chain:
        code = "MODEL_UNAVAILABLE"
        message = decision.blocked_reason or "no enabled model fits this request"
        ledger.status, ledger.error_code = STATUS_ERROR, code
        # The trace goes to the log row only: the error names the request (its trace id).
        yield Failed(request.request_id, code, message)
        return

    def chat_request_for(model: ModelSpec) -> ChatRequest:
        return _chat_request(request, model)

    def runtime_for(model: ModelSpec) -> ModelRuntime:
        endpoint = endpoints.get(model.provider_name) or Endpoint(base_url="")
        return ModelRuntime(adapter=adapter_for(model.provider_kind), endpoint=endpoint)

    def started(model: ModelSpec, cached: bool = False) -> Started:
        return Started(
            request_id=request.request_id,
            model_id=model.id,
            model_ref=model.ref,
            provider_name=model.provider_name,
            locality=model.locality,
            task_type=decision.task_type,
            complexity=decision.complexity,
            decision_trace=decision.trace,
            cached=cached,
            rate_limit=limit_info,
        )

    decision.trace["cache"] = (
        {"result": "skipped", "reason": prepared.cache_skip}
        if prepared.cache_key is None
        else {"result": "miss" if prepared.cached is None else "hit", "key": prepared.cache_key}
    )
    if prepared.cached is not None:
        cached_answer = _answer_from_cache(ledger, prepared.cached, started, config, limit_info)
        async with contextlib.aclosing(cached_answer):
            async for event in cached_answer:
                yield event
        return

    # The first model's hold was taken with the route; it is on the ledger from here on, so
    # however the stream ends it is settled or released.
    first_admission = prepared.admission
    if isinstance(first_admission, Reservation):
        ledger.reservation = first_admission
    first_id = decision.chain[0].id

    async def admit(model: ModelSpec) -> ProviderError | None:
        nonlocal first_id
        if model.id == first_id:
            first_id = -1
            return first_admission if isinstance(first_admission, ProviderError) else None
        if ledger.reservation is not None:
            await in_thread(budget_release)(reservation=ledger.reservation)
            ledger.reservation = None
        refusal = await _hold_taking(in_thread(_admit)(request, decision, config, model), ledger)
        if isinstance(refusal, Reservation):
            ledger.reservation = refusal
            return None
        return refusal

    answer = execute_chain(
        request_id=request.request_id,
        chain=decision.chain,
        chat_request_for=chat_request_for,
        runtime_for=runtime_for,
        started_event=started,
        outcome=ledger.chain,
        breaker=_SharedBreakers(decision.chain, prepared.permit),
        admit=admit,
        buffered=request.buffered,
    )
    async with contextlib.aclosing(answer):
        async for event in answer:
            yield event

    chain = ledger.chain
    model = chain.model
    if chain.error is not None or model is None:
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
        ledger.error_code = code
        ledger.status = (
            STATUS_PARTIAL
            if chain.partial
            else STATUS_BUDGET
            if error.code == "BUDGET_EXCEEDED"
            else STATUS_ERROR
        )
        if chain.partial and model is not None:
            await _cost_off_loop(ledger, model, config, request)
        yield Failed(
            request.request_id,
            code,
            message,
            partial=chain.partial,
            details=failure,
            retry_after_s=error.retry_after_s,
            rate_limit=limit_info,
        )
        return
    await _cost_off_loop(ledger, model, config, request)
    if prepared.cache_key is not None:
        decision.trace["cache"] = await in_thread(_response_cache_save)(
            request, model, decision, prepared.cache_key, text=chain.text, usage=ledger.usage
        )
    if (
        latency_wanted(decision)
        and chain.attempts == 1
        and chain.time_to_first_token_ms is not None
    ):
        await in_thread(latency_record)(
            model_ref=model.ref, latency_ms=chain.time_to_first_token_ms
        )
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
        rate_limit=limit_info,
    )


BREAKER_OPEN = "circuit breaker open"


def _unavailable_details(chain: ChainOutcome) -> dict[str, str]:
    """`{model, reason}` of a MODEL_UNAVAILABLE failure: the last model the chain reached and
    why it could not answer (its open breaker, or the upstream's message)."""
    if not chain.log:
        return {}
    last = chain.log[-1]
    if last.outcome == "skipped: circuit open":
        return {"model": last.model_ref, "reason": BREAKER_OPEN}
    return {"model": last.model_ref, "reason": last.message or last.outcome}


def _response_cache_save(
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
        key = response_cache_key(_chat_request(request, model), provider=model.provider_name)
    try:
        stored = _response_cache.save(
            key, provider=model.provider_name, model=model.name, text=text, usage=usage
        )
    except REDIS_AWAY as exc:  # fails open: the answer is only not remembered
        logger.warning("answer not cached, Redis unreachable: %s", exc)
        stored = False
    return {"result": "miss", "key": key, "stored": stored}


async def _answer_from_cache(
    ledger: _Ledger,
    answer: CachedAnswer,
    started: Any,
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
    ledger.status = STATUS_SUCCESS
    yield started(model, True)
    yield Delta(answer.text)
    yield Finished(
        request_id=ledger.request.request_id,
        model_id=model.id,
        model_ref=model.ref,
        provider_name=model.provider_name,
        locality=model.locality,
        text=answer.text,
        finish_reason="stop",
        usage=answer.usage,
        cost_usd=Decimal(0),
        cost_state=CostState.REPORTED.value,
        baseline_cost_usd=ledger.baseline_cost_usd,
        latency_ms=int((time.perf_counter() - ledger.began) * 1000),
        time_to_first_token_ms=ledger.chain.time_to_first_token_ms,
        attempts=0,
        fallbacks=0,
        cached=True,
        decision_trace=dict(decision.trace),
        rate_limit=limit_info,
    )


async def _cost_off_loop(
    ledger: _Ledger, model: ModelSpec, config: ConfigSnapshot, request: GatewayRequest
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
            prompt=_prompt_text(request.messages),
            completion=ledger.chain.text,
        )
        _cost_apply(ledger, result, config)
    else:
        _cost(ledger, model, config, request)


def _cost(
    ledger: _Ledger, model: ModelSpec, config: ConfigSnapshot, request: GatewayRequest
) -> None:
    usage = ledger.chain.usage
    # The texts are only counted when the provider reported no usage.
    prompt = _prompt_text(request.messages) if usage is None else ""
    result = cost_for(usage, prices_of(model), prompt=prompt, completion=ledger.chain.text)
    _cost_apply(ledger, result, config)


def _cost_apply(ledger: _Ledger, result: CostResult, config: ConfigSnapshot) -> None:
    ledger.usage = result.usage
    ledger.cost_usd = result.cost_usd
    ledger.cost_state = str(result.state.value)
    ledger.baseline_cost_usd = baseline_cost_for(result.usage, baseline_prices(config))


def _max_cost(
    model: ModelSpec, config: ConfigSnapshot, prompt_tokens: int, max_tokens: int | None
) -> Decimal | None:
    ceiling = prices_ceiling(prices_of(m) for m in config.registry.models)
    output_tokens = max_tokens or model.max_output_tokens
    return max_cost_for(prompt_tokens, output_tokens, prices_of(model), ceiling)
