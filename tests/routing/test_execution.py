from __future__ import annotations

import dataclasses
import random
import uuid
from decimal import Decimal

import pytest

from providers.adapters.registry import adapter_for
from providers.adapters.types import (
    ChatRequest,
    Endpoint,
    Message,
    ProviderError,
    Tool,
    ToolChoice,
    Usage,
)
from routing.engine.values import ModelSpec
from routing.pipeline.events import Delta, Fallback, Started
from routing.pipeline.execution import (
    ChainContext,
    ChainOutcome,
    ModelRuntime,
    RetryPolicy,
    execute_chain,
)
from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.streams import openai_sse

NO_WAIT = RetryPolicy(attempts_per_model=2, base_delay_s=0.0, max_delay_s=0.0, total_wait_s=5.0)


def spec(model_id: int, provider: str, name: str) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        provider_name=provider,
        provider_kind="openai_compatible",
        name=name,
        locality="cloud",
        tier="standard",
        input_price_per_mtok_usd=Decimal("1"),
        output_price_per_mtok_usd=Decimal("2"),
        cached_input_price_per_mtok_usd=None,
        context_window=8192,
        max_output_tokens=1024,
    )


A, B, C = spec(1, "alpha", "m-a"), spec(2, "beta", "m-b"), spec(3, "gamma", "m-c")


class SetBreaker:
    def __init__(self, open_ids: set[int] | None = None) -> None:
        self.open_ids = open_ids or set()
        self.failures: list[int] = []
        self.successes: list[int] = []

    def allow(self, model_id: int) -> bool:
        return model_id not in self.open_ids

    def record_success(self, model_id: int) -> None:
        self.successes.append(model_id)

    def record_failure(self, model_id: int) -> None:
        self.failures.append(model_id)


async def run(
    upstream: UpstreamServer,
    chain: tuple[ModelSpec, ...],
    *,
    breaker: SetBreaker | None = None,
    retry: RetryPolicy = NO_WAIT,
    read_timeout_s: float = 5.0,
    admit=None,
    buffered: bool = False,
    request: ChatRequest | None = None,
) -> tuple[list[Started | Delta | Fallback], ChainOutcome]:
    outcome = ChainOutcome()

    def runtime_for(model: ModelSpec) -> ModelRuntime:
        return ModelRuntime(
            adapter=adapter_for(model.provider_kind),
            endpoint=Endpoint(
                base_url=f"{upstream.url}/{model.provider_name}/v1",
                read_timeout_s=read_timeout_s,
            ),
        )

    def started(model: ModelSpec) -> Started:
        return Started(
            request_id=uuid.UUID(int=1),
            model_id=model.id,
            model_ref=model.ref,
            provider_name=model.provider_name,
            locality=model.locality,
            task_type="general",
            complexity="simple",
            decision_trace={},
        )

    events = [
        event
        async for event in execute_chain(
            ChainContext(
                chat_request_for=lambda m: dataclasses.replace(
                    request or ChatRequest(model="", messages=(Message("user", "hi"),)),
                    model=m.name,
                    max_tokens=16,
                ),
                runtime_for=runtime_for,
                started_event=started,
                admit=admit,
                breaker=breaker,
            ),
            chain=chain,
            outcome=outcome,
            retry=retry,
            rng=random.Random(7),
            buffered=buffered,
        )
    ]
    return events, outcome


def path(provider: str) -> str:
    return f"/{provider}/v1/chat/completions"


def kinds(events: list[Started | Delta | Fallback]) -> list[str]:
    out = []
    for event in events:
        if isinstance(event, Started):
            out.append(f"started {event.model_ref}")
        elif isinstance(event, Fallback):
            out.append(f"fallback {event.from_model}->{event.to_model} {event.error_code}")
        elif isinstance(event, Delta):
            out.append(f"delta {event.text}")
    return out


async def test_first_model_answers_without_fallback(upstream: UpstreamServer) -> None:
    upstream.reply(
        "POST",
        path("alpha"),
        Reply.sse(openai_sse(["Hel", "lo"], usage=(9, 2)), chunk_delay_s=0.02),
    )

    events, outcome = await run(upstream, (A, B))

    assert kinds(events) == ["started alpha:m-a", "delta Hel", "delta lo"]
    assert outcome.succeeded
    assert (outcome.text, outcome.attempts, outcome.fallbacks) == ("Hello", 1, 0)
    assert outcome.usage == Usage(input=9, output=2, cached=0)
    assert outcome.finish_reason == "stop"
    assert outcome.time_to_first_token_ms is not None
    assert [r.outcome for r in outcome.log] == ["ok"]


