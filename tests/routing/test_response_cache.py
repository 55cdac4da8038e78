from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from django.core.cache import BaseCache, cache, caches
from django.test import override_settings

from providers.adapters.types import ChatRequest, Message, Usage
from routing.guards.response_cache import (
    CachedAnswer,
    ResponseCache,
    cache_bypassed,
    response_cache_key,
)
from routing.guards.store import redis_client

REQUEST = ChatRequest(
    model="gpt-4o-mini",
    messages=(
        Message("system", "You answer in one word."),
        Message("user", "Capital of France?"),
    ),
    max_tokens=16,
    temperature=0.0,
)
USAGE = Usage(input=20, output=2, cached=0)


@pytest.fixture
def stores() -> Iterator[tuple[BaseCache, BaseCache]]:
    cache.clear()
    yield caches.create_connection("default"), caches.create_connection("default")
    cache.clear()


def test_a_miss_then_a_hit_with_text_and_usage_seen_by_another_process(stores) -> None:
    writer, reader = ResponseCache(stores[0]), ResponseCache(stores[1])
    assert reader.lookup(REQUEST) is None

    assert writer.save(REQUEST, text="Paris", usage=USAGE) is True
    hit = reader.lookup(REQUEST)

    assert isinstance(hit, CachedAnswer)
    assert (hit.text, hit.usage, hit.model) == ("Paris", USAGE, "gpt-4o-mini")
    assert abs(hit.cached_at - time.time()) < 5


@pytest.mark.parametrize(
    "changed",
    [
        replace(REQUEST, model="gpt-4o"),
        replace(REQUEST, temperature=0.7),
        replace(REQUEST, max_tokens=17),
        replace(REQUEST, top_p=0.9),
        replace(REQUEST, stop=("\n",)),
        replace(REQUEST, messages=(Message("system", "Be brief."), REQUEST.messages[1])),
        replace(REQUEST, messages=(REQUEST.messages[0], Message("user", "Capital of Spain?"))),
        replace(REQUEST, messages=REQUEST.messages[1:]),
        replace(
            REQUEST, messages=(Message("user", "You answer in one word."), REQUEST.messages[1])
        ),
    ],
)
def test_anything_that_shapes_the_answer_changes_the_key(stores, changed: ChatRequest) -> None:
    ResponseCache(stores[0]).save(REQUEST, text="Paris", usage=USAGE)

    assert response_cache_key(changed) != response_cache_key(REQUEST)
    assert ResponseCache(stores[0]).lookup(changed) is None


def test_the_key_is_a_stable_sha256() -> None:
    assert response_cache_key(REQUEST) == response_cache_key(replace(REQUEST))
    assert len(response_cache_key(REQUEST)) == 64


def test_bypass_neither_reads_nor_writes(stores) -> None:
    responses = ResponseCache(stores[0])

    assert responses.save(REQUEST, text="Paris", usage=USAGE, bypass=True) is False
    assert responses.lookup(REQUEST) is None
    responses.save(REQUEST, text="Paris", usage=USAGE)
    assert responses.lookup(REQUEST, bypass=True) is None
    assert responses.lookup(REQUEST) is not None


def test_bypass_comes_from_the_request_metadata() -> None:
    assert cache_bypassed({"cache": False}) is True
    assert cache_bypassed({"cache": True}) is False
    assert cache_bypassed({"cache": "false"}) is False
    assert cache_bypassed({}) is False
    assert cache_bypassed(None) is False


@override_settings(ORCHESTRATOR_RESPONSE_CACHE_TTL_S=1)
def test_entries_expire_after_the_ttl(stores) -> None:
    responses = ResponseCache(stores[0])
    responses.save(REQUEST, text="Paris", usage=USAGE)
    assert responses.lookup(REQUEST) is not None

    time.sleep(1.2)

    assert responses.lookup(REQUEST) is None


@override_settings(ORCHESTRATOR_RESPONSE_CACHE_MAX_ENTRY_BYTES=10)
def test_entries_above_the_size_limit_are_not_kept(stores) -> None:
    responses = ResponseCache(stores[0])
    at_limit = replace(REQUEST, max_tokens=1)
    over_limit = replace(REQUEST, max_tokens=2)

    assert responses.save(at_limit, text="ééééé", usage=USAGE) is True  # 10 bytes in UTF-8
    assert responses.save(over_limit, text="éééééa", usage=USAGE) is False

    assert responses.lookup(at_limit) is not None
    assert responses.lookup(over_limit) is None


@override_settings(ORCHESTRATOR_RESPONSE_CACHE_SLOTS=4)
def test_the_number_of_entries_is_bounded_by_the_slots(stores) -> None:
    responses = ResponseCache(stores[0])
    requests = [replace(REQUEST, max_tokens=n) for n in range(1, 51)]
    for n, request in enumerate(requests, start=1):
        responses.save(request, text=f"answer {n}", usage=USAGE)

    client = redis_client(stores[0])
    assert client is not None
    assert len(client.keys(stores[0].make_key("response:*"))) == 4
    hits = {n: responses.lookup(r) for n, r in enumerate(requests, start=1)}
    # A slot holds its newest answer; an older request sharing it misses, never gets another's.
    assert 1 <= sum(hit is not None for hit in hits.values()) <= 4
    assert all(hit.text == f"answer {n}" for n, hit in hits.items() if hit is not None)
    assert hits[50] is not None


@override_settings(ORCHESTRATOR_RESPONSE_CACHE_ENABLED=False)
def test_a_disabled_cache_keeps_nothing(stores) -> None:
    responses = ResponseCache(stores[0])

    assert responses.save(REQUEST, text="Paris", usage=USAGE) is False
    assert responses.lookup(REQUEST) is None
