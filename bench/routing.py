"""Routing benchmarks: the pure engine, the warm decision service, and the complexity heuristic.

1. `decide()` with 50 models and 20 rules, pinned to one core (target p99 < 1 ms).
2. `route_decide()` warm, with the classifier, the shared cache and the configuration in
   Postgres (target p99 < 2 ms). Its rows live in a transaction that is rolled back; its cache
   keys use their own prefix.
3. Agreement of the complexity heuristic with outcomes on the routing-dev data (if present).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/orchestrator \
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/routing.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
os.environ["CACHE_KEY_PREFIX"] = "orch-bench-routing"
os.environ["ORCHESTRATOR_AGENT_SAMPLING"] = "off"

import django  # noqa: E402

django.setup()

from django.core.cache import cache  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from providers.models import LLMModel, Provider  # noqa: E402
from routing import sampling  # noqa: E402
from routing.config import cache as config_cache  # noqa: E402
from routing.engine import DEFAULT_TIER_LADDER, decide  # noqa: E402
from routing.engine.classify import HeuristicClassifier  # noqa: E402
from routing.engine.taxonomy import COMPLEXITIES, TASK_TYPES, TIERS  # noqa: E402
from routing.engine.values import (  # noqa: E402
    AgentSnapshot,
    AgentState,
    ModelSpec,
    PolicySpec,
    RegistrySnapshot,
    RouteRequest,
    RuleSpec,
    StateRuleSpec,
)
from routing.models import RoutingPolicy, RoutingRule, RuleFallback, StateRule  # noqa: E402
from routing.pipeline.route import route_decide  # noqa: E402

DEFAULT_DEV = ROOT.parent / "shared" / "data" / "routing-dev" / "routellm-gpt4-mixtral.jsonl"
PROVIDERS = ("local", "openai", "anthropic", "gemini", "mistral")
STATE_RULES = (
    StateRuleSpec("resources", "CRITICAL", "prefer_cloud"),
    StateRuleSpec("connectivity", "DISCONNECTED", "local_only"),
    StateRuleSpec("connectivity", "DEGRADED", "smaller_cloud_or_local"),
    StateRuleSpec("budget", "budget_critical", "free_only"),
)
PROMPTS = (
    "hi there",
    "Fix this bug in my python function: def f(x): return x +",
    "Write a short poem about autumn rain",
    "Compare the trade-offs of Postgres and SQLite for a small web app, step by step.",
    "Explain how TLS certificate validation works and why it matters?",
    "Research the literature on retrieval-augmented generation and cite three papers",
)


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return {
        "n": len(ordered),
        "p50_us": round(pick(0.50), 1),
        "p99_us": round(pick(0.99), 1),
        "max_us": round(ordered[-1] / 1000, 1),
        "mean_us": round(statistics.fmean(ordered) / 1000, 1),
    }


def synthetic_models(count: int) -> tuple[ModelSpec, ...]:
    models = []
    for i in range(count):
        provider = PROVIDERS[i % len(PROVIDERS)]
        local = provider == "local"
        tier = TIERS[i % 2] if local else TIERS[2 + i % 2]
        price = Decimal(0) if local else Decimal(i) / 10
        models.append(
            ModelSpec(
                id=i + 1,
                provider_name=provider,
                provider_kind="openai_compatible" if local else provider,
                name=f"m{i}",
                locality="local" if local else "cloud",
                tier=tier,
                input_price_per_mtok_usd=price,
                output_price_per_mtok_usd=price * 4,
                cached_input_price_per_mtok_usd=None,
                context_window=[4096, 32768, 128000, 1000000][i % 4],
                max_output_tokens=4096,
                task_strengths=(TASK_TYPES[i % len(TASK_TYPES)],),
            )
        )
    return tuple(models)


def synthetic_rules(models: tuple[ModelSpec, ...], count: int) -> tuple[RuleSpec, ...]:
    rules = []
    for i in range(count):
        task = TASK_TYPES[i % len(TASK_TYPES)]
        complexity = "" if i < len(TASK_TYPES) else COMPLEXITIES[i % 3]
        fallbacks = tuple(models[(i + k) % len(models)].id for k in (7, 13, 29))
        rules.append(RuleSpec(task, complexity, models[i % len(models)].id, fallbacks))
    return tuple(rules)


def bench_engine(iterations: int) -> dict[str, float]:
    models = synthetic_models(50)
    registry = RegistrySnapshot.build(models)
    policy = PolicySpec("bench", DEFAULT_TIER_LADDER, synthetic_rules(models, 20), STATE_RULES)
    snapshots = [
        AgentSnapshot(
            (
                AgentState("resources", resources),
                AgentState("connectivity", connectivity),
                AgentState("budget", "no_budget"),
                *(AgentState("connectivity", "OPTIMAL", target=p) for p in PROVIDERS[1:]),
            )
        )
        for resources, connectivity in [
            ("AVAILABLE", "OPTIMAL"),
            ("CRITICAL", "OPTIMAL"),
            ("AVAILABLE", "DEGRADED"),
            ("AVAILABLE", "DISCONNECTED"),
        ]
    ]
    requests = [
        RouteRequest(task, complexity, tokens, sticky_model_id=sticky)
        for task in TASK_TYPES
        for complexity in COMPLEXITIES
        for tokens, sticky in ((200, None), (20000, 17))
    ]
    samples = []
    for i in range(iterations + 1000):
        request = requests[i % len(requests)]
        snapshot = snapshots[i % len(snapshots)]
        started = time.perf_counter_ns()
        decide(request, policy, snapshot, registry)
        if i >= 1000:
            samples.append(time.perf_counter_ns() - started)
    return percentiles(samples)


@transaction.atomic
def bench_service(iterations: int) -> dict[str, float]:
    for i, provider_name in enumerate(PROVIDERS):
        local = provider_name == "local"
        provider = Provider.objects.create(
            name=f"bench-{provider_name}",
            kind="openai_compatible" if local else "openai",
            base_url=f"http://127.0.0.1:9/{i}",
            locality="local" if local else "cloud",
        )
        for spec in synthetic_models(50)[i::5]:
            LLMModel.objects.create(
                provider=provider,
                name=spec.name,
                tier=spec.tier,
                context_window=spec.context_window,
                input_price_per_mtok_usd=spec.input_price_per_mtok_usd,
                output_price_per_mtok_usd=spec.output_price_per_mtok_usd,
                task_strengths=list(spec.task_strengths),
            )
    rows = list(LLMModel.objects.filter(provider__name__startswith="bench-"))
    RoutingPolicy.objects.filter(is_default=True).update(is_default=False)
    policy = RoutingPolicy.objects.create(name="bench-policy", is_default=True)
    for i, rule in enumerate(synthetic_rules(synthetic_models(50), 20)):
        row = RoutingRule.objects.create(
            policy=policy,
            position=i,
            task_type=rule.task_type,
            complexity=rule.complexity,
            primary=rows[i % len(rows)],
        )
        for k, step in enumerate((7, 13, 29)):
            RuleFallback.objects.create(rule=row, position=k, model=rows[(i + step) % len(rows)])
    for i, s in enumerate(STATE_RULES):
        StateRule.objects.create(
            policy=policy, position=i, agent=s.agent, state=s.state, action=s.action
        )
    now = timezone.now().isoformat()
    cache.set(
        sampling.SNAPSHOT_KEY,
        {
            "taken_at": now,
            "agents": [
                {
                    "agent": a,
                    "target": t,
                    "state": st,
                    "ok": True,
                    "reason": "",
                    "metrics": {},
                    "sampled_at": now,
                }
                for a, t, st in [
                    ("resources", "", "AVAILABLE"),
                    ("connectivity", "", "OPTIMAL"),
                    ("budget", "", "no_budget"),
                ]
            ],
        },
        timeout=None,
    )
    config_cache.routing_config_changed()
    for prompt in PROMPTS:
        route_decide(prompt=prompt)
    samples = []
    for i in range(iterations):
        started = time.perf_counter_ns()
        route_decide(prompt=PROMPTS[i % len(PROMPTS)], conversation_model_id=rows[i % 7].id)
        samples.append(time.perf_counter_ns() - started)
    transaction.set_rollback(True)
    cache.delete_many([sampling.SNAPSHOT_KEY, config_cache.VERSION_KEY])
    return percentiles(samples)


def complexity_agreement(path: Path) -> dict[str, object]:
    """Per source: among clean prompts the cheap model answered right, the share called simple;
    among prompts only the premium model answered right, the share called moderate or complex."""
    classifier = HeuristicClassifier()
    counts: dict[str, Counter[str]] = {}
    for line in path.open():
        row = json.loads(line)
        if row["contaminated"]:
            continue
        prompt = row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][0]
        outcomes = row["outcomes"]
        strong = next(k for k in outcomes if k.startswith("gpt-4"))
        weak = next(k for k in outcomes if k != strong)
        strong_score, weak_score = outcomes[strong]["score"], outcomes[weak]["score"]
        called_simple = classifier.classify(prompt).complexity == "simple"
        c = counts.setdefault(row["source"], Counter())
        if weak_score >= strong_score if row["source"] == "mt_bench" else weak_score >= 1:
            c["cheap_right"] += 1
            c["cheap_right_simple"] += called_simple
        elif strong_score > weak_score:
            c["premium_only"] += 1
            c["premium_only_not_simple"] += not called_simple
        c["all"] += 1
        c["all_simple"] += called_simple
    report: dict[str, object] = {}
    for source, c in sorted(counts.items()):
        report[source] = {
            "prompts": c["all"],
            "called_simple_pct": round(100 * c["all_simple"] / c["all"], 1),
            "cheap_right": c["cheap_right"],
            "cheap_right_called_simple_pct": round(
                100 * c["cheap_right_simple"] / c["cheap_right"], 1
            ),
            "premium_only": c["premium_only"],
            "premium_only_not_simple_pct": round(
                100 * c["premium_only_not_simple"] / max(1, c["premium_only"]), 1
            ),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--routing-dev", type=Path, default=DEFAULT_DEV)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    engine = bench_engine(args.iterations)
    print(f"decide(), 50 models, 20 rules, one core: {engine}  (target p99 < 1000 us)")
    service = bench_service(args.iterations // 4)
    print(f"route_decide() warm, classifier included: {service}  (target p99 < 2000 us)")
    if args.routing_dev.exists():
        print("complexity heuristic on routing-dev (clean rows):")
        for source, row in complexity_agreement(args.routing_dev).items():
            print(f"  {source}: {row}")
    ok = engine["p99_us"] < 1000 and service["p99_us"] < 2000
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
