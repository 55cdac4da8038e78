"""Carrying out a decision: walk the chain, retry, fall back, stream.

`execute_chain` yields the public `Started`, `Delta` and `Fallback` events and ends with one
`ChainOutcome` that the caller turns into `Finished` or `Failed` (it knows prices and the log).
A failure before the first token moves on invisibly (a `Fallback` event, no partial text); a
failure after it ends the stream as partial, because text already shown cannot be taken back.
A `buffered` answer (the client gets it whole, at the end) has shown nothing until it is
complete, so a failure mid-answer is retried and falls back like one before the first token:
the attempt's text is discarded, not billed, and recorded in the attempt log.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol

from providers.adapters.embeddings import EMBEDDERS, EmbeddingRequest
from providers.adapters.types import (
    Adapter,
    ChatChunk,
    ChatRequest,
    ContextTooLong,
    Endpoint,
    FeatureUnsupported,
    InvalidResponse,
    ProviderAuthFailed,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    ToolCall,
    ToolCallDelta,
    Usage,
    tool_arguments_object,
    tool_calls_join,
)
from routing.engine.classify import estimate_tokens
from routing.engine.values import ModelSpec
from routing.pipeline.events import Delta, Fallback, Started

# One generator for the jitter of every request: seeding a new one per request reads the OS's
# entropy pool each time.
_jitter = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one model on retryable errors: exponential backoff with full jitter,
    bounded both in attempts and in total time spent waiting."""

    attempts_per_model: int = 2
    base_delay_s: float = 0.25
    max_delay_s: float = 4.0
    total_wait_s: float = 10.0

    def delay_s(self, retry_number: int, retry_after_s: float | None, rng: random.Random) -> float:
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (retry_number - 1)))
        delay = rng.uniform(0, ceiling)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay


class Breaker(Protocol):
    """What execution needs of the per-model circuit breakers."""

    def allow(self, model_id: int) -> bool: ...

    def record_success(self, model_id: int) -> None: ...

    def record_failure(self, model_id: int) -> None: ...


class NoBreaker:
    def allow(self, model_id: int) -> bool:
        return True

    def record_success(self, model_id: int) -> None:
        return None

    def record_failure(self, model_id: int) -> None:
        return None


@dataclass(frozen=True)
class AttemptRecord:
    model_ref: str
    outcome: str  # "ok", an error code, or "skipped: <why>"
    status: int | None = None
    message: str = ""
    discarded_chars: int = 0
    """The text a buffered answer had received from this attempt before it failed."""

    def as_json(self) -> dict[str, object]:
        record: dict[str, object] = {
            "model": self.model_ref,
            "outcome": self.outcome,
            "status": self.status,
            "message": self.message,
        }
        if self.discarded_chars:
            record["discarded_chars"] = self.discarded_chars
        return record


