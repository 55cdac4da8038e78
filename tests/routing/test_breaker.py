from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from django.core.cache import BaseCache, cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.test import override_settings

from core.redis import redis_client
from routing.guards.breaker import (
    BreakerConfig,
    BreakerState,
    BreakerView,
    CircuitBreakers,
    breaker_view,
)
from tests.conftest import ROOT, subprocess_env

CONFIG = BreakerConfig(failure_threshold=3, window_s=60, cooldown_s=30, probe_timeout_s=60)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def shared() -> Iterator[tuple[BaseCache, BaseCache]]:
    """Two clients of the same Redis, each with its own connection pool: two processes' view."""
    cache.clear()
    first, second = caches.create_connection("default"), caches.create_connection("default")
    assert redis_client(first) is not None
    yield first, second
    cache.clear()


def fail(breakers: CircuitBreakers, model: str, times: int) -> BreakerView:
    view = breakers.view(model, CONFIG)
    for _ in range(times):
        view = breakers.record_failure(breakers.allow(model, CONFIG), CONFIG)
    return view


def test_state_is_a_pure_function_of_the_stored_facts() -> None:
    def at(now: float, opened: float | None, probe: bool = False) -> BreakerView:
        return breaker_view(
            model="m", opened_at=opened, failures=2, probe_held=probe, now=now, config=CONFIG
        )

    assert at(100, None) == BreakerView("m", BreakerState.CLOSED, 2, None, None)
    assert at(129.999, 100) == BreakerView("m", BreakerState.OPEN, 2, 100, 130)
    assert at(130, 100) == BreakerView("m", BreakerState.HALF_OPEN, 2, 100, 130, False)
    assert at(130, 100, probe=True).probe_in_flight is True
    assert at(129, 100).as_trace() == {
        "model": "m",
        "state": "open",
        "failures": 2,
        "opened_at": 100,
        "retry_at": 130,
        "probe_in_flight": False,
    }


def test_opens_after_the_threshold_within_one_window(shared) -> None:
    clock = Clock(6000.0)  # the start of a 60 s window
    a = CircuitBreakers(shared[0], clock)
    b = CircuitBreakers(shared[1], clock)

    assert fail(a, "gpt", 2).state is BreakerState.CLOSED
    clock.now = 6059.9
    opened = fail(b, "gpt", 1)

    assert opened.state is BreakerState.OPEN
    assert (opened.failures, opened.opened_at, opened.retry_at) == (3, 6059.9, 6089.9)
    assert a.allow("gpt", CONFIG).allowed is False
    assert b.allow("other", CONFIG).allowed is True


def test_failures_in_different_windows_do_not_add_up(shared) -> None:
    clock = Clock(6000.0)
    a = CircuitBreakers(shared[0], clock)
    fail(a, "gpt", 2)
    clock.now = 6060.0

    view = fail(a, "gpt", 2)

    assert (view.state, view.failures) == (BreakerState.CLOSED, 2)


def test_half_open_lets_exactly_one_probe_through_and_its_success_closes(shared) -> None:
    clock = Clock(6000.0)
    a = CircuitBreakers(shared[0], clock)
    b = CircuitBreakers(shared[1], clock)
    fail(a, "gpt", 3)

    clock.now = 6029.99
    assert b.allow("gpt", CONFIG).allowed is False
    clock.now = 6030.0
    probe = b.allow("gpt", CONFIG)
    other = a.allow("gpt", CONFIG)

    assert (probe.allowed, probe.probe, probe.view.state) == (True, True, BreakerState.HALF_OPEN)
    assert (other.allowed, other.probe) == (False, False)
    assert other.view.probe_in_flight is True
    # A late success from a call admitted before the breaker opened proves nothing.
    a.record_success(other)
    assert a.view("gpt", CONFIG).state is BreakerState.HALF_OPEN

    b.record_success(probe)

    assert a.view("gpt", CONFIG).state is BreakerState.CLOSED
    assert a.allow("gpt", CONFIG).allowed is True


