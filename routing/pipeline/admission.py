"""Admission: everything before the first upstream byte. The request's `model` and
`fallback_chain` are resolved against the registry, the route decided (`routing.pipeline.route`),
and, in one worker-thread call, the guards read in one Redis round trip (rate limit, the first
model's circuit breaker, the response cache, with the request journal's entry) while the first
model's budget hold is taken. `admit_request` turns the outcome into an `Admitted` request, or
into the `Failed` that refuses it (an invalid request, a dependency away, a rate limit, no model);
later models' holds are taken by `admit_model` as the chain reaches them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from django.conf import settings

from core.db import prepared_available
from core.dependencies import (
    DEPENDENCY_AWAY,
    DEPENDENCY_UNAVAILABLE,
    REDIS_AWAY,
    dependency_away,
    dependency_message,
)
from core.threads import in_thread
from providers.adapters.types import IMAGE_TOKENS_ESTIMATE, Endpoint, Message, ProviderError
from providers.models import Provider
from providers.selectors import provider_endpoint
from routing.budgets import BudgetExceeded, Reservation, budget_release, budget_reserve
from routing.config.cache import ConfigSnapshot, routing_config_get
from routing.engine import token_limit_exceeded
from routing.engine.classify import estimate_tokens
from routing.engine.embeddings import embedding_decide
from routing.engine.values import (
    AgentBlocked,
    CapabilityRefused,
    ImagesRefused,
    ModelSpec,
    ModelUnavailable,
    PrivacyRefused,
    RouteDecision,
    RoutingError,
    TokenLimitExceeded,
    UnknownModel,
)
from routing.guards.admission import GuardReads, RateCheck
from routing.guards.breaker import BreakerConfig, Permit
from routing.guards.ratelimit import Limit, RateLimitResult
from routing.guards.response_cache import CachedAnswer
from routing.pipeline.cache import cache_plan
from routing.pipeline.events import Failed, GatewayRequest, RateLimitInfo, Started
from routing.pipeline.journal import journal_open, journal_open_commands
from routing.pipeline.ledger import Ledger, RequestStatus, max_cost, tools_json
from routing.pipeline.route import route_decide
from routing.pipeline.shared import breakers, guards
from routing.privacy import privacy_scan

logger = logging.getLogger(__name__)

_R = TypeVar("_R")

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
    raise UnknownModel(f"unknown model or policy {model!r}", model=model)


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


def agent_context(request: GatewayRequest, images: int) -> dict[str, Any]:
    """The door's part of what a request agent reads (routing.agents.context adds the
    route's): the messages, what the caller named, who it is and its metadata."""
    caller, metadata = request.caller, request.metadata
    return {
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "images": images,
        "model": request.model,
        "fallback_chain": list(request.fallback_chain),
        "entry_point": request.entry_point,
        "request_id": str(request.request_id),
        "api_key": (
            {
                "id": caller.api_key_id,
                "local_only": caller.local_only,
                "rpm_limit": caller.rpm_limit,
                "tpm_limit": caller.tpm_limit,
            }
            if caller.api_key_id is not None
            else None
        ),
        "user": caller.user_id,
        "metadata": {
            "user_id": metadata.end_user,
            "project_id": metadata.project,
            "tags": list(metadata.tags),
            "session_id": request.session_id,
            "local_only": metadata.local_only,
        },
    }


@dataclass(frozen=True)
class Prepared:
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


@dataclass(frozen=True)
class Admitted:
    """A request let through admission: its route, with at least one model, and what the
    guards answered (`prepared`), and the caller's rate-limit figures for its events."""

    request_id: uuid.UUID
    decision: RouteDecision
    config: ConfigSnapshot
    prepared: Prepared
    rate_limit: RateLimitInfo | None

    def started(self, model: ModelSpec, cached: bool = False) -> Started:
        decision = self.decision
        return Started(
            request_id=self.request_id,
            model_id=model.id,
            model_ref=model.ref,
            provider_name=model.provider_name,
            locality=model.locality,
            task_type=decision.task_type,
            complexity=decision.complexity,
            decision_trace=decision.trace,
            cached=cached,
            rate_limit=self.rate_limit,
        )


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


def needs_of(request: GatewayRequest) -> tuple[str, ...]:
    """The capabilities (routing.engine.values.CAPABILITIES) only some models have that the
    request needs."""
    needs = ("tools",) if request.uses_tools else ()
    return needs + (("json_output",) if request.response_format is not None else ())


def tool_tokens_estimate(request: GatewayRequest) -> int:
    """The prompt tokens of the tools offered and the calls made: counted as the JSON sent
    (also what the doors' token counts add)."""
    calls = [c for m in request.messages for c in m.tool_calls]
    if not request.tools and not calls:
        return 0
    text = tools_json(request.tools) + "".join(c.name + c.arguments for c in calls)
    return estimate_tokens(text)


