"""The models' answer to an admitted request: `chain_context` wires `execute_chain` to the
request (the request each model is sent, its provider's endpoint, the `Started` event, each later
model's budget hold and the shared circuit breakers), and `chain_close` turns how the walk ended
into the request's terminal event, once the answer is costed on the ledger, kept in the response
cache and its latency recorded for the balancer."""

from __future__ import annotations

import contextlib
import functools
from functools import partial

from core.dependencies import REDIS_AWAY
from core.threads import in_thread
from providers.adapters.embeddings import EmbeddingRequest
from providers.adapters.registry import adapter_for
from providers.adapters.types import Endpoint, ProviderError
from routing.budgets import Reservation, budget_release
from routing.engine.values import ModelSpec
from routing.guards.breaker import BreakerConfig, Permit
from routing.pipeline.admission import Admitted, admit_model, hold_taking
from routing.pipeline.cache import chat_request, response_cache_save
from routing.pipeline.events import Failed, Finished, GatewayRequest
from routing.pipeline.execution import ChainContext, ModelRuntime
from routing.pipeline.ledger import Ledger, chain_failed, cost_off_loop
from routing.pipeline.route import latency_record, latency_wanted
from routing.pipeline.shared import breakers


class SharedBreakers:
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
                permit = breakers.allow(ref, self.config)
            except REDIS_AWAY:  # fails open: the breaker is taken as closed
                permit = breakers.permit(ref, self.config, None, False)
        self.permits[model_id] = permit
        return permit.allowed

    def record_success(self, model_id: int) -> None:
        with contextlib.suppress(*REDIS_AWAY):
            breakers.record_success(self.permits[model_id])

    def record_failure(self, model_id: int) -> None:
        with contextlib.suppress(*REDIS_AWAY):
            breakers.record_failure(self.permits[model_id], self.config)


def chain_context(request: GatewayRequest, ledger: Ledger, admitted: Admitted) -> ChainContext:
    """What `execute_chain` asks of this request. The first model's hold was taken with the
    route; it is on the ledger from here on, so however the stream ends it is settled or
    released."""
    decision, config = admitted.decision, admitted.config
    endpoints = admitted.prepared.endpoints
    first_admission = admitted.prepared.admission
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
        refusal = await hold_taking(
            in_thread(admit_model)(request, decision, config, model), ledger
        )
        if isinstance(refusal, Reservation):
            ledger.reservation = refusal
            return None
        return refusal

    def runtime_for(model: ModelSpec) -> ModelRuntime:
        endpoint = endpoints.get(model.provider_name) or Endpoint(base_url="")
        return ModelRuntime(adapter=adapter_for(model.provider_kind), endpoint=endpoint)

    return ChainContext(
        chat_request_for=partial(chat_request, request),
        runtime_for=runtime_for,
        started_event=admitted.started,
        admit=admit,
        breaker=SharedBreakers(decision.chain, admitted.prepared.permit),
        embedding_request_for=(
            partial(embedding_request, request) if request.embedding is not None else None
        ),
        tool_arguments_objects=request.tool_arguments_objects,
    )


def embedding_request(request: GatewayRequest, model: ModelSpec) -> EmbeddingRequest:
    assert request.embedding is not None
    return EmbeddingRequest(
        model=model.name,
        inputs=tuple(m.content for m in request.messages),
        dimensions=request.embedding.dimensions,
    )


async def chain_close(
    request: GatewayRequest, ledger: Ledger, admitted: Admitted
) -> Finished | Failed:
    """The terminal event of the walk that filled `ledger.chain`: `Failed` (costed when some
    text was shown), or `Finished` once costed, cached and its latency recorded."""
    chain, decision, config = ledger.chain, admitted.decision, admitted.config
    model = chain.model
    if chain.error is not None or model is None:
        failed = chain_failed(ledger, admitted.rate_limit)
        if chain.partial and model is not None:
            await cost_off_loop(ledger, model, config, request)
        return failed
    await cost_off_loop(ledger, model, config, request)
    cache_key = admitted.prepared.cache_key
    if cache_key is not None:
        decision.trace["cache"] = await in_thread(response_cache_save)(
            request, model, decision, cache_key, text=chain.text, usage=ledger.usage
        )
    if (
        latency_wanted(decision)
        and chain.attempts == 1
        and chain.time_to_first_token_ms is not None
    ):
        await in_thread(latency_record)(
            model_ref=model.ref, latency_ms=chain.time_to_first_token_ms
        )
    return ledger.finished(
        model, finish_reason=chain.finish_reason, cached=False, rate_limit=admitted.rate_limit
    )