async def test_500_then_429_then_reset_then_third_model_answers(upstream: UpstreamServer) -> None:
    upstream.reply("POST", path("alpha"), Reply.json(fixture("openai/error_500.json"), status=500))
    upstream.reply(
        "POST",
        path("beta"),
        Reply.json(fixture("openai/error_429.json"), status=429, headers={"retry-after": "0"}),
        Reply.sse(openai_sse(["x"]), reset_after_chunks=0),
    )
    upstream.reply("POST", path("gamma"), Reply.sse(openai_sse(["ok"])))
    breaker = SetBreaker()

    events, outcome = await run(upstream, (A, B, C), breaker=breaker)

    assert kinds(events) == [
        "started alpha:m-a",
        "fallback alpha:m-a->beta:m-b MODEL_UNAVAILABLE",
        "fallback beta:m-b->gamma:m-c MODEL_UNAVAILABLE",
        "delta ok",
    ]
    assert [(r.model_ref, r.outcome, r.status) for r in outcome.log] == [
        ("alpha:m-a", "MODEL_UNAVAILABLE", 500),
        ("alpha:m-a", "MODEL_UNAVAILABLE", 500),
        ("beta:m-b", "RATE_LIMIT_EXCEEDED", 429),
        ("beta:m-b", "MODEL_UNAVAILABLE", None),
        ("gamma:m-c", "ok", None),
    ]
    assert (outcome.attempts, outcome.fallbacks, outcome.text) == (5, 2, "ok")
    assert outcome.model == C
    assert breaker.failures == [1, 1, 2, 2]
    assert breaker.successes == [3]
    assert len([r for r in upstream.requests if r.path == path("alpha")]) == 2


async def test_a_prompt_over_the_window_is_no_failure_of_the_model(
    upstream: UpstreamServer,
) -> None:
    # The provider answered (400, context length): it is up, so its breaker hears a success.
    upstream.reply(
        "POST",
        path("alpha"),
        Reply.json(fixture("openai/error_context_length.json"), status=400),
    )
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["long"])))
    breaker = SetBreaker()
    wide = dataclasses.replace(B, context_window=128_000)

    events, outcome = await run(upstream, (A, wide), breaker=breaker)

    assert kinds(events) == [
        "started alpha:m-a",
        "fallback alpha:m-a->beta:m-b TOKEN_LIMIT_EXCEEDED",
        "delta long",
    ]
    assert (breaker.failures, breaker.successes) == ([], [1, 2])
    assert (outcome.model, outcome.attempts) == (wide, 2)


async def test_a_feature_the_protocol_cannot_carry_gives_the_breaker_no_verdict(
    upstream: UpstreamServer,
) -> None:
    # Ollama's protocol has no "required" tool choice: its adapter refuses before any call.
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["called"])))
    breaker = SetBreaker()
    local = dataclasses.replace(A, provider_kind="ollama")
    request = ChatRequest(
        model="",
        messages=(Message("user", "weather?"),),
        tools=(Tool("weather", parameters={"type": "object"}),),
        tool_choice=ToolChoice("required"),
    )

    events, outcome = await run(upstream, (local, B), breaker=breaker, request=request)

    assert kinds(events) == [
        "started alpha:m-a",
        "fallback alpha:m-a->beta:m-b TOOLS_NOT_SUPPORTED",
        "delta called",
    ]
    assert (breaker.failures, breaker.successes) == ([], [2])
    assert (outcome.model, outcome.text) == (B, "called")
    assert [r.path for r in upstream.requests] == [path("beta")]


async def test_timeout_is_retried_then_falls_back(upstream: UpstreamServer) -> None:
    upstream.reply("POST", path("alpha"), Reply.sse(openai_sse(["late"]), delay_s=1.0))
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["fast"])))

    events, outcome = await run(upstream, (A, B), read_timeout_s=0.2)

    assert kinds(events) == [
        "started alpha:m-a",
        "fallback alpha:m-a->beta:m-b TIMEOUT",
        "delta fast",
    ]
    assert [r.outcome for r in outcome.log] == ["TIMEOUT", "TIMEOUT", "ok"]


