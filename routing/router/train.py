"""Training the router: ridge regression of the premium model's gain over the cheap one, on TF-IDF
terms and shape features, then a logistic calibration to a probability. numpy only, no randomness:
the same rows and parameters give the same artifact, byte for byte on one machine. Weights are
rounded to 6 significant digits, yet another CPU's BLAS kernel (AVX2 against AVX-512) can still
move a value that sat on a rounding boundary by one unit in its last digit: about a thousand of
them, none changing a routing decision (tests/routing/test_router_commands.py checks this).

The target is the gain g = (strong - weak) / scale in [-1, 1] (scale 9 for 1-10 judge scores,
1 for right/wrong), so prompts the cheap model gets right and the premium one gets wrong push
the other way; the calibration then maps the ridge output to P(strong > weak) on held-out folds.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from routing.router.features import BLOCKS, SHAPE_NAMES, Prompt, read, shape_vector, term_counts
from routing.router.metrics import Outcome, apgr, cpt, curve, share_for_quality
from routing.router.model import ARTIFACT_FORMAT

FOLDS = 5
FEEDBACK = "feedback"
MIN_TUNING_ROWS = 100
CROSS_WEIGHT = 0.5
CURVE_STEPS = 20  # operating points every 5 % of premium share


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled prompt: its benchmark (or "feedback"), the strong and weak scores on a
    0..1 scale, and a weight in the loss."""

    id: str
    prompt: Prompt
    source: str
    strong: float
    weak: float
    weight: float = 1.0

    @property
    def gain(self) -> float:
        return self.strong - self.weak

    @property
    def premium_better(self) -> bool:
        return self.strong > self.weak


@dataclass(frozen=True, slots=True)
class Params:
    alpha: float = 2.0  # ridge penalty
    shape_weight: float = 0.3  # dense features' scale against the unit-norm TF-IDF block
    min_df: int = 2  # a term must appear in this many training prompts

    def as_json(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "shape_weight": self.shape_weight, "min_df": self.min_df}


GRID = tuple(Params(alpha=a, shape_weight=s) for a in (2.0, 4.0, 8.0, 16.0) for s in (1.0, 3.0))


@dataclass
class Fitted:
    vocabulary: dict[str, int]
    idf: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # terms, then shape (already multiplied by shape_weight), then bias
    params: Params
    basis: Basis | None = None  # what it was fitted on, with the term blocks already built


def dev_examples(path: Path, *, include_contaminated: bool = False) -> list[Example]:
    """Rows of a routing-dev file (RouteLLM's outcomes of a strong and a weak model)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("contaminated") and not include_contaminated:
            continue
        strong_name, weak_name = _pair(row, number, path)
        scale = 9.0 if row["source"] == "mt_bench" else 1.0
        low = 1.0 if row["source"] == "mt_bench" else 0.0
        rows.append(
            Example(
                id=row["id"],
                prompt=row["prompt"],
                source=row["source"],
                strong=(float(row["outcomes"][strong_name]["score"]) - low) / scale,
                weak=(float(row["outcomes"][weak_name]["score"]) - low) / scale,
            )
        )
    return rows


def _pair(row: dict[str, Any], number: int, path: Path) -> tuple[str, str]:
    names = sorted(row["outcomes"])
    if len(names) != 2:
        raise ValueError(f"{path}: line {number}: outcomes must name exactly two models")
    strong = next((n for n in names if "gpt-4" in n), names[0])
    weak = next(n for n in names if n != strong)
    return strong, weak


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fold_of(example_id: str, folds: int = FOLDS) -> int:
    """A fixed fold per id (its hash), so folds never depend on the order of the rows."""
    return int(hashlib.sha256(example_id.encode()).hexdigest()[:8], 16) % folds


# -- features -------------------------------------------------------------------------------


Document = tuple[dict[str, int], list[float]]


@lru_cache(maxsize=65536)
def _document(prompt: str | tuple[str, ...]) -> Document:
    reading = read(prompt)
    counts = term_counts(reading.text)
    return dict(counts), shape_vector(reading, counts)


PromptKey = str | tuple[str, ...]


def _prompt_key(example: Example) -> PromptKey:
    return example.prompt if isinstance(example.prompt, str) else tuple(example.prompt)


def _documents(examples: Sequence[Example]) -> list[Document]:
    return [_document(_prompt_key(ex)) for ex in examples]


def _fit_vocabulary(
    docs: Sequence[tuple[dict[str, int], list[float]]], min_df: int
) -> tuple[dict[str, int], np.ndarray]:
    df: dict[str, int] = {}
    for counts, _ in docs:
        for term in counts:
            df[term] = df.get(term, 0) + 1
    kept = sorted(t for t, n in df.items() if n >= min_df)
    vocabulary = {t: i for i, t in enumerate(kept)}
    n = len(docs)
    idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in kept])
    return vocabulary, idf


def _matrix(
    docs: Sequence[tuple[dict[str, int], list[float]]],
    vocabulary: dict[str, int],
    idf: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    shape_weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The design matrix as coordinate arrays (row, column, value): unit-norm TF-IDF terms, the
    standardised shape block times `shape_weight`, and a bias column of ones."""
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    n_terms = len(vocabulary)
    width = len(mean)
    for r, (counts, dense) in enumerate(docs):
        for j, v in _term_entries(counts, vocabulary, idf):
            rows.append(r)
            cols.append(j)
            vals.append(v)
        for k in range(width):
            if dense[k] != 0.0 or mean[k] != 0.0:
                rows.append(r)
                cols.append(n_terms + k)
                vals.append((dense[k] - mean[k]) / scale[k] * shape_weight)
        rows.append(r)
        cols.append(n_terms + width)
        vals.append(1.0)
    return np.array(rows), np.array(cols), np.array(vals), n_terms + width + 1


