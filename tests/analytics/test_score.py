from __future__ import annotations

from decimal import Decimal

from analytics.score import ScoreInputs, score_compute


def inputs(**changes: object) -> ScoreInputs:
    base: dict[str, object] = {
        "requests": 100,
        "succeeded": 100,
        "clean_successes": 100,
        "comparable_cost_usd": Decimal("10"),
        "comparable_baseline_usd": Decimal("10"),
        "within_latency_target": 100,
        "cache_hits": 0,
        "budgets": 0,
        "budgets_within_limit": 0,
        "feedback_positive": 0,
        "feedback_negative": 0,
    }
    base.update(changes)
    return ScoreInputs(**base)  # type: ignore[arg-type]


def parts(score: object) -> dict[str, Decimal | None]:
    return {p.key: p.value for p in score.parts}  # type: ignore[attr-defined]


def test_no_traffic_has_no_score() -> None:
    score = score_compute(
        inputs(
            requests=0,
            succeeded=0,
            clean_successes=0,
            within_latency_target=0,
            comparable_cost_usd=Decimal(0),
            comparable_baseline_usd=Decimal(0),
        ),
        latency_target_ms=2500,
    )

    assert score.value is None
    assert set(parts(score).values()) == {None}


def test_all_premium_scores_zero_on_cost() -> None:
    score = score_compute(inputs(), latency_target_ms=2500)

    assert parts(score)["cost"] == Decimal("0.0000")
    # cost 0 x 30, reliability 1 x 25, latency 1 x 15, cache 0 x 10, over weight 80
    assert score.value == Decimal("50.0")


def test_all_free_local_scores_full_on_cost() -> None:
    score = score_compute(
        inputs(comparable_cost_usd=Decimal(0), cache_hits=20), latency_target_ms=2500
    )

    assert parts(score)["cost"] == Decimal("1.0000")
    assert parts(score)["cache"] == Decimal("1.0000")
    assert score.value == Decimal("100.0")


def test_cost_above_baseline_is_clipped_to_zero() -> None:
    score = score_compute(inputs(comparable_cost_usd=Decimal("12")), latency_target_ms=2500)

    assert parts(score)["cost"] == Decimal("0.0000")


def test_quality_needs_twenty_votes_and_budgets_count_when_present() -> None:
    few = score_compute(inputs(feedback_positive=15, feedback_negative=4), latency_target_ms=2500)
    enough = score_compute(
        inputs(feedback_positive=15, feedback_negative=5, budgets=4, budgets_within_limit=3),
        latency_target_ms=2500,
    )

    assert parts(few)["quality"] is None
    assert [p.detail for p in few.parts if p.key == "quality"] == [
        "not enough feedback (19 of 20 votes)"
    ]
    assert parts(enough)["quality"] == Decimal("0.7500")
    assert parts(enough)["budget"] == Decimal("0.7500")
    # (0*30 + 25 + 15 + 0*10 + 0.75*10 + 0.75*10) / 100
    assert enough.value == Decimal("55.0")