@dataclass
class ChainOutcome:
    """How the walk ended. `model` is the one that answered (or failed last)."""

    model: ModelSpec | None = None
    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    attempts: int = 0
    fallbacks: int = 0
    time_to_first_token_ms: int | None = None
    error: ProviderError | None = None
    partial: bool = False
    log: list[AttemptRecord] = field(default_factory=list)
    streaming: list[str] = field(default_factory=list)
    """The text of the attempt in progress so far (what a client that leaves now received)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The tool calls of the answer (or of the part of it streamed before a failure)."""
    embeddings: tuple[tuple[float, ...], ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.model is not None


@dataclass(frozen=True)
class ModelRuntime:
    """What it takes to call one model: its adapter and endpoint, resolved by the caller."""

    adapter: Adapter
    endpoint: Endpoint


def tool_arguments_check(calls: tuple[ToolCall, ...]) -> None:
    """Raises `InvalidResponse` for the first call whose arguments are neither empty nor a
    JSON object (what a protocol that carries them as an object cannot hold)."""
    for call in calls:
        if tool_arguments_object(call) is None:
            raise InvalidResponse(
                f"the model called {call.name} ({call.id}) with arguments that are not a JSON "
                f"object: {call.arguments[:200]!r}"
            )


def _breaker_tell(breaker: Breaker, model_id: int, error: ProviderError) -> None:
    """A failed attempt's verdict for the model's circuit breaker. A refusal of the request's
    shape says nothing against the model: a prompt over its window was answered (the provider
    is up), and a feature its protocol does not carry was refused before any call (no verdict;
    a half-open probe slot is held until the breaker's probe timeout)."""
    if isinstance(error, ContextTooLong):
        breaker.record_success(model_id)
    elif not isinstance(error, FeatureUnsupported):
        breaker.record_failure(model_id)


def next_could_succeed(error: ProviderError, failed: ModelSpec, candidate: ModelSpec) -> bool:
    """After a non-retryable error, whether another model may still answer the same request."""
    if isinstance(error, ProviderAuthFailed):
        return candidate.provider_name != failed.provider_name
    if isinstance(error, FeatureUnsupported):
        # This provider's protocol does not carry what the request asks; another's may.
        return candidate.provider_kind != failed.provider_kind
    if isinstance(error, ContextTooLong):
        return candidate.context_window > failed.context_window
    if isinstance(error, ProviderRejected):
        # 404 (model unknown there) is the provider's problem; 400 is the request's.
        return error.status == 404
    return True


@dataclass(frozen=True, slots=True)
class ChainContext:
    """What the walk asks of the request it serves, model by model: the request each model is
    sent, how to call it, the `Started` event that announces it, its admission (budgets: an
    error it returns skips the model) and the circuit breakers."""

    chat_request_for: Callable[[ModelSpec], ChatRequest]
    runtime_for: Callable[[ModelSpec], ModelRuntime]
    started_event: Callable[[ModelSpec], Started]
    admit: Callable[[ModelSpec], Awaitable[ProviderError | None]] | None = None
    breaker: Breaker | None = None
    embedding_request_for: Callable[[ModelSpec], EmbeddingRequest] | None = None
    """Set for an embeddings request: each model is asked for vectors instead of text."""
    tool_arguments_objects: bool = False
    """The client's protocol carries a tool call's arguments as an object (Anthropic's `input`,
    Gemini's `args`): an answer whose call is no JSON object is an invalid answer of that
    model (a buffered one falls back; a streamed one ends with the error)."""


async def execute_chain(
    context: ChainContext,
    *,
    chain: tuple[ModelSpec, ...],
    outcome: ChainOutcome,
    retry: RetryPolicy | None = None,
    rng: random.Random | None = None,
    buffered: bool = False,
) -> AsyncGenerator[Started | Delta | Fallback, None]:
    """Stream the answer from the first model of `chain` that gives one; fill `outcome`.

    `context.admit` is asked before a model is tried (budgets): an error it returns skips the
    model. `buffered`: the caller shows nothing before the end, so the text comes as one `Delta`
    once an attempt has succeeded, and an attempt that fails mid-answer is discarded and retried.
    """
    breaker = context.breaker or NoBreaker()
    admit, started_event = context.admit, context.started_event
    runtime_for, chat_request_for = context.runtime_for, context.chat_request_for
    retry = retry or RetryPolicy()
    rng = rng or _jitter
    began = time.perf_counter()
    waited_s = 0.0
    announced: ModelSpec | None = None
    last_error: ProviderError | None = None

    for model in chain:
        failed = outcome.model
        if (
            last_error is not None
            and failed is not None
            and not next_could_succeed(last_error, failed, model)
        ):
            outcome.log.append(AttemptRecord(model.ref, "skipped: cannot succeed"))
            continue
        if not breaker.allow(model.id):
            outcome.log.append(AttemptRecord(model.ref, "skipped: circuit open"))
            continue
        refusal = await admit(model) if admit is not None else None
        if refusal is not None:
            outcome.log.append(
                AttemptRecord(model.ref, f"skipped: {refusal.code}", None, str(refusal))
            )
            last_error = refusal
            continue
        if announced is None:
            announced = model
            yield started_event(model)
        elif announced.id != model.id:
            assert last_error is not None
            yield Fallback(
                from_model=announced.ref,
                to_model=model.ref,
                error_code=last_error.code,
                message=last_error.message,
            )
            announced = model
            outcome.fallbacks += 1
        outcome.model = model
        runtime = runtime_for(model)
        chat_request = chat_request_for(model)
        for attempt in range(1, retry.attempts_per_model + 1):
            outcome.attempts += 1
            pieces: list[str] = []
            calls: list[ToolCallDelta] = []
            outcome.streaming = pieces
            try:
                answer = (
                    _embedded(
                        runtime.endpoint, model, context.embedding_request_for(model), outcome
                    )
                    if context.embedding_request_for is not None
                    else runtime.adapter.stream(runtime.endpoint, chat_request)
                )
                async with aclosing(answer) as chunks:
                    async for chunk in chunks:
                        if chunk.text or chunk.tool_calls:
                            if outcome.time_to_first_token_ms is None:
                                outcome.time_to_first_token_ms = _ms_since(began)
                            if chunk.text:
                                pieces.append(chunk.text)
                            calls.extend(chunk.tool_calls)
                            if not buffered:
                                yield Delta(chunk.text, chunk.tool_calls)
                        if chunk.usage is not None:
                            outcome.usage = chunk.usage
                        if chunk.finish_reason is not None:
                            outcome.finish_reason = chunk.finish_reason
                if context.tool_arguments_objects and calls:
                    tool_arguments_check(tool_calls_join(calls))
            except ProviderError as error:
                _breaker_tell(breaker, model.id, error)
                discarded = sum(map(len, pieces)) if buffered else 0
                outcome.log.append(
                    AttemptRecord(
                        model.ref, error.code, error.status, error.message[:300], discarded
                    )
                )
                last_error = error
                if buffered:
                    # Nothing of it reached the client: the next attempt starts afresh.
                    pieces.clear()
                    calls.clear()
                    outcome.usage = outcome.finish_reason = None
                    outcome.time_to_first_token_ms = None
                if pieces or calls:
                    outcome.text = "".join(pieces)
                    outcome.tool_calls = tool_calls_join(calls)
                    outcome.error = error
                    outcome.partial = True
                    return
                if not error.retryable or attempt == retry.attempts_per_model:
                    break
                delay = retry.delay_s(attempt, error.retry_after_s, rng)
                if waited_s + delay > retry.total_wait_s:
                    break
                waited_s += delay
                await asyncio.sleep(delay)
                continue
            breaker.record_success(model.id)
            outcome.log.append(AttemptRecord(model.ref, "ok"))
            outcome.text = "".join(pieces)
            outcome.tool_calls = tool_calls_join(calls)
            outcome.error = None
            if buffered and (outcome.text or calls):
                yield Delta(outcome.text, tuple(calls))
            return
    outcome.error = last_error or ProviderUnavailable("no model in the chain could be tried")


async def _embedded(
    endpoint: Endpoint, model: ModelSpec, request: EmbeddingRequest, outcome: ChainOutcome
) -> AsyncGenerator[ChatChunk, None]:
    """An embeddings call as the walk's one-chunk answer: the vectors go on `outcome`, the
    usage on the chunk (counted from the inputs when the provider reports none)."""
    embed = EMBEDDERS.get(model.provider_kind)
    if embed is None:
        raise ProviderRejected(
            f"provider kind {model.provider_kind!r} has no embeddings protocol", status=None
        )
    result = await embed(endpoint, request)
    # A server that ignores `dimensions` (llama.cpp's does), or a registry entry whose
    # `embedding_dimensions` is wrong, would hand the client vectors of another length than
    # the one it asked for or stores: such an answer is refused, and the walk goes on.
    expected = request.dimensions or model.embedding_dimensions
    lengths = sorted({len(vector) for vector in result.vectors})
    if expected is not None and lengths != [expected]:
        raise InvalidResponse(
            f"{model.ref} answered vectors of {', '.join(map(str, lengths))} dimensions; "
            f"{expected} were expected"
        )
    outcome.embeddings = result.vectors
    usage = result.usage or Usage(input=sum(estimate_tokens(text) for text in request.inputs))
    yield ChatChunk(usage=usage, finish_reason="stop")


def _ms_since(began: float) -> int:
    """Whole milliseconds since `began`, rounded up: a first token that came 0.4 ms after the
    call is 1 ms, never 0 (the doors that report it in nanoseconds, Ollama's, show a duration)."""
    return math.ceil((time.perf_counter() - began) * 1000)
