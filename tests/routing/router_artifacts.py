"""A hand-made router artifact whose every probability can be worked out on paper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from routing.router.features import BLOCKS, SHAPE_NAMES
from routing.router.model import ARTIFACT_FORMAT

WIDTH = len(SHAPE_NAMES) * len(BLOCKS)


def tiny_artifact(**overrides: Any) -> dict[str, Any]:
    """Terms "bug" (+2) and "poem" (-2), idf 1, no shape weight, calibration identity: a prompt
    with "bug" alone scores sigmoid(2) = 0.880797, "poem" alone sigmoid(-2) = 0.119203, and
    a prompt with neither sigmoid(0) = 0.5."""
    body: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "version": "r1-test00000001",
        "data_sha256": "ab" * 32,
        "trained_on": {"files": [{"name": "tiny.jsonl", "sha256": "cd" * 32, "rows": 3}]},
        "params": {"alpha": 1.0, "shape_weight": 1.0, "min_df": 1},
        "intercept": 0.0,
        "calibration": [1.0, 0.0],
        "shape": {"mean": [0.0] * WIDTH, "scale": [1.0] * WIDTH, "weights": [0.0] * WIDTH},
        "terms": {"bug": [1.0, 2.0], "poem": [1.0, -2.0]},
        "curve": [
            {"threshold": 1.0, "premium_share": 0.0, "quality_kept_pct": 80.0},
            {"threshold": 0.6, "premium_share": 0.25, "quality_kept_pct": 90.0},
            {"threshold": 0.5, "premium_share": 0.5, "quality_kept_pct": 95.0},
            {"threshold": 0.1, "premium_share": 1.0, "quality_kept_pct": 100.0},
        ],
        "evaluation": {
            "out_of_fold": {
                "mmlu": {
                    "n": 3,
                    "apgr": 0.75,
                    "cpt50": 0.25,
                    "cpt80": 0.5,
                    "share_for_95pct_quality": 0.5,
                }
            }
        },
    }
    body.update(overrides)
    return body


def write_artifact(path: Path, **overrides: Any) -> Path:
    path.write_text(json.dumps(tiny_artifact(**overrides)), encoding="utf-8")
    return path
