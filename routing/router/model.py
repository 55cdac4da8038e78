"""The router artifact and its scorer. Pure Python (no numpy): one dict lookup per distinct term
of the prompt, so a decision costs well under a millisecond for a 2,000-token prompt
(bench/routing_quality.py measures it).

The artifact is one JSON file (`routing/router/artifacts/`), written by `train` and read once per
process. Its `curve` is the out-of-fold cost-quality curve measured when it was trained; a
policy's "quality to keep" is turned into a probability threshold on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing.router.features import (
    BLOCKS,
    SHAPE_NAMES,
    Prompt,
    read,
    shape,
    term_counts,
)
from routing.router.ladder import Knob

ARTIFACT_FORMAT = "orchestrator-router/1"


class ArtifactError(ValueError):
    """A file that is not a router artifact, or one this version cannot read."""


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """One point of the out-of-fold cost-quality curve: at probabilities >= `threshold` the
    premium model answers; that sends `premium_share` of the prompts to it and keeps
    `quality_kept_pct` of its quality."""

    threshold: float
    premium_share: float
    quality_kept_pct: float


@dataclass(frozen=True, slots=True)
class Router:
    version: str
    data_sha256: str
    trained_on: Mapping[str, Any]
    intercept: float
    terms: Mapping[str, tuple[float, float]]  # term -> (idf, weight)
    shape_mean: tuple[float, ...]
    shape_scale: tuple[float, ...]
    shape_weights: tuple[float, ...]
    calibration: tuple[float, float]  # p = sigmoid(a * raw + b)
    shape_offset: float = 0.0  # what the standardised zeros of the other format blocks add
    curve: tuple[OperatingPoint, ...] = ()
    evaluation: Mapping[str, Any] = field(default_factory=dict)

    def raw(self, prompt: Prompt) -> float:
        reading = read(prompt)
        dot = 0.0
        norm = 0.0
        terms = self.terms
        log = math.log
        counts = term_counts(reading.text)
        for term, count in counts.items():
            found = terms.get(term)
            if found is not None:
                value = found[0] if count == 1 else (1.0 + log(count)) * found[0]
                dot += value * found[1]
                norm += value * value
        total = self.intercept + (dot / math.sqrt(norm) if norm else 0.0)
        values = shape(reading, counts)
        start = BLOCKS.index(reading.fmt) * len(SHAPE_NAMES)
        total += self.shape_offset
        scale = self.shape_scale
        weights = self.shape_weights
        for k, value in enumerate(values):
            j = start + k
            total += value / scale[k] * weights[k] + value / scale[j] * weights[j]
        return total

    def score(self, prompt: Prompt) -> float:
        """The probability that the cheap model's answer would be worse than the premium one's,
        rounded to 6 decimals (so the same prompt gives the same number everywhere)."""
        a, b = self.calibration
        z = a * self.raw(prompt) + b
        p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        return round(p, 6)

    def threshold_for_quality(self, quality_kept_pct: float) -> float:
        """The highest threshold whose operating point keeps at least this much quality."""
        for point in sorted(self.curve, key=lambda p: -p.threshold):
            if point.quality_kept_pct >= quality_kept_pct:
                return point.threshold
        return 0.0

    def operating_point(self, threshold: float) -> OperatingPoint | None:
        """The curve's point at this threshold (the nearest one at or below it)."""
        below = [p for p in self.curve if p.threshold <= threshold]
        if not below:
            return max(self.curve, key=lambda p: p.threshold) if self.curve else None
        return max(below, key=lambda p: p.threshold)

    def threshold_of(self, knob: Knob) -> float:
        """The probability threshold a policy's knob sets: its threshold when it names one,
        else the one keeping its quality target on this router's curve."""
        if knob.threshold is not None:
            return knob.threshold
        return self.threshold_for_quality(knob.quality_target_pct or 100.0)


def router_from_json(data: Mapping[str, Any]) -> Router:
    if data.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"not a router artifact of format {ARTIFACT_FORMAT!r} (found {data.get('format')!r})"
        )
    try:
        shape_block = data["shape"]
        width = len(SHAPE_NAMES) * len(BLOCKS)
        mean = tuple(float(v) for v in shape_block["mean"])
        scale = tuple(float(v) for v in shape_block["scale"])
        weights = tuple(float(v) for v in shape_block["weights"])
        if not len(mean) == len(scale) == len(weights) == width:
            raise ArtifactError(f"shape block must have {width} values each")
        a, b = (float(v) for v in data["calibration"])
        return Router(
            version=str(data["version"]),
            data_sha256=str(data["data_sha256"]),
            trained_on=dict(data.get("trained_on", {})),
            intercept=float(data["intercept"]),
            terms={str(t): (float(v[0]), float(v[1])) for t, v in data["terms"].items()},
            shape_mean=mean,
            shape_scale=scale,
            shape_weights=weights,
            calibration=(a, b),
            shape_offset=-sum(m / s * w for m, s, w in zip(mean, scale, weights, strict=True)),
            curve=tuple(
                OperatingPoint(
                    float(p["threshold"]), float(p["premium_share"]), float(p["quality_kept_pct"])
                )
                for p in data.get("curve", [])
            ),
            evaluation=dict(data.get("evaluation", {})),
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise ArtifactError(f"router artifact is missing or has a bad field: {exc}") from exc


def router_load(path: Path) -> Router:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read router artifact {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: a router artifact is a JSON object")
    return router_from_json(data)
