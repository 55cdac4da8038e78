"""A request no context window can hold is the caller's mistake (TOKEN_LIMIT_EXCEEDED, a 400),
decided from the engine's decision; every other empty chain keeps its own reason."""

from __future__ import annotations

from dataclasses import replace

from routing.engine import decide, token_limit_exceeded
from routing.engine.values import AgentSnapshot, AgentState, RegistrySnapshot, RouteRequest
from tests.routing.factories import BIG, OFF, POLICY, TINY, spec

SMALL = RegistrySnapshot.build((TINY, BIG, OFF))  # windows 2048 and 32768; OFF is disabled
CALM = AgentSnapshot()


def asked(prompt_tokens: int, max_output_tokens: int, **extra: object) -> RouteRequest:
    return RouteRequest(
        task_type="general",
        complexity="simple",
        prompt_tokens=prompt_tokens,
        max_output_tokens=max_output_tokens,
        **extra,  # type: ignore[arg-type]
    )


def test_a_request_no_enabled_window_holds_is_refused_with_the_numbers():
    decision = decide(asked(100, 40_000), POLICY, CALM, SMALL)

    refusal = token_limit_exceeded(decision, SMALL)

    assert decision.chain == ()
    assert refusal is not None
    assert (refusal.needed_tokens, refusal.largest_window) == (40_100, 32_768)
    assert str(refusal) == (
        "this request needs 40100 tokens (the prompt plus max_tokens), more than the context "
        "window of any enabled model (32768 tokens); shorten the prompt or lower max_tokens"
    )
    assert refusal.decision is decision


def test_a_request_that_fits_some_window_is_not_refused():
    decision = decide(asked(100, 4_000), POLICY, CALM, SMALL)

    assert [m.ref for m in decision.chain] == ["local:big"]
    assert token_limit_exceeded(decision, SMALL) is None


def test_an_empty_chain_for_another_reason_keeps_its_own_code():
    cloud_only = RegistrySnapshot.build((spec(9, "openai:mini", "standard", price="1", ctx=1000),))
    cut_off = AgentSnapshot(
        states=(
            AgentState("connectivity", "DISCONNECTED"),
            AgentState("connectivity", "DISCONNECTED", target="openai"),
        )
    )
    # The one model is refused for being out of reach, not for its window.
    unreachable = decide(asked(10, 20), POLICY, cut_off, cloud_only)
    blocked = decide(asked(10, 5_000), replace(POLICY, state_rules=()), cut_off, cloud_only)

    assert unreachable.chain == ()
    assert token_limit_exceeded(unreachable, cloud_only) is None
    # Every candidate refused for its window alone: the caller's mistake.
    assert blocked.chain == ()
    assert token_limit_exceeded(blocked, cloud_only) is not None
    assert (
        token_limit_exceeded(
            decide(asked(10, 20), POLICY, CALM, RegistrySnapshot.build(())),
            RegistrySnapshot.build(()),
        )
        is None
    )


def test_a_named_model_whose_window_is_too_small_is_refused():
    decision = decide(asked(100, 4_000, override="local:tiny"), POLICY, CALM, SMALL)

    refusal = token_limit_exceeded(decision, SMALL)

    assert refusal is not None
    assert (refusal.needed_tokens, refusal.largest_window) == (4_100, 2_048)
    assert "context window of local:tiny (2048 tokens)" in str(refusal)
    fits = decide(asked(100, 1_000, override="local:tiny"), POLICY, CALM, SMALL)
    assert token_limit_exceeded(fits, SMALL) is None
