"""The engine's side of a caller's own chain (`fallback_chain`), of a named model that cannot
answer (`ModelUnavailable`), and of the seed's task-type names: pure, no database."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from routing.engine import decide, token_limit_exceeded
from routing.engine.taxonomy import TASK_TYPE_ALIASES, TASK_TYPES, task_type_resolve
from routing.engine.values import ModelUnavailable, RegistrySnapshot, RouteRequest, RoutingError
from tests.routing.factories import BIG, FLASH, GPT4O, MINI, OFF, POLICY, REGISTRY, TINY, snapshot


def request(tokens: int = 100, **kw: object) -> RouteRequest:
    return RouteRequest(task_type="code", complexity="complex", prompt_tokens=tokens, **kw)  # type: ignore[arg-type]


def test_a_requested_chain_is_tried_in_the_callers_order_after_the_named_model():
    decision = decide(
        request(override="openai:mini", fallback_chain=("local:tiny", "gemini:flash")),
        POLICY,
        snapshot(connectivity="DISCONNECTED"),  # bypassed, as an override bypasses routing
        REGISTRY,
    )

    assert decision.chain == (MINI, TINY, FLASH)
    assert decision.override is True
    assert decision.trace["requested_chain"] == {
        "from": "request",
        "models": ["openai:mini", "local:tiny", "gemini:flash"],
    }
    assert [(c["model"], c["source"], c["kept"]) for c in decision.trace["candidates"]] == [
        ("openai:mini", "request:model", True),
        ("local:tiny", "request:fallback_chain", True),
        ("gemini:flash", "request:fallback_chain", True),
    ]
    assert decision.trace["request"]["fallback_chain"] == ["local:tiny", "gemini:flash"]
    assert decision.trace["pick"] == {
        "model": "openai:mini",
        "by": "request",
        "among": ["openai:mini", "local:tiny", "gemini:flash"],
    }
    assert decision.trace["outcome"] == "requested chain"


def test_a_requested_chain_passes_over_models_whose_window_is_too_small():
    decision = decide(
        request(3000, fallback_chain=("local:tiny", "local:big")), POLICY, snapshot(), REGISTRY
    )

    assert decision.chain == (BIG,)
    assert decision.trace["candidates"][0]["reason"] == "context window 2048 < 3000 tokens needed"
    assert token_limit_exceeded(decision, REGISTRY) is None


def test_a_requested_chain_no_window_holds_is_a_token_limit_with_the_chains_numbers():
    decision = decide(
        request(40_000, fallback_chain=("local:tiny", "local:big")), POLICY, snapshot(), REGISTRY
    )

    refused = token_limit_exceeded(decision, REGISTRY)

    assert decision.chain == ()
    assert refused is not None
    assert (refused.needed_tokens, refused.largest_window) == (40_000, 32768)
    assert "context window of any model of the requested chain (32768 tokens)" in str(refused)


@pytest.mark.parametrize(
    ("chain", "message", "field"),
    [
        (
            ("local:tiny", "openai:gpt-5"),
            "fallback_chain[1]: unknown model 'openai:gpt-5'",
            "fallback_chain[1]",
        ),
        (
            ("local:tiny", "local:tiny"),
            "fallback_chain[1]: 'local:tiny' is already in the chain",
            "fallback_chain[1]",
        ),
        (
            ("openai:mini",),
            "fallback_chain[0]: 'openai:mini' is already in the chain",
            "fallback_chain[0]",
        ),
    ],
)
def test_a_bad_chain_entry_is_refused_by_its_place(chain, message, field):
    with pytest.raises(RoutingError) as refused:
        decide(request(override="openai:mini", fallback_chain=chain), POLICY, snapshot(), REGISTRY)

    assert not isinstance(refused.value, ModelUnavailable)
    assert str(refused.value).startswith(message)
    assert refused.value.field == field


def test_a_disabled_chain_entry_is_model_unavailable_naming_it():
    with pytest.raises(ModelUnavailable) as refused:
        decide(request(fallback_chain=("local:big", "openai:off")), POLICY, snapshot(), REGISTRY)

    error = refused.value
    assert (error.model, error.reason, error.field) == (
        "openai:off",
        "model disabled",
        "fallback_chain[1]",
    )
    assert error.decision.chain == ()
    assert error.decision.trace["candidates"][-1] == {
        "model": "openai:off",
        "id": OFF.id,
        "source": "request:fallback_chain",
        "kept": False,
        "reason": "model disabled",
    }


def test_a_named_model_of_a_disabled_provider_says_so():
    off_provider = replace(GPT4O, enabled=False, provider_enabled=False)
    registry = RegistrySnapshot.build((TINY, BIG, MINI, off_provider, FLASH))

    with pytest.raises(ModelUnavailable) as refused:
        decide(request(override="openai:gpt-4o"), POLICY, snapshot(), registry)

    assert (refused.value.model, refused.value.reason) == (
        "openai:gpt-4o",
        "provider openai disabled",
    )
    assert str(refused.value) == "model 'openai:gpt-4o' is unavailable: provider openai disabled"
    assert (
        refused.value.decision.trace["outcome"]
        == "unavailable: openai:gpt-4o provider openai disabled"
    )


def test_every_seed_task_type_maps_into_the_taxonomy():
    assert set(TASK_TYPE_ALIASES.values()) <= set(TASK_TYPES)
    assert not set(TASK_TYPE_ALIASES) & set(TASK_TYPES)
    assert {
        name: task_type_resolve(name)
        for name in (
            "code_generation",
            "code_completion",
            "code_optimization",
            "refactoring",
            "summarization",
        )
    } == {
        "code_generation": "code",
        "code_completion": "code",
        "code_optimization": "code",
        "refactoring": "code",
        "summarization": "analysis",
    }
    assert task_type_resolve("research") == "research"
    assert task_type_resolve("poetry") is None


def test_the_documented_task_type_table_is_the_mapping():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "routing.md").read_text()
    documented = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[1].startswith("`") and cells[0].startswith("`"):
            for name in re.findall(r"`([a-z_]+)`", cells[0]):
                documented[name] = cells[1].strip("`")

    assert {k: v for k, v in documented.items() if k in TASK_TYPE_ALIASES} == TASK_TYPE_ALIASES
    assert set(TASK_TYPE_ALIASES) <= set(documented)
