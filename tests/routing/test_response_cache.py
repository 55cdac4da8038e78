from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from django.core.cache import BaseCache, cache, caches
from django.test import override_settings

from core.redis import redis_client
from providers.adapters.types import ChatRequest, Message, Usage
from routing.guards.response_cache import (
    CachedAnswer,
    ResponseCache,
    cache_control_opts_out,
    cache_refusal,
    response_cache_key,
)

REQUEST = ChatRequest(
    model="gpt-4o-mini",
    messages=(
        Message("system", "You answer in one word."),
        Message("user", "Capital of France?"),
    ),
    max_tokens=16,
    temperature=0.0,
)
KEY = response_cache_key(REQUEST, provider="openai")
USAGE = Usage(input=20, output=2, cached=0)


@pytest.fixture
def stores() -> Iterator[tuple[BaseCache, BaseCache]]:
    cache.clear()
    yield caches.create_connection("default"), caches.create_connection("default")
    cache.clear()


def keep(responses: ResponseCache, key: str, text: str, *, provider: str = "openai") -> bool:
    return responses.save(key, provider=provider, model="gpt-4o-mini", text=text, usage=USAGE)


def test_a_miss_then_a_hit_with_text_and_usage_seen_by_another_process(stores) -> None:
    writer, reader = ResponseCache(stores[0]), ResponseCache(stores[1])
    assert reader.lookup(KEY) is None

    assert keep(writer, KEY, "Paris") is True
    hit = reader.lookup(KEY)

    assert isinstance(hit, CachedAnswer)
    assert (hit.text, hit.usage, hit.provider, hit.model, hit.key) == (
        "Paris",
        USAGE,
        "openai",
        "gpt-4o-mini",
        KEY,
    )
    assert abs(hit.cached_at - time.time()) < 5


def test_the_same_model_name_at_another_provider_is_another_key(stores) -> None:
    responses = ResponseCache(stores[0])
    keep(responses, KEY, "Paris from openai")

    other = response_cache_key(REQUEST, provider="azure")

    assert other != KEY
    assert responses.lookup(other) is None


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
    keep(ResponseCache(stores[0]), KEY, "Paris")

    assert response_cache_key(changed, provider="openai") != KEY
    assert ResponseCache(stores[0]).lookup(response_cache_key(changed, provider="openai")) is None


def _another_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return (*value, "more")
    if isinstance(value, str):
        return value + " more"
    if value is None:
        return 1
    return value + 1


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ChatRequest)])
def test_every_field_of_the_upstream_request_is_in_the_key(field: str) -> None:
    """Tools, a response format or any other field the upstream request gains is keyed too."""
    changed = replace(REQUEST, **{field: _another_value(getattr(REQUEST, field))})

    assert response_cache_key(changed, provider="openai") != KEY


def test_the_key_is_a_stable_sha256() -> None:
    assert response_cache_key(replace(REQUEST), provider="openai") == KEY
    assert len(KEY) == 64
    assert int(KEY, 16) >= 0


@pytest.mark.parametrize(
    ("temperature", "mode", "refusal"),
    [
        (0.0, "deterministic", None),
        (None, "deterministic", "not_deterministic"),
        (1.0, "deterministic", "not_deterministic"),
        (0.2, "deterministic", "not_deterministic"),
        (1.0, "always", None),
        (None, "always", None),
        (0.0, "off", "policy_off"),
    ],
)
def test_only_deterministic_requests_are_cached_unless_the_policy_says_otherwise(
    temperature: float | None, mode: str, refusal: str | None
) -> None:
    assert cache_refusal(replace(REQUEST, temperature=temperature), mode=mode) == refusal


@pytest.mark.parametrize(
    ("header", "opts_out"),
    [
        ("no-cache", True),
        ("no-store", True),
        ("No-Cache", True),
        ("max-age=0, no-store", True),
        ("private, no-cache=x", True),
        ("max-age=60", False),
        ("", False),
        (None, False),
    ],
)
def test_cache_control_no_cache_or_no_store_opts_out(header: str | None, opts_out: bool) -> None:
    assert cache_control_opts_out(header) is opts_out


@override_settings(ORCHESTRATOR_RESPONSE_CACHE_TTL_S=1)
def test_entries_expire_after_the_ttl(stores) -> None:
    responses = ResponseCache(stores[0])
    keep(responses, KEY, "Paris")
    assert responses.lookup(KEY) is not None

    time.sleep(1.2)

    assert responses.lookup(KEY) is None


