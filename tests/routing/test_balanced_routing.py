"""The balancer on the request path: the models of one rung (same tier, same task) share the
requests as the policy's strategy says, skipping open breakers, each behind its own local
upstream server; every decision's trace says which strategy picked the model among which."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async

from providers.adapters.types import Message
from providers.models import LLMModel, Provider
from routing.guards.breaker import BreakerConfig, CircuitBreakers
from routing.models import RoutingPolicy
from routing.pipeline.events import Finished, GatewayRequest
from routing.services import chat_stream
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)

NAMES = ("a", "b", "c")
REFS = [f"{name}:{name}-model" for name in NAMES]
PATH = "/v1/chat/completions"


@pytest.fixture
def upstreams() -> Iterator[dict[str, UpstreamServer]]:
    """Three upstream servers, each on its own port, each answering with its own name."""
    servers = {name: UpstreamServer().start() for name in NAMES}
    for name, server in servers.items():
        server.reply("POST", PATH, Reply.sse(openai_sse([f"from {name}"])))
    yield servers
    for server in servers.values():
        server.stop()


def rung_of_three(upstreams: dict[str, UpstreamServer], balance: dict[str, Any]) -> None:
    """Three standard-tier models (a the cheapest, c the dearest), the only rung the simple
    prompt's ladder reaches, under a default policy that balances as `balance` says."""
    for price, name in enumerate(NAMES, 1):
        provider = Provider.objects.create(
            name=name,
            kind="openai_compatible",
            base_url=f"{upstreams[name].url}/v1",
            locality="cloud",
        )
        LLMModel.objects.create(
            provider=provider,
            name=f"{name}-model",
            tier="standard",
            input_price_per_mtok_usd=Decimal(price) / 10,
            output_price_per_mtok_usd=Decimal(price) / 10,
        )
    RoutingPolicy.objects.create(
        name="spread",
        is_default=True,
        router={"mode": "heuristic", "balance": balance},
    )


async def answer() -> Finished:
    request = GatewayRequest(
        messages=(Message("user", "Say hello"),), task_type="general", entry_point="native"
    )
    events = [event async for event in chat_stream(request)]
    finished = events[-1]
    assert isinstance(finished, Finished), finished
    return finished


async def answers(count: int) -> list[Finished]:
    return [await answer() for _ in range(count)]


def served(upstreams: dict[str, UpstreamServer]) -> dict[str, int]:
    return {name: len(server.requests) for name, server in upstreams.items()}


async def test_round_robin_rotates_the_rung_across_its_upstreams(
    upstreams: dict[str, UpstreamServer],
) -> None:
    await database_sync_to_async(rung_of_three)(upstreams, {"strategy": "round_robin"})

    finished = await answers(6)

    assert [f.model_ref for f in finished] == REFS + REFS
    assert [f.text for f in finished[:3]] == ["from a", "from b", "from c"]
    assert served(upstreams) == {"a": 2, "b": 2, "c": 2}
    trace = finished[1].decision_trace
    assert trace["pick"] == {"model": "b:b-model", "by": "round_robin", "among": REFS}
    assert trace["balance"]["strategy"] == "round_robin"
    [rung] = trace["balance"]["rungs"]
    assert rung["rung"] == "spread/standard/other"
    assert rung["candidates"] == REFS
    assert (rung["turn"], rung["picked"]) == (1, "b:b-model")
    assert rung["order"] == ["b:b-model", "c:c-model", "a:a-model"]
    assert trace["chain"][:3] == rung["order"]


async def test_an_open_breaker_takes_its_model_out_of_the_rotation(
    upstreams: dict[str, UpstreamServer],
) -> None:
    await database_sync_to_async(rung_of_three)(upstreams, {"strategy": "round_robin"})
    breakers, config = CircuitBreakers(), BreakerConfig.for_model()

    def trip_b() -> None:
        for _ in range(config.failure_threshold):
            breakers.record_failure(breakers.allow("b:b-model", config), config)

    await database_sync_to_async(trip_b)()

    finished = await answers(4)

    assert [f.model_ref for f in finished] == ["a:a-model", "c:c-model"] * 2
    assert served(upstreams) == {"a": 2, "b": 0, "c": 2}
    [rung] = finished[0].decision_trace["balance"]["rungs"]
    assert [(s["model"], s["state"]) for s in rung["skipped"]] == [("b:b-model", "open")]
    # Kept last in the chain, where execution asks its breaker again.
    assert rung["order"] == ["a:a-model", "c:c-model", "b:b-model"]
    assert finished[0].attempts == 1


async def test_least_latency_measures_each_upstream_then_keeps_to_the_fastest(
    upstreams: dict[str, UpstreamServer],
) -> None:
    await database_sync_to_async(rung_of_three)(upstreams, {"strategy": "least_latency"})
    for name, delay_s in (("a", 0.3), ("b", 0.02), ("c", 0.15)):
        upstreams[name].reply(
            "POST", PATH, Reply.sse(openai_sse([f"from {name}"]), delay_s=delay_s)
        )

    finished = await answers(6)

    # Unmeasured first, in the registry's order; then b, the fastest, every time.
    assert [f.model_ref for f in finished] == [*REFS, "b:b-model", "b:b-model", "b:b-model"]
    assert served(upstreams) == {"a": 1, "b": 4, "c": 1}
    trace = finished[3].decision_trace
    [rung] = trace["balance"]["rungs"]
    latencies = rung["latencies_ms"]
    assert latencies["b:b-model"] < latencies["c:c-model"] < latencies["a:a-model"]
    assert latencies["a:a-model"] >= 300
    assert rung["order"] == ["b:b-model", "c:c-model", "a:a-model"]
    assert trace["pick"] == {"model": "b:b-model", "by": "least_latency", "among": REFS}


async def test_weighted_shares_follow_the_policy_weights(
    upstreams: dict[str, UpstreamServer],
) -> None:
    balance = {"strategy": "weighted", "weights": {"a:a-model": 3, "c:c-model": 2}}
    await database_sync_to_async(rung_of_three)(upstreams, balance)

    finished = await answers(12)

    # Two cycles of 6 turns (3 + 1 + 2), spread out, not in runs.
    assert Counter(f.model_ref for f in finished) == {
        "a:a-model": 6,
        "b:b-model": 2,
        "c:c-model": 4,
    }
    assert [f.model_ref for f in finished[:6]] == [
        "a:a-model",
        "c:c-model",
        "a:a-model",
        "b:b-model",
        "c:c-model",
        "a:a-model",
    ]
    [rung] = finished[0].decision_trace["balance"]["rungs"]
    assert rung["weights"] == {"a:a-model": 3, "b:b-model": 1, "c:c-model": 2}


async def test_without_a_strategy_the_cheapest_is_picked_and_the_trace_says_so(
    upstreams: dict[str, UpstreamServer],
) -> None:
    await database_sync_to_async(rung_of_three)(upstreams, {})

    finished = await answers(3)

    assert [f.model_ref for f in finished] == ["a:a-model"] * 3
    trace = finished[0].decision_trace
    assert trace["balance"] == {"strategy": "none", "rungs": []}
    assert trace["pick"] == {
        "model": "a:a-model",
        "by": "tier:standard registry order",
        "among": REFS,
    }
