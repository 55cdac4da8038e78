"""The cost line under an answer: local answers read as free, an unknown price never as $0."""

from __future__ import annotations

import uuid
from decimal import Decimal

from chat.badges import badge_costs, badge_from, cost_label
from providers.adapters.types import Usage
from routing.pipeline.events import Finished


def _finished(*, locality: str, cost_usd: Decimal | None, cost_state: str) -> Finished:
    return Finished(
        request_id=uuid.uuid4(),
        model_id=1,
        model_ref="local:smollm2" if locality == "local" else "cloud:gpt",
        provider_name=locality,
        locality=locality,
        text="hi",
        finish_reason="stop",
        usage=Usage(input=10, output=5),
        cost_usd=cost_usd,
        cost_state=cost_state,
        baseline_cost_usd=None,
        latency_ms=100,
        time_to_first_token_ms=20,
        attempts=1,
        fallbacks=0,
        cached=False,
        decision_trace={},
    )


def test_a_local_answer_reads_free_not_an_estimated_zero() -> None:
    badge = badge_from(
        _finished(locality="local", cost_usd=Decimal("0E-12"), cost_state="estimated"), []
    )

    assert (badge["cost_label"], badge["cost_kind"]) == ("free (local)", "free")
    assert badge["cost_usd"] == "0.000000000000"


def test_cloud_answers_keep_their_cost() -> None:
    reported = badge_from(
        _finished(locality="cloud", cost_usd=Decimal("0.00325"), cost_state="reported"), []
    )
    estimated = badge_from(
        _finished(locality="cloud", cost_usd=Decimal("0.0000004"), cost_state="estimated"), []
    )

    assert (reported["cost_label"], reported["cost_kind"]) == ("$0.003250", "reported")
    assert (estimated["cost_label"], estimated["cost_kind"]) == (
        "≈ $0.000000 (estimated)",
        "estimated",
    )


def test_an_unknown_price_is_never_zero_nor_free() -> None:
    assert cost_label(None, "unknown_price", "cloud") == "unknown price"
    assert cost_label(None, "unknown_price", "local") == "unknown price"
    assert cost_label(Decimal(0), "unknown_price", "local") == "unknown price"


def test_a_priced_local_model_shows_its_price() -> None:
    assert cost_label(Decimal("0.0021"), "estimated", "local") == "≈ $0.002100 (estimated)"


def test_a_stored_badge_is_relabelled_from_its_amount() -> None:
    stored = {
        "locality": "local",
        "cost_usd": "0E-12",
        "cost_state": "estimated",
        "cost_label": "≈ $0.000000 (estimated)",
    }

    assert badge_costs(stored) == {
        **stored,
        "cost_usd": "0.000000000000",
        "cost_label": "free (local)",
        "cost_kind": "free",
    }
    assert badge_costs({"error_code": "CANCELLED"}) == {"error_code": "CANCELLED"}