@override_settings(ORCHESTRATOR_RESPONSE_CACHE_MAX_ENTRY_BYTES=10)
def test_entries_above_the_size_limit_are_not_kept(stores) -> None:
    responses = ResponseCache(stores[0])
    at_limit = response_cache_key(replace(REQUEST, max_tokens=1), provider="openai")
    over_limit = response_cache_key(replace(REQUEST, max_tokens=2), provider="openai")

    assert keep(responses, at_limit, "ééééé") is True  # 10 bytes in UTF-8
    assert keep(responses, over_limit, "éééééa") is False

    assert responses.lookup(at_limit) is not None
    assert responses.lookup(over_limit) is None


@override_settings(ORCHESTRATOR_RESPONSE_CACHE_SLOTS=4)
def test_the_number_of_entries_is_bounded_by_the_slots(stores) -> None:
    responses = ResponseCache(stores[0])
    keys = [
        response_cache_key(replace(REQUEST, max_tokens=n), provider="openai") for n in range(1, 51)
    ]
    for n, key in enumerate(keys, start=1):
        keep(responses, key, f"answer {n}")

    client = redis_client(stores[0])
    assert client is not None
    assert len(client.keys(stores[0].make_key("response:*"))) == 4
    hits = {n: responses.lookup(key) for n, key in enumerate(keys, start=1)}
    # A slot holds its newest answer; an older request sharing it misses, never gets another's.
    assert 1 <= sum(hit is not None for hit in hits.values()) <= 4
    assert all(hit.text == f"answer {n}" for n, hit in hits.items() if hit is not None)
    assert hits[50] is not None


@override_settings(ORCHESTRATOR_RESPONSE_CACHE_ENABLED=False)
def test_a_disabled_cache_keeps_nothing(stores) -> None:
    responses = ResponseCache(stores[0])

    assert keep(responses, KEY, "Paris") is False
    assert responses.lookup(KEY) is None


def _three_answers(responses: ResponseCache) -> dict[str, str]:
    """openai:gpt-4o-mini, openai:gpt-4o and azure:gpt-4o-mini, each with one answer."""
    keys = {
        "openai:gpt-4o-mini": response_cache_key(REQUEST, provider="openai"),
        "openai:gpt-4o": response_cache_key(replace(REQUEST, model="gpt-4o"), provider="openai"),
        "azure:gpt-4o-mini": response_cache_key(REQUEST, provider="azure"),
    }
    for ref, key in keys.items():
        provider, model = ref.split(":")
        responses.save(key, provider=provider, model=model, text=ref, usage=USAGE)
    return keys


def _left(responses: ResponseCache, keys: dict[str, str]) -> list[str]:
    return sorted(ref for ref, key in keys.items() if responses.lookup(key) is not None)


def test_purge_by_provider_drops_only_that_providers_answers(stores) -> None:
    responses = ResponseCache(stores[0])
    keys = _three_answers(responses)

    assert responses.purge(provider="openai") == 2

    assert _left(responses, keys) == ["azure:gpt-4o-mini"]


def test_purge_by_model_name_drops_it_at_every_provider_unless_one_is_named(stores) -> None:
    responses = ResponseCache(stores[0])
    keys = _three_answers(responses)

    assert responses.purge(provider="azure", model="gpt-4o-mini") == 1
    assert _left(responses, keys) == ["openai:gpt-4o", "openai:gpt-4o-mini"]
    assert responses.purge(model="gpt-4o-mini") == 1
    assert _left(responses, keys) == ["openai:gpt-4o"]


def test_purge_by_key_drops_one_answer(stores) -> None:
    responses = ResponseCache(stores[0])
    keys = _three_answers(responses)

    assert responses.purge(key=keys["openai:gpt-4o"]) == 1
    assert responses.purge(key=keys["openai:gpt-4o"]) == 0

    assert _left(responses, keys) == ["azure:gpt-4o-mini", "openai:gpt-4o-mini"]


def test_purge_models_drops_any_of_several_targets_in_one_pass(stores) -> None:
    responses = ResponseCache(stores[0])
    keys = _three_answers(responses)

    assert responses.purge_models([("azure", None), ("openai", "gpt-4o")]) == 2

    assert _left(responses, keys) == ["openai:gpt-4o-mini"]


def test_a_purge_needs_a_filter(stores) -> None:
    with pytest.raises(ValueError, match="a provider, a model or a key"):
        ResponseCache(stores[0]).purge()
