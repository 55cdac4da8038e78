"""The whole request path on real Postgres, Redis and local upstream servers."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async

from analytics.models import RequestLog
from analytics.pricing import Prices, cost_usd, usage_estimate
from providers.adapters.types import Message
from providers.models import LLMModel, Provider
from routing.models import Budget, BudgetReservation, RoutingPolicy, RoutingRule, RuleFallback
from routing.pipeline.events import (
    Caller,
    Delta,
    Failed,
    Fallback,
    Finished,
    GatewayRequest,
    Started,
)
from routing.services import chat_stream
from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.gateway_support import baseline_model, upstream_models
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)


def registry(upstream: UpstreamServer) -> dict[str, LLMModel]:
    models = upstream_models(upstream)
    models["premium"] = baseline_model(upstream, enabled=True)
    policy = RoutingPolicy.objects.create(name="test-policy", is_default=True)
    rule = RoutingRule.objects.create(
        policy=policy, task_type="general", primary=models["alpha"], tiers=[]
    )
    RuleFallback.objects.create(rule=rule, model=models["beta"], position=1)
    return models


def path(name: str) -> str:
    return f"/{name}/v1/chat/completions"


async def collect(request: GatewayRequest) -> list[Any]:
    return [event async for event in chat_stream(request)]


def ask(text: str = "Say hello", **kwargs: object) -> GatewayRequest:
    options: dict[str, object] = {"task_type": "general", "entry_point": "native"}
    options.update(kwargs)
    return GatewayRequest(messages=(Message("user", text),), **options)  # type: ignore[arg-type]


async def log_row(request: GatewayRequest) -> RequestLog:
    return await RequestLog.objects.aget(request_id=request.request_id)


async def test_routed_answer_is_streamed_costed_and_logged(upstream: UpstreamServer) -> None:
    models = await database_sync_to_async(registry)(upstream)
    upstream.reply(
        "POST",
        path("alpha"),
        Reply.sse(openai_sse(["Hel", "lo!"], usage=(1000, 200)), chunk_delay_s=0.02),
    )
    request = ask(caller=Caller(user_id=None, api_key_id=77))

    events = await collect(request)

    assert [type(e) for e in events] == [Started, Delta, Delta, Finished]
    started, finished = events[0], events[-1]
    assert started.model_ref == "alpha:alpha-model"
    assert finished.text == "Hello!"
    # 1000 x 1.25 / 1M + 200 x 10 / 1M = 0.00125 + 0.002
    assert finished.cost_usd == Decimal("0.00325")
    assert finished.cost_state == "reported"
    # Same tokens at the baseline's 10 / 30: 0.01 + 0.006
    assert finished.baseline_cost_usd == Decimal("0.016")
    assert (finished.attempts, finished.fallbacks, finished.cached) == (1, 0, False)
    row = await log_row(request)
    assert (row.status, row.error_code, row.entry_point) == ("success", "", "native")
    assert (row.model_id, row.model_name, row.provider_name) == (
        models["alpha"].id,
        "alpha-model",
        "alpha",
    )
    assert (row.input_tokens, row.output_tokens, row.api_key_id) == (1000, 200, 77)
    assert row.cost_usd == Decimal("0.00325")
    assert row.baseline_cost_usd == Decimal("0.016")
    assert row.task_type == "general"
    assert row.decision_trace["policy"] == "test-policy"
    assert row.decision_trace["attempts"] == [
        {"model": "alpha:alpha-model", "outcome": "ok", "status": None, "message": ""}
    ]
    assert row.time_to_first_token_ms is not None and row.latency_ms >= row.time_to_first_token_ms


async def test_failure_before_first_token_falls_back_and_is_logged_once(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(registry)(upstream)
    upstream.reply("POST", path("alpha"), Reply.json(fixture("openai/error_500.json"), status=500))
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["fine"], usage=(10, 1))))
    request = ask()

    events = await collect(request)

    assert [type(e) for e in events] == [Started, Fallback, Delta, Finished]
    assert events[1].to_model == "beta:beta-model"
    row = await log_row(request)
    assert (row.status, row.model_name, row.attempts, row.fallbacks) == (
        "success",
        "beta-model",
        3,
        1,
    )
    assert await RequestLog.objects.acount() == 1


async def test_provider_without_usage_is_estimated(upstream: UpstreamServer) -> None:
    await database_sync_to_async(registry)(upstream)
    upstream.reply("POST", path("alpha"), Reply.sse(openai_sse(["four score"], usage=None)))
    request = ask("abcdefgh")

    events = await collect(request)

    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.cost_state == "estimated"
    # "user: abcdefgh" counts 1 + 1 + 2 = 4 tokens; "four score" counts 1 + 2 = 3.
    assert (finished.usage.input, finished.usage.output) == (4, 3)
    # 4 x 1.25 / 1M + 3 x 10 / 1M
    assert finished.cost_usd == Decimal("0.000035")
    assert (await log_row(request)).cost_state == "estimated"


async def test_unknown_price_is_null_never_zero(upstream: UpstreamServer) -> None:
    models = await database_sync_to_async(registry)(upstream)
    alpha = models["alpha"]
    alpha.output_price_per_mtok_usd = None
    await database_sync_to_async(alpha.save)()
    upstream.reply("POST", path("alpha"), Reply.sse(openai_sse(["x"], usage=(5, 5))))
    request = ask()

    events = await collect(request)

    assert events[-1].cost_usd is None
    assert events[-1].cost_state == "unknown_price"
    row = await log_row(request)
    assert (row.cost_usd, row.cost_state, row.status) == (None, "unknown_price", "success")


async def test_empty_prompt_is_refused_and_logged(upstream: UpstreamServer) -> None:
    request = ask("   ")

    events = await collect(request)

    assert len(events) == 1 and isinstance(events[0], Failed)
    assert (events[0].code, events[0].http_status) == ("INVALID_REQUEST", 400)
    row = await log_row(request)
    assert (row.status, row.error_code, row.cost_state) == ("invalid", "INVALID_REQUEST", "none")


async def test_unknown_override_is_an_invalid_request(upstream: UpstreamServer) -> None:
    await database_sync_to_async(registry)(upstream)
    request = ask(model="nowhere:nothing")

    events = await collect(request)

    assert isinstance(events[0], Failed)
    assert events[0].code == "INVALID_REQUEST"
    assert "nowhere:nothing" in events[0].message
    assert (await log_row(request)).requested_model == "nowhere:nothing"


async def test_override_by_name_bypasses_routing(upstream: UpstreamServer) -> None:
    await database_sync_to_async(registry)(upstream)
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["b"])))
    request = ask(model="beta-model")

    events = await collect(request)

    assert events[0].model_ref == "beta:beta-model"
    assert isinstance(events[-1], Finished)
    assert (await log_row(request)).decision_trace["outcome"] == "override"


async def test_exhausted_budget_names_itself_and_holds_nothing(upstream: UpstreamServer) -> None:
    await database_sync_to_async(registry)(upstream)
    await Budget.objects.acreate(name="tiny", scope="global", limit_usd=Decimal("0.0000001"))
    request = ask()

    events = await collect(request)

    failed = events[-1]
    assert isinstance(failed, Failed)
    assert (failed.code, failed.http_status) == ("BUDGET_EXCEEDED", 402)
    assert "tiny" in failed.message
    row = await log_row(request)
    assert (row.status, row.error_code) == ("budget_refused", "BUDGET_EXCEEDED")
    assert not upstream.requests
    assert await BudgetReservation.objects.filter(state="held").acount() == 0


async def test_budget_is_settled_to_the_actual_cost(upstream: UpstreamServer) -> None:
    await database_sync_to_async(registry)(upstream)
    budget = await Budget.objects.acreate(name="team", scope="global", limit_usd=Decimal("5"))
    upstream.reply("POST", path("alpha"), Reply.sse(openai_sse(["ok"], usage=(1000, 200))))

    await collect(ask(max_tokens=100))

    period = await budget.periods.aget()
    assert period.spent_usd == Decimal("0.00325")
    assert period.reserved_usd == Decimal(0)


async def test_client_cancelling_mid_stream_is_logged_and_charged_for_what_it_received(
    upstream: UpstreamServer,
) -> None:
    models = await database_sync_to_async(registry)(upstream)
    budget = await Budget.objects.acreate(name="team", scope="global", limit_usd=Decimal("5"))
    upstream.reply(
        "POST", path("alpha"), Reply.sse(openai_sse(["a", "b", "c", "d"]), chunk_delay_s=0.5)
    )
    request = ask()
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for event in chat_stream(request):
            if isinstance(event, Delta):
                first_delta.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_delta.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    row = await log_row(request)
    assert (row.status, row.error_code) == ("cancelled", "CANCELLED")
    # "a" was generated and billed before the client left; no usage had arrived yet, so the
    # tokens of the prompt and of "a" are counted locally.
    alpha = models["alpha"]
    counted = usage_estimate(prompt="user: Say hello", completion="a")
    prices = Prices(alpha.input_price_per_mtok_usd, alpha.output_price_per_mtok_usd)
    cost = cost_usd(counted, prices)
    assert cost is not None and cost > 0
    assert (row.input_tokens, row.output_tokens) == (counted.input, counted.output)
    assert (row.cost_usd, row.cost_state) == (cost, "estimated")
    period = await budget.periods.aget()
    assert (period.spent_usd, period.reserved_usd) == (cost, Decimal(0))
    assert await BudgetReservation.objects.filter(state="held").acount() == 0


async def test_second_identical_request_is_answered_from_cache(upstream: UpstreamServer) -> None:
    await database_sync_to_async(registry)(upstream)
    upstream.reply("POST", path("alpha"), Reply.sse(openai_sse(["cached text"], usage=(1000, 200))))
    first = ask("What is two plus two?", temperature=0.0)
    second = ask("What is two plus two?", temperature=0.0)

    await collect(first)
    events = await collect(second)

    assert [type(e) for e in events] == [Started, Delta, Finished]
    assert events[0].cached is True
    finished = events[-1]
    assert (finished.text, finished.cached, finished.cost_usd) == ("cached text", True, Decimal(0))
    assert finished.baseline_cost_usd == Decimal("0.016")
    assert len(upstream.requests) == 1
    row = await log_row(second)
    assert (row.cache_hit, row.cost_usd, row.status, row.attempts) == (
        True,
        Decimal(0),
        "success",
        0,
    )
    assert row.baseline_cost_usd == Decimal("0.016")


async def test_cache_bypass_always_calls_the_model(upstream: UpstreamServer) -> None:
    await database_sync_to_async(registry)(upstream)
    upstream.reply("POST", path("alpha"), Reply.sse(openai_sse(["fresh"])))

    await collect(ask("Same question", use_cache=False, temperature=0.0))
    events = await collect(ask("Same question", use_cache=False, temperature=0.0))

    assert events[-1].cached is False
    assert len(upstream.requests) == 2


async def test_rate_limited_key_gets_429_details_and_a_log_row(upstream: UpstreamServer) -> None:
    await database_sync_to_async(registry)(upstream)
    upstream.reply("POST", path("alpha"), Reply.sse(openai_sse(["ok"])))
    caller = Caller(api_key_id=424242, rpm_limit=2)
    allowed = [await collect(ask(f"q{i}", caller=caller, use_cache=False)) for i in range(2)]
    refused_request = ask("q3", caller=caller)
    refused = await collect(refused_request)

    assert all(isinstance(events[-1], Finished) for events in allowed)
    assert allowed[0][-1].rate_limit.remaining_requests == 1
    assert allowed[1][-1].rate_limit.remaining_requests == 0
    assert len(refused) == 1
    failed = refused[0]
    assert (failed.code, failed.http_status) == ("RATE_LIMIT_EXCEEDED", 429)
    assert failed.retry_after_s is not None and failed.retry_after_s >= 1
    assert failed.rate_limit.remaining_requests == 0
    row = await log_row(refused_request)
    assert (row.status, row.error_code, row.api_key_id) == (
        "rate_limited",
        "RATE_LIMIT_EXCEEDED",
        424242,
    )
    assert len(upstream.requests) == 2


async def test_open_breaker_is_skipped_and_shown_in_the_trace(upstream: UpstreamServer) -> None:
    await database_sync_to_async(registry)(upstream)
    upstream.reply("POST", path("alpha"), Reply.json(fixture("openai/error_500.json"), status=500))
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["b"])))
    from routing.guards.breaker import BreakerConfig

    threshold = BreakerConfig.for_model().failure_threshold
    for i in range((threshold + 1) // 2):
        await collect(ask(f"warm {i}", use_cache=False))
    upstream.reset()
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["b"])))
    request = ask("after", use_cache=False)

    events = await collect(request)

    assert events[0].model_ref == "beta:beta-model"
    assert not [r for r in upstream.requests if r.path == path("alpha")]
    row = await log_row(request)
    assert row.decision_trace["attempts"][0] == {
        "model": "alpha:alpha-model",
        "outcome": "skipped: circuit open",
        "status": None,
        "message": "",
    }


async def test_a_rate_limited_request_gives_back_the_hold_taken_beside_the_guards(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(registry)(upstream)
    budget = await Budget.objects.acreate(name="team", scope="global", limit_usd=Decimal("5"))
    upstream.reply("POST", path("alpha"), Reply.sse(openai_sse(["ok"], usage=(1000, 200))))
    caller = Caller(api_key_id=434343, rpm_limit=1)
    await collect(ask("q1", caller=caller, use_cache=False, max_tokens=100))
    refused = ask("q2", caller=caller, use_cache=False, max_tokens=100)

    events = await collect(refused)

    assert [type(e) for e in events] == [Failed]
    assert events[0].code == "RATE_LIMIT_EXCEEDED"
    # The hold went out with the guards' reads; the refusal released it.
    lines = BudgetReservation.objects.filter(request_id=refused.request_id)
    assert [(r.state, r.actual_usd) async for r in lines] == [("released", Decimal(0))]
    period = await budget.periods.aget()
    assert (period.spent_usd, period.reserved_usd) == (Decimal("0.00325"), Decimal(0))


def open_breaker(ref: str) -> None:
    from routing.guards.breaker import BreakerConfig
    from routing.pipeline.shared import breakers

    config = BreakerConfig.for_model()
    for _ in range(config.failure_threshold):
        breakers.record_failure(breakers.allow(ref, config), config)


async def test_an_open_breaker_gives_back_the_first_models_hold(upstream: UpstreamServer) -> None:
    await database_sync_to_async(registry)(upstream)
    await database_sync_to_async(open_breaker)("alpha:alpha-model")
    budget = await Budget.objects.acreate(name="team", scope="global", limit_usd=Decimal("5"))
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["b"], usage=(1000, 200))))
    request = ask("after", use_cache=False, max_tokens=100)

    events = await collect(request)

    assert events[0].model_ref == "beta:beta-model"
    assert isinstance(events[-1], Finished)
    lines = BudgetReservation.objects.filter(request_id=request.request_id).order_by("id")
    states = [(r.state, r.actual_usd) async for r in lines]
    # alpha's hold, taken beside the guards, released; beta's held by the fallback, settled.
    assert states == [("released", Decimal(0)), ("settled", events[-1].cost_usd)]
    period = await budget.periods.aget()
    assert (period.spent_usd, period.reserved_usd) == (events[-1].cost_usd, Decimal(0))


async def test_model_deleted_while_its_request_ran_keeps_the_row(upstream: UpstreamServer) -> None:
    models = await database_sync_to_async(registry)(upstream)
    upstream.reply("POST", path("beta"), Reply.sse(openai_sse(["b"], usage=(3, 1))))
    request = ask(model="beta:beta-model")
    events = chat_stream(request)

    assert isinstance(await anext(events), Started)
    await RuleFallback.objects.filter(model=models["beta"]).adelete()
    await LLMModel.objects.filter(pk=models["beta"].pk).adelete()
    rest = [event async for event in events]

    assert isinstance(rest[-1], Finished)
    row = await log_row(request)
    assert (row.model_id, row.model_name, row.provider_name, row.status) == (
        None,
        "beta-model",
        "beta",
        "success",
    )


async def test_free_model_answers_under_an_exhausted_budget_without_a_hold(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(registry)(upstream)
    local = await Provider.objects.acreate(
        name="local",
        kind="openai_compatible",
        base_url=f"{upstream.url}/local/v1",
        locality="local",
    )
    await LLMModel.objects.acreate(
        provider=local,
        name="tiny",
        tier="small_local",
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )
    await Budget.objects.acreate(name="spent", scope="global", limit_usd=Decimal("0"))
    upstream.reply("POST", path("local"), Reply.sse(openai_sse(["free"], usage=(5, 1))))
    request = ask(model="local:tiny")

    events = await collect(request)

    assert isinstance(events[-1], Finished)
    assert events[-1].cost_usd == Decimal(0)
    assert await BudgetReservation.objects.acount() == 0
    assert (await log_row(request)).status == "success"