async def test_failure_after_first_token_is_partial_and_never_falls_back(
    upstream: UpstreamServer,
) -> None:
    upstream.reply(
        "POST",
        path("alpha"),
        Reply.sse(openai_sse(["one ", "two ", "three"]), reset_after_chunks=3, chunk_delay_s=0.02),
    )
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["never"])))

    events, outcome = await run(upstream, (A, B))

    assert kinds(events) == ["started alpha:m-a", "delta one ", "delta two "]
    assert outcome.partial is True
    assert outcome.text == "one two "
    assert outcome.error is not None and outcome.error.retryable
    assert outcome.attempts == 1
    assert not [r for r in upstream.requests if r.path == path("beta")]


MID_ANSWER_FAILURES = {
    "reset": Reply.sse(openai_sse(["one ", "two ", "three"]), reset_after_chunks=3),
    "truncated": Reply.sse(openai_sse(["one ", "two "], usage=(40, 2), done=False)),
    "malformed_json": Reply.sse(
        openai_sse(["one ", "two "], usage=None, done=False) + b"data: {not json\n\n"
    ),
    "error_after_headers": Reply.sse(
        openai_sse(["one ", "two "], usage=None, done=False)
        + b'data: {"error": {"message": "upstream overloaded", "type": "server_error"}}\n\n'
    ),
}
MID_ANSWER_CODES = {
    "reset": "MODEL_UNAVAILABLE",
    "truncated": "INVALID_RESPONSE",
    "malformed_json": "INVALID_RESPONSE",
    "error_after_headers": "MODEL_UNAVAILABLE",
}


@pytest.mark.parametrize("failure", sorted(MID_ANSWER_FAILURES))
async def test_buffered_answer_failing_mid_answer_is_retried_then_falls_back(
    upstream: UpstreamServer, failure: str
) -> None:
    upstream.reply("POST", path("alpha"), MID_ANSWER_FAILURES[failure].but(chunk_delay_s=0.01))
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["from ", "beta"], usage=(9, 2))))
    breaker = SetBreaker()

    events, outcome = await run(upstream, (A, B), breaker=breaker, buffered=True)

    code = MID_ANSWER_CODES[failure]
    # Nothing of the failed attempts is passed on: the answer comes whole, once.
    assert kinds(events) == [
        "started alpha:m-a",
        f"fallback alpha:m-a->beta:m-b {code}",
        "delta from beta",
    ]
    assert outcome.succeeded and outcome.partial is False
    assert (outcome.model, outcome.text, outcome.usage) == (B, "from beta", Usage(9, 2, 0))
    assert (outcome.attempts, outcome.fallbacks) == (3, 1)
    assert [(r.model_ref, r.outcome, r.discarded_chars) for r in outcome.log] == [
        ("alpha:m-a", code, len("one two ")),
        ("alpha:m-a", code, len("one two ")),
        ("beta:m-b", "ok", 0),
    ]
    assert outcome.log[0].as_json()["discarded_chars"] == 8
    assert "discarded_chars" not in outcome.log[2].as_json()
    assert breaker.failures == [1, 1]
    assert breaker.successes == [2]
    assert len([r for r in upstream.requests if r.path == path("alpha")]) == 2


async def test_buffered_answer_keeps_only_the_answering_attempts_usage(
    upstream: UpstreamServer,
) -> None:
    # The retry of the same model answers; it reports no usage, so none may be left over from
    # the attempt that failed after its usage chunk.
    upstream.reply(
        "POST",
        path("alpha"),
        Reply.sse(openai_sse(["lost"], usage=(500, 50), done=False) + b"data: {not json\n\n"),
        Reply.sse(openai_sse(["kept"], usage=None)),
    )

    events, outcome = await run(upstream, (A, B), buffered=True)

    assert kinds(events) == ["started alpha:m-a", "delta kept"]
    assert (outcome.model, outcome.text, outcome.usage) == (A, "kept", None)
    assert [(r.outcome, r.discarded_chars) for r in outcome.log] == [
        ("INVALID_RESPONSE", 4),
        ("ok", 0),
    ]


