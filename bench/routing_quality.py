"""How well routers rank prompts, on real outcomes of a premium and a cheap model.

Scores every router by 5-fold cross-validation on the routing-dev data (clean rows; folds by id
hash) with the RouteLLM paper's measures, per benchmark: APGR, CPT(50 %), CPT(80 %) and the
premium share needed for 95 % of premium quality. Routers: random (mean of 20 seeds), prompt
length, the complexity heuristic, and the learned router with its parameters chosen inside each
training fold (nested: no figure is tuned on the rows it is reported on). Then a cross-benchmark
check (train without a benchmark, test on it), the shipped artifact's size and load time, and
the in-process decision cost for a 2,000-token prompt.

    .venv/bin/python bench/routing_quality.py [--data PATH] [--json OUT] [--quick]

`--quick` uses the shipped parameters instead of the nested search (faster, and then the
learned figures are tuned on the same rows: for a look, not for a report). `--scores FILE`
adds any other router: a JSONL file of `{"id": ..., "score": p}` per routing-dev row, as
`manage.py router score` writes them (an external router trained on these rows is not
cross-validated by this: its figures are then in-sample).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

from routing.engine.classify import HeuristicClassifier  # noqa: E402
from routing.router.features import read  # noqa: E402
from routing.router.model import router_load  # noqa: E402
from routing.router.store import SHIPPED  # noqa: E402
from routing.router.train import (  # noqa: E402
    Example,
    Params,
    dev_examples,
    evaluation,
    fit,
    out_of_fold,
    raw_scores,
    select_params,
    sigmoid,
)

DEFAULT_DEV = ROOT.parent / "shared" / "data" / "routing-dev" / "routellm-gpt4-mixtral.jsonl"
SOURCES = ("mmlu", "gsm8k", "mt_bench")
TARGETS = {"mmlu": 0.70, "gsm8k": 0.62, "mt_bench": 0.80}
PUBLISHED = {"mmlu": 0.603, "gsm8k": 0.622, "mt_bench": 0.802}


def tie_break(example: Example) -> float:
    """A tiny deterministic offset so that tied scores are not ranked in file order."""
    return int(hashlib.sha256(example.id.encode()).hexdigest()[:8], 16) / 16**8 * 1e-6


def text_of(example: Example) -> str:
    return read(example.prompt).text


def external_scores(path: Path, examples: list[Example]) -> list[float]:
    found: dict[str, float] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row.get("score"), (int, float)):
                sys.exit(f"{path}: line {number}: no numeric score")
            found[str(row["id"])] = float(row["score"])
    missing = [ex.id for ex in examples if ex.id not in found]
    if missing:
        sys.exit(f"{path}: no score for {len(missing)} rows, e.g. {missing[0]}")
    return [found[ex.id] + tie_break(ex) for ex in examples]


def random_figures(examples: list[Example]) -> dict[str, dict[str, float]]:
    runs = []
    for seed in range(20):
        rng = random.Random(seed)
        runs.append(evaluation(examples, [rng.random() for _ in examples]))
    return {
        source: {
            key: round(statistics.fmean(run[source][key] for run in runs), 4)
            for key in runs[0][source]
        }
        for source in runs[0]
    }


def heuristic_scores(examples: list[Example]) -> list[float]:
    classifier = HeuristicClassifier()
    return [
        float(classifier.classify(text_of(ex)).signals["score"]) + tie_break(ex) for ex in examples
    ]


def length_scores(examples: list[Example]) -> list[float]:
    return [float(len(text_of(ex))) + tie_break(ex) for ex in examples]


def learned_scores(examples: list[Example], params: Params | None) -> list[float]:
    return [float(p) for p in sigmoid(out_of_fold(examples, params))]


def cross_benchmark(examples: list[Example], quick: Params | None) -> dict[str, dict[str, float]]:
    result = {}
    for held_out in SOURCES:
        train = [ex for ex in examples if ex.source != held_out]
        test = [ex for ex in examples if ex.source == held_out]
        if not test:
            continue
        params = quick or select_params(train)
        raw = raw_scores(fit(train, params), test)
        result[held_out] = evaluation(test, [float(v) for v in raw])[held_out]
        result[held_out]["params"] = params.as_json()  # type: ignore[assignment]
    return result


def decision_cost(examples: list[Example], iterations: int) -> dict[str, float]:
    router = router_load(SHIPPED)
    texts = [text_of(ex) for ex in examples]
    words: list[str] = []
    for text in texts:
        words.extend(text.split())
        if len(words) > 1600:
            break
    # About 2,000 cl100k tokens of benchmark English (1,500 words, ~8,000 characters).
    prompt = " ".join(words[:1500])
    for _ in range(200):
        router.score(prompt)
    samples = []
    for _ in range(iterations):
        started = time.perf_counter_ns()
        router.score(prompt)
        samples.append(time.perf_counter_ns() - started)
    samples.sort()
    short = [text_of(ex) for ex in examples[:500]]
    began = time.perf_counter()
    for text in short:
        router.score(text)
    per_short_us = (time.perf_counter() - began) / len(short) * 1e6
    return {
        "prompt_chars": len(prompt),
        "p50_us": round(samples[len(samples) // 2] / 1000, 1),
        "p99_us": round(samples[int(len(samples) * 0.99)] / 1000, 1),
        "max_us": round(samples[-1] / 1000, 1),
        "benchmark_prompt_mean_us": round(per_short_us, 1),
    }


def load_cost() -> dict[str, float]:
    started = time.perf_counter()
    router = router_load(SHIPPED)
    return {
        "artifact_bytes": SHIPPED.stat().st_size,
        "load_ms": round((time.perf_counter() - started) * 1000, 1),
        "terms": len(router.terms),
        "version": router.version,  # type: ignore[dict-item]
    }


def table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| router | benchmark | n | APGR | CPT(50 %) | CPT(80 %) | premium share for 95 % |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, figures in rows.items():
        for source in SOURCES:
            if source not in figures:
                continue
            f = figures[source]
            lines.append(
                f"| {name} | {source} | {int(f['n'])} | {f['apgr']:.3f} | {f['cpt50']:.1%} | "
                f"{f['cpt80']:.1%} | {f['share_for_95pct_quality']:.1%} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DEV)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    parser.add_argument("--quick", action="store_true", help="Shipped parameters, no nesting.")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument(
        "--scores", type=Path, action="append", default=[], help="JSONL of id, score."
    )
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"no routing-dev data at {args.data}")
    started = time.perf_counter()
    examples = dev_examples(args.data)
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))["params"]
    quick = Params(**shipped) if args.quick else None
    rows = {
        "random (mean of 20 seeds)": random_figures(examples),
        "prompt length": evaluation(examples, length_scores(examples)),
        "complexity heuristic": evaluation(examples, heuristic_scores(examples)),
        "learned (nested CV)" if quick is None else "learned (shipped params, not nested)": (
            evaluation(examples, learned_scores(examples, quick))
        ),
    }
    for path in args.scores:
        rows[f"scores: {path.name}"] = evaluation(examples, external_scores(path, examples))
    crossed = cross_benchmark(examples, quick)
    result = {
        "data": {"file": args.data.name, "rows": len(examples)},
        "cross_validated": rows,
        "cross_benchmark": crossed,
        "artifact": load_cost(),
        "decision": decision_cost(examples, args.iterations),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(table(rows))
    print()
    print("Cross-benchmark (trained without the benchmark, tested on it):")
    print(table({"learned": crossed}))
    print()
    print(json.dumps({k: result[k] for k in ("artifact", "decision", "seconds")}, indent=2))
    for source, target in TARGETS.items():
        learned = next(iter(v for k, v in rows.items() if k.startswith("learned")))
        got = learned[source]["apgr"]
        verdict = "met" if got >= target else "MISSED"
        print(f"target APGR {source} >= {target}: {got:.3f} {verdict}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
