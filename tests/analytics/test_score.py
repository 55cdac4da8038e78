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


def test_quality_kept_part_is_left_out_when_nothing_was_scored() -> None:
    score = score_compute(inputs(quality_loss_sum=0.0, quality_scored=0), latency_target_ms=2500)

    assert parts(score)["quality_kept"] is None
    assert [p.detail for p in score.parts if p.key == "quality_kept"] == [
        "no request scored by the router"
    ]
    # The same 50.0 as without the part: it is not counted as 100 % kept.
    assert score.value == Decimal("50.0")


def test_quality_kept_part_measured_from_the_floor() -> None:
    # 6 scored requests losing 0.3 in all: 100 * (1 - 0.3 / 6) = 95.00 % kept,
    # (95 - 80) / (100 - 80) = 0.75
    ninety_five = score_compute(
        inputs(quality_loss_sum=0.3, quality_scored=6), latency_target_ms=2500
    )
    all_kept = score_compute(inputs(quality_loss_sum=0.0, quality_scored=5), latency_target_ms=2500)
    below_floor = score_compute(
        inputs(quality_loss_sum=1.5, quality_scored=5), latency_target_ms=2500
    )

    assert parts(ninety_five)["quality_kept"] == Decimal("0.7500")
    # (0*30 + 25 + 15 + 0*10 + 0.75*20) / 100
    assert ninety_five.value == Decimal("55.0")
    assert parts(all_kept)["quality_kept"] == Decimal("1.0000")
    assert all_kept.value == Decimal("60.0")
    # 70.00 % kept is under the 80 % floor: clipped to 0, and it weighs the score down.
    assert parts(below_floor)["quality_kept"] == Decimal("0.0000")
    assert below_floor.value == Decimal("40.0")