def test_a_failed_probe_reopens_for_a_fresh_cooldown(shared) -> None:
    clock = Clock(6000.0)
    a = CircuitBreakers(shared[0], clock)
    b = CircuitBreakers(shared[1], clock)
    fail(a, "gpt", 3)
    clock.now = 6045.0
    probe = b.allow("gpt", CONFIG)

    view = b.record_failure(probe, CONFIG)

    assert (view.state, view.opened_at, view.retry_at) == (BreakerState.OPEN, 6045.0, 6075.0)
    clock.now = 6074.9
    assert a.allow("gpt", CONFIG).allowed is False
    clock.now = 6075.0
    assert a.allow("gpt", CONFIG).probe is True


def test_late_failures_keep_the_first_opening_time(shared) -> None:
    clock = Clock(6000.0)
    a = CircuitBreakers(shared[0], clock)
    permits = [a.allow("gpt", CONFIG) for _ in range(5)]
    for step, permit in enumerate(permits):
        clock.now = 6000.0 + step
        a.record_failure(permit, CONFIG)

    assert a.view("gpt", CONFIG).opened_at == 6002.0


def test_a_probe_whose_caller_died_expires(shared) -> None:
    config = BreakerConfig(failure_threshold=1, window_s=60, cooldown_s=0, probe_timeout_s=1)
    a = CircuitBreakers(shared[0])
    b = CircuitBreakers(shared[1])
    a.record_failure(a.allow("gpt", config), config)
    assert a.allow("gpt", config).probe is True
    assert b.allow("gpt", config).allowed is False

    time.sleep(1.1)

    assert b.allow("gpt", config).probe is True


def test_failure_counters_expire_with_their_window(shared) -> None:
    clock = Clock(6000.0)
    fail(CircuitBreakers(shared[0], clock), "gpt", 1)

    client = redis_client(shared[0])
    assert client is not None
    assert client.ttl(shared[0].make_key("breaker:gpt:failures:100")) == 120


def test_another_process_sees_the_breaker_it_did_not_open(shared) -> None:
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup()\n"
            "from routing.guards.breaker import BreakerConfig, CircuitBreakers\n"
            "config = BreakerConfig(failure_threshold=3, window_s=60, cooldown_s=30)\n"
            "breakers = CircuitBreakers()\n"
            "for _ in range(3):\n"
            "    breakers.record_failure(breakers.allow('remote', config), config)\n",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr

    permit = CircuitBreakers(shared[0]).allow("remote", CONFIG)

    assert (permit.allowed, permit.view.state) == (False, BreakerState.OPEN)


def test_thresholds_come_from_settings_and_per_model_overrides() -> None:
    with override_settings(ORCHESTRATOR_BREAKER_FAILURE_THRESHOLD=7):
        assert BreakerConfig.for_model() == BreakerConfig(7, 60, 30, 60)
        assert BreakerConfig.for_model({"failure_threshold": 2, "cooldown_s": 5}) == (
            BreakerConfig(2, 60, 5, 60)
        )
    with pytest.raises(ValueError, match="unknown breaker setting 'threshold'"):
        BreakerConfig.for_model({"threshold": 2})


def test_the_trace_reads_many_breakers_at_once(shared) -> None:
    clock = Clock(6000.0)
    a = CircuitBreakers(shared[0], clock)
    fail(a, "down", 3)
    fail(a, "flaky", 1)
    lenient = BreakerConfig(failure_threshold=10)

    views = a.views({"down": CONFIG, "flaky": lenient, "fine": CONFIG})

    assert [(v.model, v.state, v.failures) for v in views] == [
        ("down", BreakerState.OPEN, 3),
        ("flaky", BreakerState.CLOSED, 1),
        ("fine", BreakerState.CLOSED, 0),
    ]


def test_the_local_memory_backend_follows_the_same_transitions() -> None:
    store = LocMemCache("breaker-test", {})
    clock = Clock(6000.0)
    breakers = CircuitBreakers(store, clock)
    fail(breakers, "gpt", 3)
    clock.now = 6030.0

    probe = breakers.allow("gpt", CONFIG)
    assert (probe.probe, breakers.allow("gpt", CONFIG).allowed) == (True, False)
    breakers.record_success(probe)
    assert breakers.view("gpt", CONFIG).state is BreakerState.CLOSED
