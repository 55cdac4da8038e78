"""The embeddings route (routing/engine/embeddings.py): embedding models only, free first, and a
chain that never mixes vector lengths. Pure: no database."""

from __future__ import annotations

from decimal import Decimal

import pytest

from routing.engine.embeddings import embedding_decide
from routing.engine.values import (
    ModelSpec,
    PrivacyRefused,
    RegistrySnapshot,
    RoutingError,
)


def spec(
    model_id: int,
    name: str,
    dims: int | None,
    price: str,
    *,
    local: bool = False,
    chat: bool = False,
) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        provider_name="p",
        provider_kind="openai",
        name=name,
        locality="local" if local else "cloud",
        tier="standard",
        input_price_per_mtok_usd=Decimal(price),
        output_price_per_mtok_usd=Decimal(0),
        cached_input_price_per_mtok_usd=None,
        context_window=8192,
        max_output_tokens=4096,
        embedding_dimensions=dims,
        answers_chat=chat,
    )


REGISTRY = RegistrySnapshot.build(
    (
        spec(1, "chat", None, "0.01", chat=True),
        spec(2, "small", 1536, "0.02"),
        spec(3, "wide", 3072, "0.01"),
        spec(4, "small-too", 1536, "0.05"),
        spec(5, "local", 576, "0", local=True),
    )
)


def test_cheapest_first_and_fallbacks_of_the_same_length_only() -> None:
    cloud = RegistrySnapshot.build(tuple(m for m in REGISTRY.models if m.id != 5))

    decision = embedding_decide(registry=cloud, override=None, prompt_tokens=4, inputs=2)

    assert [m.name for m in decision.chain] == ["wide"]
    assert [(c["model"], c["reason"]) for c in decision.trace["candidates"]] == [
        ("p:wide", ""),
        ("p:small", "dimensions: 1536 != 3072"),
        ("p:small-too", "dimensions: 1536 != 3072"),
    ]


def test_a_named_model_keeps_its_own_length_for_fallback() -> None:
    decision = embedding_decide(
        registry=REGISTRY, override="p:small", prompt_tokens=4, inputs=1, dimensions=512
    )

    assert [m.name for m in decision.chain] == ["small"]
    assert decision.override is True


def test_free_local_model_first_and_local_only_requests_stay_local() -> None:
    routed = embedding_decide(registry=REGISTRY, override=None, prompt_tokens=1, inputs=1)
    private = embedding_decide(
        registry=REGISTRY, override=None, prompt_tokens=1, inputs=1, local_only=("api_key",)
    )

    assert routed.chain[0].name == "local"
    assert [m.name for m in private.chain] == ["local"]
    with pytest.raises(PrivacyRefused):
        embedding_decide(
            registry=REGISTRY,
            override="p:small",
            prompt_tokens=1,
            inputs=1,
            local_only=("request",),
        )


def test_chat_models_and_too_many_dimensions_are_refused() -> None:
    with pytest.raises(RoutingError) as chat:
        embedding_decide(registry=REGISTRY, override="p:chat", prompt_tokens=1, inputs=1)
    with pytest.raises(RoutingError) as wide:
        embedding_decide(
            registry=REGISTRY, override="p:local", prompt_tokens=1, inputs=1, dimensions=1024
        )

    assert str(chat.value) == "'p:chat' is not an embedding model (it has no embedding_dimensions)"
    assert wide.value.field == "dimensions"
    assert (
        str(wide.value) == "'p:local' embeds into 576 dimensions; dimensions must be at most that"
    )
