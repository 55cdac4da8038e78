from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import BaseCache, cache, caches
from django.test import override_settings

from routing.engine.values import BalanceSpec, Rung
from routing.guards.balancer import Balanced, Balancer, Strategy, deployments_order
from routing.guards.breaker import BreakerConfig, BreakerState, BreakerView, CircuitBreakers

HOSTS = ("ollama-a", "ollama-b", "ollama-c")
STRICT = BreakerConfig(failure_threshold=1, window_s=60, cooldown_s=300)


def view(name: str, state: BreakerState, probe: bool = False) -> BreakerView:
    return BreakerView(name, state, 0, 1.0, 2.0, probe)


@pytest.fixture
def stores() -> Iterator[tuple[BaseCache, BaseCache]]:
    cache.clear()
    yield caches.create_connection("default"), caches.create_connection("default")
    cache.clear()


def test_round_robin_rotates_over_the_healthy_deployments() -> None:
    orders = [
        deployments_order(HOSTS, views={}, strategy=Strategy.ROUND_ROBIN, turn=t).order
        for t in range(4)
    ]

    assert orders == [
        ("ollama-a", "ollama-b", "ollama-c"),
        ("ollama-b", "ollama-c", "ollama-a"),
        ("ollama-c", "ollama-a", "ollama-b"),
        ("ollama-a", "ollama-b", "ollama-c"),
    ]


def test_open_breakers_and_probed_half_open_ones_are_skipped() -> None:
    views = {
        "ollama-a": view("ollama-a", BreakerState.OPEN),
        "ollama-b": view("ollama-b", BreakerState.HALF_OPEN, probe=True),
        "ollama-c": view("ollama-c", BreakerState.HALF_OPEN, probe=False),
    }

    balanced = deployments_order(HOSTS, views=views, strategy=Strategy.ROUND_ROBIN, turn=7)

    assert balanced == Balanced(order=("ollama-c",), skipped=(views["ollama-a"], views["ollama-b"]))


def test_nothing_healthy_leaves_an_empty_order() -> None:
    views = {h: view(h, BreakerState.OPEN) for h in HOSTS}

    balanced = deployments_order(HOSTS, views=views, strategy=Strategy.LEAST_LATENCY)

    assert balanced.order == ()
    assert [v.model for v in balanced.skipped] == list(HOSTS)


def test_least_latency_measures_the_unmeasured_first_then_takes_the_fastest() -> None:
    order = deployments_order(
        ("a", "b", "c", "d"),
        views={},
        strategy=Strategy.LEAST_LATENCY,
        latencies_ms={"a": 250.0, "b": 90.0, "d": 90.0},
    ).order

    assert order == ("c", "b", "d", "a")


def test_processes_share_one_turn_counter(stores) -> None:
    first, second = Balancer(stores[0]), Balancer(stores[1])

    leaders = [
        balancer.order("llama3", HOSTS, {}, Strategy.ROUND_ROBIN).order[0]
        for balancer in (first, second, first, second, first, second)
    ]

    assert leaders == ["ollama-a", "ollama-b", "ollama-c", "ollama-a", "ollama-b", "ollama-c"]


def test_concurrent_requests_are_spread_exactly_evenly(stores) -> None:
    def leader(_: int) -> str:
        balancer = Balancer(caches.create_connection("default"))
        return balancer.order("llama3", HOSTS, {}, Strategy.ROUND_ROBIN).order[0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        counts = Counter(pool.map(leader, range(60)))

    assert counts == {"ollama-a": 20, "ollama-b": 20, "ollama-c": 20}


def test_a_tripped_deployment_is_skipped_by_every_process(stores) -> None:
    breakers = CircuitBreakers(stores[0])
    breakers.record_failure(breakers.allow("ollama-b", STRICT), STRICT)
    balancer = Balancer(stores[1])
    configs = dict.fromkeys(HOSTS, STRICT)

    orders = [balancer.order("llama3", HOSTS, configs, Strategy.ROUND_ROBIN) for _ in range(2)]

    assert [o.order for o in orders] == [("ollama-a", "ollama-c"), ("ollama-c", "ollama-a")]
    assert [v.model for v in orders[0].skipped] == ["ollama-b"]
    assert orders[0].skipped[0].state is BreakerState.OPEN


def test_latencies_recorded_by_one_process_steer_another(stores) -> None:
    Balancer(stores[0]).record_latency("ollama-a", 420.0)
    Balancer(stores[0]).record_latency("ollama-b", 35.5)
    Balancer(stores[0]).record_latency("ollama-c", 80.0)

    balanced = Balancer(stores[1]).order("llama3", HOSTS, {}, Strategy.LEAST_LATENCY)

    assert balanced.order == ("ollama-b", "ollama-c", "ollama-a")


@override_settings(ORCHESTRATOR_BALANCER_STRATEGY="least_latency")
def test_the_strategy_defaults_to_the_setting(stores) -> None:
    balancer = Balancer(stores[0])
    balancer.record_latency("ollama-a", 10.0)

    assert balancer.order("llama3", HOSTS, {}).order == ("ollama-b", "ollama-c", "ollama-a")


def test_weighted_interleaves_turns_in_proportion_to_the_weights() -> None:
    weights = {"ollama-a": 3, "ollama-c": 2}
    leaders = [
        deployments_order(
            HOSTS, views={}, strategy=Strategy.WEIGHTED, turn=t, weights=weights
        ).order[0]
        for t in range(12)
    ]

    cycle = ["ollama-a", "ollama-c", "ollama-a", "ollama-b", "ollama-c", "ollama-a"]
    assert leaders == cycle + cycle
    # The rest follow by weight, the heaviest first.
    assert deployments_order(
        HOSTS, views={}, strategy=Strategy.WEIGHTED, turn=3, weights=weights
    ).order == ("ollama-b", "ollama-a", "ollama-c")


def test_rungs_keep_their_own_turns_shared_by_every_process(stores) -> None:
    rungs = (Rung("p/standard/other", HOSTS), Rung("p/premium/other", ("big-1", "big-2")))
    spec = BalanceSpec("round_robin")
    first, second = Balancer(stores[0]), Balancer(stores[1])

    picks = [
        [order.trace["picked"] for order in balancer.rungs_order(rungs, spec)]
        for balancer in (first, second, first)
    ]

    assert picks == [
        ["ollama-a", "big-1"],
        ["ollama-b", "big-2"],
        ["ollama-c", "big-1"],
    ]


def test_a_rung_puts_a_tripped_model_last_and_says_why(stores) -> None:
    breakers = CircuitBreakers(stores[0])
    config = BreakerConfig.for_model()
    for _ in range(config.failure_threshold):
        breakers.record_failure(breakers.allow("ollama-a", config), config)

    [order] = Balancer(stores[1]).rungs_order(
        (Rung("p/standard/other", HOSTS),), BalanceSpec("least_latency")
    )

    assert order.order == ("ollama-b", "ollama-c", "ollama-a")
    assert order.trace["picked"] == "ollama-b"
    assert [(s["model"], s["state"]) for s in order.trace["skipped"]] == [("ollama-a", "open")]
    assert order.trace["latencies_ms"] == dict.fromkeys(HOSTS)
