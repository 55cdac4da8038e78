"""The learned router's pure parts: features, scorer, metrics, the knob, training determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from routing.router import features, metrics
from routing.router.ladder import (
    DEFAULT_LADDER,
    Knob,
    complexity_for,
    knob_from,
    rung_for,
    rung_thresholds,
    tier_order,
)
from routing.router.metrics import Outcome
from routing.router.model import ArtifactError, router_from_json, router_load
from routing.router.train import (
    Example,
    Params,
    artifact_bytes,
    fold_of,
    train_artifact,
)
from tests.routing.router_artifacts import tiny_artifact, write_artifact

SHIPPED = Path(__file__).resolve().parents[2] / "routing" / "router" / "artifacts" / "default.json"


def test_terms_are_lowercased_words_digits_as_hashes_and_bigrams():
    counts = features.term_counts("Add 127 and 845? Add them.")

    assert counts["add"] == 2
    assert counts["###"] == 2
    assert counts["add ###"] == 1
    assert counts["### and"] == 1
    assert counts["?"] == 1
    assert "127" not in counts


def test_a_prompt_is_read_as_choice_open_or_turns():
    choice = features.read("Which?\nA. one\nB. two\nC. three\nD. four\nAnswer:")
    assert choice.fmt == "choice"
    assert choice.options == ("one", "two", "three", "four")
    assert features.read("How many apples?").fmt == "open"
    turns = features.read(["Write a poem.", "Now shorter."])
    assert turns.fmt == "turns"
    assert turns.text == "Write a poem.\n\nNow shorter."


def test_a_long_prompt_is_read_through_a_window_and_its_counts_scaled():
    text = "x" * 20_000 + " tail"
    reading = features.read(text)

    assert len(reading.text) == features.WINDOW_CHARS + 1
    assert reading.text.endswith(" tail")
    assert reading.full_chars == 20_005
    assert reading.scale == pytest.approx(20_005 / 4_001)


def test_the_tiny_router_scores_on_paper():
    router = router_from_json(tiny_artifact())

    assert router.score("There is a bug") == round(1 / (1 + math.exp(-2)), 6) == 0.880797
    assert router.score("Write a poem") == 0.119203
    assert router.score("Hello there") == 0.5
    # "bug bug": tf 1 + ln 2, normalised away: the same score as one "bug".
    assert router.score("bug bug") == 0.880797
    # Both terms: (1*2 + 1*-2) / sqrt(2) = 0.
    assert router.score("bug poem") == 0.5
    assert router.score(["a bug", "and more"]) == 0.880797


def test_quality_target_and_operating_points_come_from_the_curve():
    router = router_from_json(tiny_artifact())

    assert router.threshold_for_quality(95) == 0.5
    assert router.threshold_for_quality(90) == 0.6
    assert router.threshold_for_quality(99) == 0.1
    assert router.threshold_for_quality(70) == 1.0
    point = router.operating_point(0.55)
    assert point is not None and (point.threshold, point.premium_share) == (0.5, 0.5)


def test_a_bad_artifact_is_refused_with_its_reason(tmp_path):
    with pytest.raises(ArtifactError, match="not a router artifact of format"):
        router_from_json({**tiny_artifact(), "format": "other/9"})
    with pytest.raises(ArtifactError, match="shape block must have 48 values"):
        router_from_json({**tiny_artifact(), "shape": {"mean": [0], "scale": [1], "weights": [0]}})
    with pytest.raises(ArtifactError, match="missing or has a bad field: 'terms'"):
        body = tiny_artifact()
        del body["terms"]
        router_from_json(body)
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ArtifactError, match="a router artifact is a JSON object"):
        router_load(broken)
    assert router_load(write_artifact(tmp_path / "ok.json")).version == "r1-test00000001"


def test_apgr_and_cpt_match_a_worked_example():
    # Four prompts; the router ranks them d, c, b, a. Strong wins on d and c only.
    scores = [0.1, 0.2, 0.3, 0.4]
    outcomes = [Outcome(1, 1), Outcome(0, 0), Outcome(1, 0), Outcome(1, 0)]

    points = metrics.curve(scores, outcomes, points=5)

    assert [p.premium_share for p in points] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [p.pgr for p in points] == [0.0, 0.5, 1.0, 1.0, 1.0]
    # 11 points on 4 prompts round the shares to quarters: 0.0625 + 0.1875 + 0.5.
    assert metrics.apgr(scores, outcomes) == pytest.approx(0.75)
    assert metrics.cpt(scores, outcomes, 0.5) == pytest.approx(0.25)
    assert metrics.cpt(scores, outcomes, 0.75) == pytest.approx(0.375)
    assert metrics.share_for_quality(scores, outcomes, 1.0) == 0.5


def test_apgr_of_the_perfect_and_the_reversed_router():
    outcomes = [Outcome(1, 0)] * 5 + [Outcome(1, 1)] * 5
    perfect = [1.0] * 5 + [0.0] * 5
    reversed_scores = [0.0] * 5 + [1.0] * 5

    assert metrics.apgr(perfect, outcomes) == pytest.approx(0.75)
    assert metrics.apgr(reversed_scores, outcomes) == pytest.approx(0.25)
    assert metrics.cpt(perfect, outcomes, 0.8) == pytest.approx(0.4)


def test_the_ladder_turns_a_probability_into_a_rung():
    thresholds = rung_thresholds(0.3, 4)

    assert thresholds == (0.1, 0.2, 0.3)
    assert [rung_for(p, thresholds) for p in (0.0, 0.1, 0.19, 0.2, 0.29, 0.3, 0.99)] == [
        0,
        1,
        1,
        2,
        2,
        3,
        3,
    ]
    assert rung_thresholds(0.4, 2) == (0.4,)
    assert rung_thresholds(0.4, 1) == ()
    assert [complexity_for(r, 4) for r in range(4)] == ["simple", "moderate", "moderate", "complex"]
    assert tier_order(DEFAULT_LADDER, 2) == ("standard", "premium", "large_local", "small_local")
    assert tier_order(DEFAULT_LADDER, 0) == DEFAULT_LADDER


def test_a_policy_router_setting_becomes_a_knob():
    assert knob_from({}) == Knob(DEFAULT_LADDER, None, 95.0)
    assert knob_from(None) == Knob(DEFAULT_LADDER, None, 95.0)
    assert knob_from({"mode": "heuristic"}) is None
    assert knob_from({"threshold": 0.4, "ladder": ["standard", "premium"]}) == Knob(
        ("standard", "premium"), 0.4, None
    )
    assert knob_from({"quality_target_pct": 90}) == Knob(DEFAULT_LADDER, None, 90.0)


def _examples(n: int = 60) -> list[Example]:
    rows = []
    for i in range(n):
        hard = i % 3 == 0
        words = "integral derivative proof" if hard else "capital colour animal"
        rows.append(
            Example(
                id=f"mmlu/t/{i:04d}" if i % 2 else f"gsm8k/test/{i}",
                prompt=f"Question {i}: {words} number {i * 7}?",
                source="mmlu" if i % 2 else "gsm8k",
                strong=1.0,
                weak=0.0 if hard else 1.0,
            )
        )
    return rows


def test_training_is_deterministic_and_learns_the_signal():
    examples = _examples()
    params = Params(alpha=1.0, shape_weight=1.0, min_df=2)

    first = train_artifact(examples, data_sha256="x" * 64, trained_on={}, params=params)
    second = train_artifact(
        list(reversed(examples)), data_sha256="x" * 64, trained_on={}, params=params
    )

    assert artifact_bytes(first) == artifact_bytes(second)
    assert first["version"] == second["version"]
    assert first["version"].startswith("r1-") and len(first["version"]) == 15
    router = router_from_json(first)
    hard = router.score("Question 999: integral derivative proof number 3?")
    easy = router.score("Question 999: capital colour animal number 3?")
    assert hard > 0.5 > easy
    assert first["evaluation"]["out_of_fold"]["mmlu"]["apgr"] > 0.7


def test_folds_depend_on_the_id_only():
    assert fold_of("mmlu/x/0001") == fold_of("mmlu/x/0001")
    assert {fold_of(f"id{i}") for i in range(200)} == {0, 1, 2, 3, 4}


def test_the_shipped_artifact_loads_and_is_within_its_limits():
    router = router_load(SHIPPED)
    body = json.loads(SHIPPED.read_text(encoding="utf-8"))

    assert SHIPPED.stat().st_size <= 20 * 1024 * 1024
    assert router.version == body["version"]
    assert router.score("What is 2 + 2?") == router.score("What is 2 + 2?")
    assert 0.0 < router.score("What is 2 + 2?") < 1.0
    assert [p.premium_share for p in router.curve] == [round(k / 20, 4) for k in range(21)]
    assert set(body["evaluation"]["out_of_fold"]) == {"gsm8k", "mmlu", "mt_bench"}
