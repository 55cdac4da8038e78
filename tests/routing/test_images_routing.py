"""A request that carries images goes only to models marked as accepting images, and is refused
with IMAGES_NOT_SUPPORTED (naming the reason) when none can take it: routed, named, or by its
own chain. The engine is pure, so these run on plain values."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from providers.adapters.types import ChatRequest, Image, Message
from routing.engine import decide
from routing.engine.values import ImagesRefused, RegistrySnapshot, RouteRequest
from routing.guards.response_cache import response_cache_key
from tests.routing.factories import BIG, FLASH, GPT4O, MINI, OFF, POLICY, SONNET, TINY, snapshot

SEEING = {"openai:gpt-4o", "gemini:flash"}
REGISTRY = RegistrySnapshot.build(
    tuple(
        replace(m, accepts_images=m.ref in SEEING)
        for m in (TINY, BIG, MINI, GPT4O, SONNET, FLASH, OFF)
    )
)


def request(images: int = 1, **kw: object) -> RouteRequest:
    return RouteRequest(
        task_type="general",
        complexity="simple",
        prompt_tokens=100,
        images=images,
        **kw,  # type: ignore[arg-type]
    )


def test_a_routed_request_with_images_keeps_to_the_models_that_read_them() -> None:
    decision = decide(request(), POLICY, snapshot(), REGISTRY)

    assert [m.ref for m in decision.chain] == ["gemini:flash", "openai:gpt-4o"]
    skipped = {c["model"]: c["reason"] for c in decision.trace["candidates"] if not c["kept"]}
    assert skipped["local:tiny"] == "does not accept images"
    assert skipped["openai:mini"] == "does not accept images"
    assert decision.trace["request"]["images"] == 1


def test_without_images_the_same_request_keeps_its_whole_chain() -> None:
    decision = decide(request(images=0), POLICY, snapshot(), REGISTRY)

    assert [m.ref for m in decision.chain] == [
        "local:tiny",
        "local:big",
        "openai:mini",
        "gemini:flash",
        "openai:gpt-4o",
    ]
    assert "images" not in decision.trace["request"]


def test_no_model_that_reads_images_is_a_refusal_that_says_so() -> None:
    blind = RegistrySnapshot.build(tuple(replace(m, accepts_images=False) for m in REGISTRY.models))

    with pytest.raises(ImagesRefused) as refused:
        decide(request(images=2), POLICY, snapshot(), blind)

    assert refused.value.code == "IMAGES_NOT_SUPPORTED"
    assert str(refused.value) == (
        "this request carries 2 images, and no enabled model accepts images "
        "(mark one that does in the admin: accepts images)"
    )
    assert refused.value.decision.chain == ()
    assert refused.value.decision.trace["outcome"] == "images: no model accepts images"


def test_a_private_request_with_images_needs_a_local_model_that_reads_them() -> None:
    with pytest.raises(ImagesRefused) as refused:
        decide(request(local_only=("request",)), POLICY, snapshot(), REGISTRY)

    assert str(refused.value) == (
        "this request carries 1 image, and no enabled local model accepts images"
    )


def test_a_named_model_that_does_not_read_images_is_refused_by_name() -> None:
    with pytest.raises(ImagesRefused) as refused:
        decide(request(override="openai:mini"), POLICY, snapshot(), REGISTRY)

    assert str(refused.value) == (
        "this request carries 1 image, and openai:mini does not accept images"
    )
    candidates = refused.value.decision.trace["candidates"]
    assert candidates == [
        {
            "model": "openai:mini",
            "id": MINI.id,
            "source": "override",
            "kept": False,
            "reason": "does not accept images",
        }
    ]


def test_a_named_model_that_reads_images_is_taken() -> None:
    decision = decide(request(override="openai:gpt-4o"), POLICY, snapshot(), REGISTRY)

    assert [m.ref for m in decision.chain] == ["openai:gpt-4o"]


def test_a_requested_chain_keeps_its_models_that_read_images() -> None:
    chain = ("openai:mini", "gemini:flash", "local:big")
    decision = decide(request(fallback_chain=chain), POLICY, snapshot(), REGISTRY)

    assert [m.ref for m in decision.chain] == ["gemini:flash"]
    reasons = {c["model"]: c["reason"] for c in decision.trace["candidates"]}
    assert reasons == {
        "openai:mini": "does not accept images",
        "gemini:flash": "",
        "local:big": "does not accept images",
    }


def test_a_requested_chain_without_a_model_that_reads_images_is_refused() -> None:
    with pytest.raises(ImagesRefused) as refused:
        decide(request(fallback_chain=("openai:mini", "local:big")), POLICY, snapshot(), REGISTRY)

    assert str(refused.value) == (
        "this request carries 1 image, and no model of the requested chain accepts images"
    )


def test_the_response_cache_key_covers_the_images_and_keeps_old_keys() -> None:
    text_only = ChatRequest(model="m", messages=(Message("user", "What is this?"),))
    one = Image(media_type="image/png", data="iVBORw0KGgo=")
    other = Image(media_type="image/png", data="R0lGODlhAQABAAAAACw=")
    with_one = ChatRequest(model="m", messages=(Message("user", "What is this?", (one,)),))
    with_other = ChatRequest(model="m", messages=(Message("user", "What is this?", (other,)),))

    keys = {response_cache_key(r, provider="p") for r in (text_only, with_one, with_other)}

    assert len(keys) == 3
    # A message without images is keyed as before images existed (no "images" field at all).
    before = json.dumps(
        {
            "provider": "p",
            "request": {
                "model": "m",
                "messages": [{"role": "user", "content": "What is this?"}],
                "max_tokens": None,
                "temperature": None,
                "top_p": None,
                "stop": [],
            },
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    assert (
        response_cache_key(text_only, provider="p") == hashlib.sha256(before.encode()).hexdigest()
    )