def _term_entries(
    counts: dict[str, int], vocabulary: dict[str, int], idf: np.ndarray
) -> list[tuple[int, float]]:
    """A row's TF-IDF entries (column, value) by column, scaled to unit norm."""
    found = [(vocabulary[t], (1.0 + math.log(c))) for t, c in counts.items() if t in vocabulary]
    found.sort()
    values = [tf * float(idf[j]) for j, tf in found]
    norm = math.sqrt(sum(v * v for v in values))
    return [(j, v / norm) for (j, _), v in zip(found, values, strict=True)]


def _shape_stats(
    docs: Sequence[tuple[dict[str, int], list[float]]],
) -> tuple[np.ndarray, np.ndarray]:
    dense = np.array([d for _, d in docs])
    mean = dense.mean(axis=0)
    scale = dense.std(axis=0)
    scale[scale < 1e-9] = 1.0
    # A format block absent from a row is zero, not "average": keep the bias columns unscaled.
    return np.round(mean, 9), np.round(scale, 9)


Coo = tuple[np.ndarray, np.ndarray, np.ndarray]


class Basis:
    """A training part's vocabulary, IDF and shape statistics (they depend on its prompts and
    `min_df` only), and the TF-IDF block of the design matrix of each set of prompts already
    put on them. The parameter grid fits the same training parts once per grid point: with
    one Basis per part (`_basis`), the vocabulary and the term blocks, the slow part of a fit,
    are built once, and every number comes out exactly as `_matrix` computes it."""

    def __init__(self, prompts: tuple[PromptKey, ...], min_df: int) -> None:
        docs = [_document(p) for p in prompts]
        self.prompts = prompts
        self.vocabulary, self.idf = _fit_vocabulary(docs, min_df)
        self.mean, self.scale = _shape_stats(docs)
        self._terms: dict[tuple[PromptKey, ...], Coo] = {}

    def terms(self, prompts: tuple[PromptKey, ...]) -> Coo:
        """The unit-norm TF-IDF entries of these prompts' rows, in `_matrix`'s order."""
        block = self._terms.get(prompts)
        if block is None:
            rows: list[int] = []
            cols: list[int] = []
            vals: list[float] = []
            for r, prompt in enumerate(prompts):
                for j, v in _term_entries(_document(prompt)[0], self.vocabulary, self.idf):
                    rows.append(r)
                    cols.append(j)
                    vals.append(v)
            block = (
                np.array(rows, dtype=np.int64),
                np.array(cols, dtype=np.int64),
                np.array(vals, dtype=np.float64),
            )
            self._terms[prompts] = block
        return block

    def matrix(
        self, prompts: tuple[PromptKey, ...], shape_weight: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """`_matrix` of these prompts on this basis: the same entries, in the same order."""
        t_rows, t_cols, t_vals = self.terms(prompts)
        n_terms = len(self.vocabulary)
        width = len(self.mean)
        n = len(prompts)
        dense = np.array([_document(p)[1] for p in prompts], dtype=np.float64).reshape(n, width)
        kept = (dense != 0.0) | (self.mean != 0.0)
        s_rows, s_ks = np.nonzero(kept)  # row-major: by row, then by k
        s_vals = ((dense - self.mean) / self.scale * shape_weight)[s_rows, s_ks]
        b_rows = np.arange(n, dtype=np.int64)
        rows = np.concatenate([t_rows, s_rows.astype(np.int64), b_rows])
        cols = np.concatenate(
            [t_cols, n_terms + s_ks.astype(np.int64), np.full(n, n_terms + width)]
        )
        vals = np.concatenate([t_vals, s_vals, np.ones(n)])
        # Each row's terms, then its shape entries, then its bias, as `_matrix` lays them out:
        # the order matters, `np.bincount` adds each row's products in it.
        order = np.argsort(rows, kind="stable")
        return rows[order], cols[order], vals[order], n_terms + width + 1


@lru_cache(maxsize=16)
def _basis(prompts: tuple[PromptKey, ...], min_df: int) -> Basis:
    return Basis(prompts, min_df)


# -- ridge by conjugate gradients -----------------------------------------------------------


def _ridge(
    coo: tuple[np.ndarray, np.ndarray, np.ndarray, int],
    n_rows: int,
    target: np.ndarray,
    weight: np.ndarray,
    alpha: float,
    iterations: int = 400,
) -> np.ndarray:
    rows, cols, vals, width = coo

    def times(v: np.ndarray) -> np.ndarray:
        return np.bincount(rows, weights=vals * v[cols], minlength=n_rows)

    def times_t(u: np.ndarray) -> np.ndarray:
        return np.bincount(cols, weights=vals * u[rows], minlength=width)

    penalty = np.full(width, alpha)
    penalty[-1] = 1e-6  # the bias is (almost) not penalised

    def system(v: np.ndarray) -> np.ndarray:
        return times_t(weight * times(v)) + penalty * v

    b = times_t(weight * target)
    x = np.zeros(width)
    r = b - system(x)
    p = r.copy()
    rs = float(r @ r)
    stop = 1e-12 * float(b @ b)
    for _ in range(iterations):
        if rs <= stop:
            break
        ap = system(p)
        step = rs / float(p @ ap)
        x += step * p
        r -= step * ap
        rs_next = float(r @ r)
        p = r + (rs_next / rs) * p
        rs = rs_next
    return x


def fit(examples: Sequence[Example], params: Params) -> Fitted:
    prompts = tuple(_prompt_key(ex) for ex in examples)
    basis = _basis(prompts, params.min_df)
    coo = basis.matrix(prompts, params.shape_weight)
    target = np.array([ex.gain for ex in examples])
    weight = np.array([ex.weight for ex in examples])
    weights = _ridge(coo, len(examples), target, weight, params.alpha)
    return Fitted(basis.vocabulary, basis.idf, basis.mean, basis.scale, weights, params, basis)


def raw_scores(fitted: Fitted, examples: Sequence[Example]) -> np.ndarray:
    if fitted.basis is not None:
        prompts = tuple(_prompt_key(ex) for ex in examples)
        rows, cols, vals, _ = fitted.basis.matrix(prompts, fitted.params.shape_weight)
    else:
        rows, cols, vals, _ = _matrix(
            _documents(examples),
            fitted.vocabulary,
            fitted.idf,
            fitted.mean,
            fitted.scale,
            fitted.params.shape_weight,
        )
    return np.bincount(rows, weights=vals * fitted.weights[cols], minlength=len(examples))


def _calibrate(raw: np.ndarray, label: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Platt scaling by Newton's method: p = sigmoid(a * raw + b)."""
    a, b = 1.0, 0.0
    for _ in range(50):
        z = np.clip(a * raw + b, -30, 30)
        p = 1 / (1 + np.exp(-z))
        g = weight * (p - label)
        h = weight * p * (1 - p) + 1e-9
        grad = np.array([g @ raw, g.sum()])
        hess = np.array([[h @ (raw * raw), h @ raw], [h @ raw, h.sum()]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        a, b = a - float(step[0]), b - float(step[1])
        if abs(step).max() < 1e-10:
            break
    return a, b


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


# -- cross-validation -------------------------------------------------------------------------


def out_of_fold(
    examples: Sequence[Example], params: Params | None, folds: int = FOLDS
) -> np.ndarray:
    """Each example's raw score from a model trained without its fold. With `params` None, the
    parameters are chosen inside each training part by an inner cross-validation (nested), so
    no reported figure was tuned on the rows it is reported on."""
    fold = np.array([fold_of(ex.id, folds) for ex in examples])
    out = np.zeros(len(examples))
    for k in range(folds):
        train = [ex for ex, f in zip(examples, fold, strict=True) if f != k]
        test = [ex for ex, f in zip(examples, fold, strict=True) if f == k]
        chosen = params or select_params(train, folds=folds - 1)
        out[fold == k] = raw_scores(fit(train, chosen), test)
    return out


def select_params(examples: Sequence[Example], folds: int = FOLDS) -> Params:
    """The grid's parameters with the best mean APGR by cross-validation within each benchmark,
    plus CROSS_WEIGHT times the mean APGR across them when there are two or more (trained
    without a benchmark, tested on it): a router that only memorises one benchmark's topics
    scores badly there, and real traffic looks like no benchmark. Benchmarks with fewer than
    MIN_TUNING_ROWS rows (MT-Bench's 19) are too noisy to tune on and are left out, unless no
    benchmark is larger."""
    counts = _by_source(examples)
    tuned = [k for k, rows in counts.items() if len(rows) >= MIN_TUNING_ROWS] or list(counts)
    best: tuple[float, Params] | None = None
    for params in GRID:
        by_source = apgr_by_source(examples, out_of_fold(examples, params, folds))
        score = float(np.mean([by_source[k] for k in tuned]))
        if len(tuned) >= 2:
            crossed = [_held_out_apgr(examples, params, k) for k in tuned]
            score += CROSS_WEIGHT * float(np.mean(crossed))
        if best is None or score > best[0] + 1e-12:
            best = (score, params)
    assert best is not None
    return best[1]


def _held_out_apgr(examples: Sequence[Example], params: Params, source: str) -> float:
    train = [ex for ex in examples if ex.source != source]
    test = [ex for ex in examples if ex.source == source]
    return apgr_by_source(test, raw_scores(fit(train, params), test))[source]


def _by_source(examples: Sequence[Example]) -> dict[str, list[int]]:
    """Rows per benchmark; feedback rows are trained on, never scored (their outcomes are
    one-sided, so no curve can be drawn from them)."""
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        if ex.source != FEEDBACK:
            groups.setdefault(ex.source, []).append(i)
    return groups


def apgr_by_source(examples: Sequence[Example], raw: np.ndarray) -> dict[str, float]:
    result = {}
    for source, idx in sorted(_by_source(examples).items()):
        outcomes = [Outcome(examples[i].strong, examples[i].weak) for i in idx]
        result[source] = apgr([float(raw[i]) for i in idx], outcomes)
    return result


def evaluation(examples: Sequence[Example], scores: Sequence[float]) -> dict[str, dict[str, float]]:
    """APGR, CPT(50 %), CPT(80 %) and the premium share for 95 % of premium quality, per source."""
    result = {}
    for source, idx in sorted(_by_source(examples).items()):
        outcomes = [Outcome(examples[i].strong, examples[i].weak) for i in idx]
        picked = [float(scores[i]) for i in idx]
        result[source] = {
            "n": len(idx),
            "apgr": round(apgr(picked, outcomes), 4),
            "cpt50": round(cpt(picked, outcomes, 0.5), 4),
            "cpt80": round(cpt(picked, outcomes, 0.8), 4),
            "share_for_95pct_quality": round(share_for_quality(picked, outcomes, 0.95), 4),
        }
    return result


def operating_curve(examples: Sequence[Example], probability: np.ndarray) -> list[dict[str, float]]:
    """Out-of-fold operating points pooled over every example: at each 5 % step of premium
    share, the probability threshold that gives it and the share of premium quality kept."""
    kept = [i for i, ex in enumerate(examples) if ex.source != FEEDBACK]
    outcomes = [Outcome(examples[i].strong, examples[i].weak) for i in kept]
    probability = np.array([float(probability[i]) for i in kept])
    ordered = sorted(float(p) for p in probability)
    strong = sum(o.strong for o in outcomes) / len(outcomes)
    points = curve([float(p) for p in probability], outcomes, points=CURVE_STEPS + 1)
    result = []
    n = len(ordered)
    for point in points:
        k = round(point.premium_share * n)
        # Prompts with probability >= threshold go premium; k of them at this point.
        threshold = 1.0 if k == 0 else ordered[n - k]
        result.append(
            {
                "threshold": round(threshold, 6),
                "premium_share": round(point.premium_share, 4),
                "quality_kept_pct": round(100 * point.quality / strong, 2),
            }
        )
    return result


# -- the artifact -------------------------------------------------------------------------------


def _sig(value: float) -> float:
    return float(f"{value:.6g}")


def train_artifact(
    examples: Sequence[Example],
    *,
    data_sha256: str,
    trained_on: dict[str, Any],
    params: Params | None = None,
) -> dict[str, Any]:
    """Train on every example and describe the result as an artifact (a JSON-ready dict).
    Examples are taken in id order, so the order they come in changes nothing."""
    examples = sorted(examples, key=lambda ex: ex.id)
    try:
        return _train_artifact(examples, data_sha256, trained_on, params)
    finally:
        _basis.cache_clear()  # the training parts' vocabularies and blocks are not needed after


def _train_artifact(
    examples: Sequence[Example],
    data_sha256: str,
    trained_on: dict[str, Any],
    params: Params | None,
) -> dict[str, Any]:
    chosen = params or select_params(examples)
    raw_oof = out_of_fold(examples, chosen)
    label = np.array([1.0 if ex.premium_better else 0.0 for ex in examples])
    weight = np.array([ex.weight for ex in examples])
    a, b = _calibrate(raw_oof, label, weight)
    probability = sigmoid(a * raw_oof + b)
    fitted = fit(examples, chosen)
    n_terms = len(fitted.vocabulary)
    width = len(SHAPE_NAMES) * len(BLOCKS)
    term_weights = fitted.weights[:n_terms]
    shape_weights = fitted.weights[n_terms : n_terms + width] * chosen.shape_weight
    body: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "data_sha256": data_sha256,
        "trained_on": trained_on,
        "params": chosen.as_json(),
        "intercept": _sig(float(fitted.weights[-1])),
        "calibration": [_sig(a), _sig(b)],
        "shape": {
            "names": [f"{block}:{name}" for block in BLOCKS for name in SHAPE_NAMES],
            "mean": [_sig(float(v)) for v in fitted.mean],
            "scale": [_sig(float(v)) for v in fitted.scale],
            "weights": [_sig(float(v)) for v in shape_weights],
        },
        "terms": {
            term: [_sig(float(fitted.idf[j])), _sig(float(term_weights[j]))]
            for term, j in sorted(fitted.vocabulary.items())
            if abs(term_weights[j]) >= 1e-7
        },
        "curve": operating_curve(examples, probability),
        "evaluation": {
            "out_of_fold": evaluation(examples, [float(p) for p in probability]),
            "note": "5-fold by id hash, parameters fixed to the shipped ones",
        },
    }
    digest = hashlib.sha256(artifact_bytes(body)).hexdigest()
    body["version"] = f"r1-{digest[:12]}"
    return body


def artifact_bytes(body: dict[str, Any]) -> bytes:
    return (
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    ).encode()


def data_digest(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()