def prepare(request: GatewayRequest) -> Prepared:
    """Everything before the first upstream byte, in one worker-thread call: the route, the
    guards (one Redis round trip) and the first model's budget hold (one statement)."""
    prompt = "\n".join(m.content for m in request.messages if m.role != "assistant")
    images = sum(len(m.images) for m in request.messages)
    # The tools offered and the calls made are prompt tokens too: counted as the JSON sent.
    tool_tokens = tool_tokens_estimate(request)
    # Tokens are charged up front at their likely size and corrected once usage is known.
    token_charge = (
        estimate_tokens(prompt)
        + images * IMAGE_TOKENS_ESTIMATE
        + tool_tokens
        + (request.max_tokens or 0)
    )
    config = routing_config_get()
    try:
        policy_name, override = resolve_target(config, request.model)
        if request.embedding is not None:
            decision = _embedding_route(request, config, override, policy_name, token_charge)
        else:
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
                images=images,
                needs=needs_of(request),
                extra_prompt_tokens=tool_tokens,
                request_context=partial(agent_context, request, images),
            )
        # Refused before any guard or hold: the caller's mistake, which no retry can fix.
        too_long = (
            None
            if request.embedding is not None
            else token_limit_exceeded(decision, config.registry)
        )
        if too_long is not None:
            raise too_long
    except RoutingError:
        journal_open(request=request)  # refused before the guards' round trip: on its own
        raise
    first = decision.chain[0] if decision.chain else None
    cache_key, cache_skip = cache_plan(request, decision, config, first)
    # The first model's hold is taken while the guards' replies travel, when a cached answer
    # cannot make it unneeded; a rate limit or an open breaker hands it back.
    early = first is not None and cache_key is None and prepared_available()
    held: list[Reservation | ProviderError | None] = []

    def hold_first() -> None:
        assert first is not None
        held.append(admit_model(request, decision, config, first))

    try:
        # The request journal's entry goes out with the guards' reads (one round trip for
        # both), before the request's first event.
        reads = guards.read(
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
                give_back(admission)
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
            give_back(admission)
            admission = None
    elif admitted and not limited:
        assert first is not None
        admission = admit_model(request, decision, config, first)
    if limited:
        return Prepared(rate_limit=reads.rate_limit, token_charge=0)
    return Prepared(
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


def _embedding_route(
    request: GatewayRequest,
    config: ConfigSnapshot,
    override: str | None,
    policy_name: str | None,
    prompt_tokens: int,
) -> RouteDecision:
    """The route of an embeddings request: embedding models only (routing/engine/embeddings)."""
    assert request.embedding is not None
    if policy_name is not None:
        raise RoutingError(
            f"{policy_name!r} is a routing policy; embeddings name an embedding model or 'auto'",
            field="model",
        )
    policy = config.policies.get(config.default_policy)
    return embedding_decide(
        registry=config.registry,
        override=override,
        prompt_tokens=prompt_tokens,
        inputs=len(request.messages),
        dimensions=request.embedding.dimensions,
        local_only=local_only_of(request),
        # The default policy's privacy agent reads the texts as it reads a chat's messages:
        # what it keeps off cloud models in a chat stays off them as an embedding too.
        privacy_triggered=(
            privacy_scan(_scan_text(request.messages), policy.privacy.detectors)
            if policy is not None and policy.privacy.enabled
            else ()
        ),
    )


def _guards_away(first: ModelSpec | None, exc: Exception) -> GuardReads:
    """The guards' answers while Redis cannot be reached: no rate limit, the breaker closed, no
    cached answer (each fails open, docs/guards.md)."""
    logger.warning("guards fail open, Redis unreachable: %s", exc)
    permit = None
    if first is not None:
        # A closed breaker's permit is decided without the store.
        permit = breakers.permit(first.ref, BreakerConfig.for_model(), None, False)
    return GuardReads(rate_limit=None, permit=permit, cached=None)


def give_back(admission: Reservation | ProviderError | None) -> None:
    if isinstance(admission, Reservation) and admission.holds:
        budget_release(reservation=admission)


def admit_model(
    request: GatewayRequest, decision: RouteDecision, config: ConfigSnapshot, model: ModelSpec
) -> Reservation | ProviderError | None:
    """Hold the most `model` could cost against the budgets covering the request."""
    if request.parent_request_id is not None:
        # A part of a plan: the plan's hold, taken for all its calls up front, covers it.
        return None
    prompt_tokens = int(decision.trace.get("request", {}).get("prompt_tokens", 0))
    most = max_cost(
        model, config, prompt_tokens, request.max_tokens, embedding=request.embedding is not None
    )
    if most == 0:
        # A free model is never blocked by a cost budget: no hold, no database round trip.
        return None
    try:
        return budget_reserve(
            max_cost_usd=most,
            api_key_id=request.caller.api_key_id,
            user_id=request.caller.user_id,
            model_id=model.id,
            request_id=request.request_id,
        )
    except BudgetExceeded as exc:
        refusal = ProviderError(str(exc))
        refusal.code = "BUDGET_EXCEEDED"
        return refusal


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


_prepare_async = in_thread(prepare)


async def hold_taking(call: Awaitable[_R], ledger: Ledger) -> _R:
    """The result of a worker-thread call that may take a budget hold (`prepare`,
    `admit_model`).

    Cancelling the request (its client hung up) cannot stop the thread, which takes the hold
    all the same, and the hold would stay stranded until the expiry sweep. So the call runs
    shielded: a request cancelled meanwhile waits for the thread (milliseconds), puts the hold
    it took on the ledger, where `finish` gives it back with the request's `cancelled` row,
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
            admission = taken.admission if isinstance(taken, Prepared) else taken
            if isinstance(admission, Reservation):
                ledger.reservation = admission
        raise


async def admit_request(request: GatewayRequest, ledger: Ledger) -> Admitted | Failed:
    """The request admitted, its route and guards' answers on the ledger; or its refusal."""
    if not request.messages or not any(m.content.strip() or m.images for m in request.messages):
        failed = ledger.fail(
            RequestStatus.INVALID, "INVALID_REQUEST", "messages must contain some text or an image"
        )
        await in_thread(journal_open)(request=request)
        return failed
    try:
        prepared = await hold_taking(_prepare_async(request), ledger)
    except DEPENDENCY_AWAY as exc:
        # Fails closed: a budget hold that cannot be taken, a configuration that cannot be
        # read. The refusal's row is journaled and written once the database is back.
        dependency = dependency_away(exc) or "database"
        logger.warning(
            "request %s refused, %s unreachable: %s", request.request_id, dependency, exc
        )
        failed = ledger.fail(
            RequestStatus.ERROR,
            DEPENDENCY_UNAVAILABLE,
            dependency_message(dependency),
            details={"dependency": dependency},
        )
        await in_thread(journal_open)(request=request)
        return failed
    except RoutingError as exc:
        return _routing_refusal(ledger, exc)
    ledger.rate_limit, ledger.token_charge = prepared.rate_limit, prepared.token_charge
    limit_info = _rate_limit_info(prepared.rate_limit)
    decision, config = prepared.decision, prepared.config
    if decision is None or config is None:
        assert limit_info is not None
        return ledger.fail(
            RequestStatus.RATE_LIMITED,
            "RATE_LIMIT_EXCEEDED",
            f"rate limit of API key {request.caller.api_key_id} exceeded; retry in "
            f"{limit_info.retry_after_s:.0f} s",
            rate_limit=limit_info,
            retry_after_s=limit_info.retry_after_s,
        )
    ledger.decision, ledger.config = decision, config
    if not decision.chain:
        message = decision.blocked_reason or "no enabled model fits this request"
        # The trace goes to the log row only: the error names the request (its trace id).
        return ledger.fail(RequestStatus.ERROR, "MODEL_UNAVAILABLE", message)
    decision.trace["cache"] = (
        {"result": "skipped", "reason": prepared.cache_skip}
        if prepared.cache_key is None
        else {"result": "miss" if prepared.cached is None else "hit", "key": prepared.cache_key}
    )
    return Admitted(request.request_id, decision, config, prepared, limit_info)


def _routing_refusal(ledger: Ledger, exc: RoutingError) -> Failed:
    """The `Failed` of a request the route refused: the caller's mistake, or no model."""
    if isinstance(exc, TokenLimitExceeded):
        ledger.decision = exc.decision
        details = {"needed_tokens": exc.needed_tokens, "largest_window": exc.largest_window}
        return ledger.fail(RequestStatus.INVALID, "TOKEN_LIMIT_EXCEEDED", str(exc), details=details)
    if isinstance(exc, AgentBlocked):
        ledger.decision = exc.decision
        blocked = {"agent": exc.agent, "state": exc.state, "reason": exc.reason}
        return ledger.fail(RequestStatus.INVALID, exc.code, str(exc), details=blocked)
    if isinstance(exc, ImagesRefused):
        ledger.decision = exc.decision
        return ledger.fail(RequestStatus.INVALID, exc.code, str(exc))
    if isinstance(exc, CapabilityRefused):
        ledger.decision = exc.decision
        return ledger.fail(RequestStatus.INVALID, exc.code, str(exc), details={"field": exc.field})
    if isinstance(exc, PrivacyRefused):
        ledger.decision = exc.decision
        refused: dict[str, Any] = {
            "triggered": list(exc.triggered),
            "local_only": list(exc.local_only),
        }
        return ledger.fail(RequestStatus.INVALID, exc.code, str(exc), details=refused)
    if isinstance(exc, ModelUnavailable):
        ledger.decision = exc.decision
        named: dict[str, Any] = {"model": exc.model, "reason": exc.reason}
        if exc.field:
            named["field"] = exc.field
        return ledger.fail(RequestStatus.ERROR, "MODEL_UNAVAILABLE", str(exc), details=named)
    mistake: dict[str, Any] = {"field": exc.field} if exc.field else {}
    if isinstance(exc, UnknownModel):
        mistake["unknown_model"] = exc.model
    return ledger.fail(RequestStatus.INVALID, "INVALID_REQUEST", str(exc), details=mistake)