async def test_buffered_answer_failing_mid_answer_everywhere_is_an_error_not_partial(
    upstream: UpstreamServer,
) -> None:
    cut = Reply.sse(openai_sse(["one ", "two ", "three"]), reset_after_chunks=3)
    upstream.reply("POST", path("alpha"), cut)
    upstream.reply("POST", path("beta"), cut)

    events, outcome = await run(upstream, (A, B), buffered=True)

    assert kinds(events) == ["started alpha:m-a", "fallback alpha:m-a->beta:m-b MODEL_UNAVAILABLE"]
    assert not outcome.succeeded
    assert outcome.partial is False
    assert (outcome.text, outcome.usage, outcome.streaming) == ("", None, [])
    assert outcome.error is not None and outcome.error.code == "MODEL_UNAVAILABLE"
    assert outcome.attempts == 4


async def test_bad_request_does_not_fall_back(upstream: UpstreamServer) -> None:
    bad = {"error": {"message": "Invalid 'temperature'", "type": "invalid_request_error"}}
    upstream.reply("POST", path("alpha"), Reply.json(bad, status=400))
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["never"])))

    events, outcome = await run(upstream, (A, B))

    assert kinds(events) == ["started alpha:m-a"]
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.status) == ("MODEL_ERROR", 400)
    assert "Invalid 'temperature'" in outcome.error.message
    assert [(r.model_ref, r.outcome) for r in outcome.log] == [
        ("alpha:m-a", "MODEL_ERROR"),
        ("beta:m-b", "skipped: cannot succeed"),
    ]
    assert outcome.attempts == 1


async def test_auth_failure_falls_back_to_another_provider_only(upstream: UpstreamServer) -> None:
    upstream.reply("POST", path("alpha"), Reply.json(fixture("openai/error_401.json"), status=401))
    same_provider = spec(4, "alpha", "m-a2")
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["from beta"])))

    events, outcome = await run(upstream, (A, same_provider, B))

    assert kinds(events)[-2:] == [
        "fallback alpha:m-a->beta:m-b AUTHENTICATION_FAILED",
        "delta from beta",
    ]
    assert [(r.model_ref, r.outcome) for r in outcome.log] == [
        ("alpha:m-a", "AUTHENTICATION_FAILED"),
        ("alpha:m-a2", "skipped: cannot succeed"),
        ("beta:m-b", "ok"),
    ]


async def test_open_breaker_skips_the_model(upstream: UpstreamServer) -> None:
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["b"])))

    events, outcome = await run(upstream, (A, B), breaker=SetBreaker({1}))

    assert kinds(events) == ["started beta:m-b", "delta b"]
    assert [(r.model_ref, r.outcome) for r in outcome.log] == [
        ("alpha:m-a", "skipped: circuit open"),
        ("beta:m-b", "ok"),
    ]
    assert not [r for r in upstream.requests if r.path == path("alpha")]


async def test_every_model_failing_gives_the_last_error(upstream: UpstreamServer) -> None:
    upstream.reply("POST", path("alpha"), Reply.json(fixture("openai/error_500.json"), status=500))
    upstream.reply("POST", path("beta"), Reply.json(fixture("openai/error_500.json"), status=503))

    events, outcome = await run(upstream, (A, B))

    assert kinds(events) == ["started alpha:m-a", "fallback alpha:m-a->beta:m-b MODEL_UNAVAILABLE"]
    assert not outcome.succeeded
    assert outcome.error is not None and outcome.error.status == 503
    assert outcome.attempts == 4


async def test_admission_refusal_skips_to_the_next_model(upstream: UpstreamServer) -> None:
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["free"])))

    async def admit(model: ModelSpec) -> ProviderError | None:
        if model.id == 1:
            refusal = ProviderError("Budget 'team' exceeded")
            refusal.code = "BUDGET_EXCEEDED"
            return refusal
        return None

    events, outcome = await run(upstream, (A, B), admit=admit)

    assert kinds(events) == ["started beta:m-b", "delta free"]
    assert [(r.model_ref, r.outcome) for r in outcome.log] == [
        ("alpha:m-a", "skipped: BUDGET_EXCEEDED"),
        ("beta:m-b", "ok"),
    ]


@pytest.mark.parametrize("retry_after", [None, 0.05])
def test_backoff_is_bounded_and_honours_retry_after(retry_after: float | None) -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=0.3)
    rng = random.Random(3)

    delays = [policy.delay_s(n, retry_after, rng) for n in range(1, 8)]

    assert all(0 <= d <= 0.3 for d in delays)
    if retry_after is not None:
        assert min(delays) >= retry_after
