"""Replay: every figure below is worked out by hand from the rows `replay_log` writes.

Prices (USD per 1M tokens): tiny and big are local and free; mini (standard) 0.15 in, 0.60 out,
0.075 cached; gpt (premium, the baseline) 2.50 in, 10 out, 1.25 cached. tiny holds 2,000 tokens.

row  p      tokens in/out/cached  logged on (cost)           notes
A    0.05   1000 /  500 /    0    mini   (0.00045)           prompt kept
B    0.20   4000 / 1000 /    0    gpt    (0.02)              too big for tiny
C    0.30   2000 / 1000 / 1000    gpt    (0.01625)           prompt kept; too big for tiny
D    0.70   1000 /  200 /    0    gpt    (0.0045)
E    -      1000 /  250 /    0    mini   (0.0003)            the caller named the model
F    0.10   3000 /  500 /    0    mini   (0.00075)           too big for tiny
plus a demo row, a row older than 7 days and a failed row, none of which count by default.

The actual side: 0.04225 USD; all on gpt 0.06575 USD; quality kept 100 * (1 - (0.05 + 0.1) / 5)
= 97.0 % (A and F were answered below premium).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from analytics.models import RequestLog, RequestPayload
from providers.models import LLMModel, Provider
from routing.models import RoutingPolicy
from routing.replay import ReplayError, ReplayResult, TierCount, payload_prompt
from routing.replay_selector import ReplayQuery, replay_query_parse, replay_report
from routing.router import store
from routing.router.features import BLOCKS, SHAPE_NAMES
from routing.router.model import ARTIFACT_FORMAT

D = Decimal
LOGGED_VERSION = "r1-test"


@dataclass(frozen=True)
class Seeded:
    now: datetime
    models: dict[str, LLMModel]
    rows: dict[str, RequestLog]


def artifact(
    path: Path, version: str, *, probability: float, curve: list[dict[str, float]]
) -> Path:
    """A router that gives every prompt `probability`: no terms, no shape weights, and a
    calibration intercept of logit(p)."""
    width = len(SHAPE_NAMES) * len(BLOCKS)
    data = {
        "format": ARTIFACT_FORMAT,
        "version": version,
        "data_sha256": "0" * 64,
        "intercept": 0.0,
        "terms": {},
        "shape": {"mean": [0.0] * width, "scale": [1.0] * width, "weights": [0.0] * width},
        "calibration": [1.0, math.log(probability / (1 - probability))],
        "curve": [{"premium_share": 0.5, **point} for point in curve],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def active_router(tmp_path: Path, settings: Any) -> Iterator[Path]:
    """The active router: its curve keeps 97 % at 0.1, 90 % at 0.25 and 80 % at 0.5."""
    curve = [
        {"threshold": 0.1, "quality_kept_pct": 97.0},
        {"threshold": 0.25, "quality_kept_pct": 90.0},
        {"threshold": 0.5, "quality_kept_pct": 80.0},
    ]
    path = artifact(tmp_path / "active.json", LOGGED_VERSION, probability=0.5, curve=curve)
    settings.ORCHESTRATOR_ROUTER_ARTIFACT = str(path)
    store.router_forget()
    yield path
    store.router_forget()


@pytest.fixture
def replay_log(db: None, active_router: Path) -> Seeded:
    local = Provider.objects.create(
        name="home", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", locality="local"
    )
    cloud = Provider.objects.create(
        name="openai", kind="openai", base_url="http://127.0.0.1:9/v1", locality="cloud"
    )
    free = {"input_price_per_mtok_usd": D(0), "output_price_per_mtok_usd": D(0)}
    models = {
        "tiny": LLMModel.objects.create(
            provider=local, name="tiny", tier="small_local", context_window=2000, **free
        ),
        "big": LLMModel.objects.create(
            provider=local, name="big", tier="large_local", context_window=32000, **free
        ),
        "mini": LLMModel.objects.create(
            provider=cloud,
            name="mini",
            tier="standard",
            context_window=128000,
            input_price_per_mtok_usd=D("0.15"),
            output_price_per_mtok_usd=D("0.60"),
            cached_input_price_per_mtok_usd=D("0.075"),
        ),
        "gpt": LLMModel.objects.create(
            provider=cloud,
            name="gpt",
            tier="premium",
            context_window=128000,
            is_baseline=True,
            input_price_per_mtok_usd=D("2.50"),
            output_price_per_mtok_usd=D("10.00"),
            cached_input_price_per_mtok_usd=D("1.25"),
        ),
    }
    RoutingPolicy.objects.create(name="balanced", is_default=True)
    now = timezone.now()
    spec: dict[str, tuple[float | None, tuple[int, int, int], str, str | None]] = {
        "A": (0.05, (1000, 500, 0), "mini", "0.00045"),
        "B": (0.2, (4000, 1000, 0), "gpt", "0.02"),
        "C": (0.3, (2000, 1000, 1000), "gpt", "0.01625"),
        "D": (0.7, (1000, 200, 0), "gpt", "0.0045"),
        "E": (None, (1000, 250, 0), "mini", "0.0003"),
        "F": (0.1, (3000, 500, 0), "mini", "0.00075"),
    }
    rows = {}
    for hour, (name, (p, tokens, model, cost)) in enumerate(spec.items(), 1):
        rows[name] = log_row(now - timedelta(hours=hour), p, tokens, models[model], cost)
    for name in ("A", "C"):
        RequestPayload.objects.create(request=rows[name], prompt=f"user: prompt {name}")
    log_row(now - timedelta(hours=2), 0.9, (1000, 1000, 0), models["gpt"], "0.0125", is_demo=True)
    log_row(now - timedelta(days=8), 0.9, (1000, 1000, 0), models["gpt"], "0.0125")
    log_row(now - timedelta(hours=3), 0.9, (0, 0, 0), models["gpt"], "0", status="error")
    return Seeded(now=now, models=models, rows=rows)


def log_row(
    created_at: datetime,
    probability: float | None,
    tokens: tuple[int, int, int],
    model: LLMModel,
    cost: str | None,
    *,
    is_demo: bool = False,
    status: str = "success",
) -> RequestLog:
    trace: dict[str, Any] = {"policy": "balanced"}
    if probability is not None:
        trace["router"] = {"version": LOGGED_VERSION, "probability": probability, "mode": "learned"}
    return RequestLog.objects.create(
        created_at=created_at,
        entry_point="chat",
        status=status,
        task_type="general",
        model=model,
        model_name=model.name,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cached_tokens=tokens[2],
        cost_usd=D(cost) if cost is not None else None,
        cost_state="reported" if cost is not None else "unknown_price",
        decision_trace=trace,
        is_demo=is_demo,
    )


def run(seeded: Seeded, **query: Any) -> ReplayResult:
    return replay_report(query=ReplayQuery(**query), now=seeded.now, allow_path=True).result


def test_threshold_moves_cheap_prompts_down_the_ladder(replay_log: Seeded) -> None:
    # t = 0.4 over four rungs: 0.133333, 0.266667, 0.4. A → tiny; B → big; C → mini
    # (975 = 2000*0.15 + 1000*0.6 + 1000*0.075 millionths); D → gpt; F is too big for tiny → big.
    result = run(replay_log, threshold=0.4)

    assert result.rung_thresholds == (0.133333, 0.266667, 0.4)
    assert (result.requests, result.replayed, result.unchanged, result.unroutable) == (6, 5, 1, 0)
    assert (result.unknown_price, result.actual_unknown_price, result.compared) == (0, 0, 6)
    assert result.actual_cost_usd == D("0.04225")
    assert result.replay_cost_usd == D("0.005775")  # 0.000975 + 0.0045 + 0.0003
    assert result.cost_difference_usd == D("-0.036475")
    assert result.cost_difference_pct == D("-86.33")
    assert result.baseline_cost_usd == D("0.06575")
    assert result.scored == 5
    assert result.actual_quality_kept_pct == 97.0
    assert result.replay_quality_kept_pct == 87.0  # 1 - (0.05 + 0.2 + 0.3 + 0.1) / 5
    assert result.quality_difference_points == -10.0
    assert result.tiers == (
        TierCount("small_local", 0, 1),
        TierCount("large_local", 0, 2),
        TierCount("standard", 3, 2),
        TierCount("premium", 3, 1),
    )


def test_quality_target_takes_the_threshold_from_the_active_router_curve(
    replay_log: Seeded,
) -> None:
    # 90 % → t = 0.25: rungs 0.083333, 0.166667, 0.25. A → tiny, F → big, B → mini
    # (4000*0.15 + 1000*0.6 = 1200 millionths), C and D → gpt.
    result = run(replay_log, quality_target_pct=90.0)

    assert (result.knob.threshold, result.knob.quality_target_pct) == (0.25, 90.0)
    assert result.replay_cost_usd == D("0.02225")
    assert result.cost_difference_usd == D("-0.02")
    assert result.cost_difference_pct == D("-47.34")
    assert result.replay_quality_kept_pct == 93.0  # 1 - (0.05 + 0.2 + 0.1) / 5
    assert result.quality_difference_points == -4.0


def test_ladder_without_the_middle_escalates_what_tiny_cannot_hold(replay_log: Seeded) -> None:
    # small_local, premium at t = 0.4: only D reaches premium by probability; B, C and F do not
    # fit tiny's 2,000 tokens and escalate to gpt (0.02 + 0.01625 + 0.0125).
    result = run(replay_log, threshold=0.4, ladder=("small_local", "premium"))

    assert result.rung_thresholds == (0.4,)
    assert result.replay_cost_usd == D("0.05355")
    assert result.cost_difference_usd == D("0.0113")
    assert result.cost_difference_pct == D("26.75")
    assert result.replay_quality_kept_pct == 99.0
    assert result.quality_difference_points == 2.0
    assert [(t.tier, t.replay) for t in result.tiers] == [
        ("small_local", 1),
        ("standard", 1),
        ("premium", 4),
    ]


def test_a_ladder_no_model_can_hold_leaves_requests_unroutable(replay_log: Seeded) -> None:
    # Only tiny: B, C and F fit nowhere. Costs compare A, D and E; an unroutable request keeps
    # no quality: 1 - (0.05 + 0.7 + 3 * 1) / 5.
    result = run(replay_log, threshold=0.4, ladder=("small_local",))

    assert (result.replayed, result.unchanged, result.unroutable, result.compared) == (2, 1, 3, 3)
    assert result.actual_cost_usd == D("0.00525")
    assert result.replay_cost_usd == D("0.0003")
    assert result.cost_difference_pct == D("-94.29")
    assert result.baseline_cost_usd == D("0.017")
    assert result.replay_quality_kept_pct == 25.0
    assert result.quality_difference_points == -72.0


def test_unknown_prices_are_counted_apart_never_as_zero(replay_log: Seeded) -> None:
    # mini's price becomes unknown: C's replay (on mini) cannot be costed. X was logged at an
    # unknown price; replayed on gpt it would cost 0.00125, but has nothing to compare with.
    LLMModel.objects.filter(name="mini").update(
        input_price_per_mtok_usd=None, output_price_per_mtok_usd=None
    )
    log_row(
        replay_log.now - timedelta(hours=1), 0.5, (100, 100, 0), replay_log.models["mini"], None
    )

    result = run(replay_log, threshold=0.4)

    assert (result.requests, result.unknown_price, result.actual_unknown_price) == (7, 1, 1)
    assert result.compared == 5
    assert result.actual_cost_usd == D("0.026")
    assert result.replay_cost_usd == D("0.0048")
    assert result.cost_difference_pct == D("-81.54")
    assert result.baseline_cost_usd == D("0.0495")
    # X: logged below premium (0.5), replayed on premium (0); scored 6.
    assert result.actual_quality_kept_pct == 89.17  # 1 - 0.65 / 6
    assert result.replay_quality_kept_pct == 89.17  # 1 - (0.05 + 0.2 + 0.3 + 0.1) / 6


def test_demo_rows_count_only_when_asked(replay_log: Seeded) -> None:
    result = run(replay_log, threshold=0.4, include_demo=True)

    assert (result.requests, result.replayed) == (7, 6)
    assert result.actual_cost_usd == D("0.05475")
    assert result.replay_cost_usd == D("0.018275")


def test_another_router_version_rescores_kept_prompts_only(
    replay_log: Seeded, tmp_path: Path
) -> None:
    # The other router gives every prompt 0.8: A and C (prompts kept) go to gpt; B, D and F keep
    # their logged probability. Both sides are judged with the new probabilities: actual loses
    # 0.8 (A) + 0.1 (F), the replay 0.2 (B on big) + 0.1 (F on big).
    other = artifact(tmp_path / "other.json", "r-other", probability=0.8, curve=[])

    result = run(replay_log, threshold=0.4, router=str(other))

    assert (result.router_version, result.rescored, result.probability_reused) == ("r-other", 2, 3)
    assert result.replay_cost_usd == D("0.02855")  # 0.0075 + 0.01625 + 0.0045 + 0.0003
    assert result.cost_difference_pct == D("-32.43")
    assert result.actual_quality_kept_pct == 82.0
    assert result.replay_quality_kept_pct == 94.0


def test_the_logged_router_version_is_not_rescored(replay_log: Seeded, active_router: Path) -> None:
    result = run(replay_log, threshold=0.4, router=str(active_router))

    assert (result.rescored, result.probability_reused) == (0, 0)
    assert result.replay_cost_usd == D("0.005775")


def test_payload_prompt_is_what_the_engine_scored() -> None:
    assert payload_prompt("user: what is 2+2?") == "what is 2+2?"
    kept = "system: be brief\n\nuser: a\n\nb\n\nassistant: x\n\nuser: c"
    assert payload_prompt(kept) == "be brief\na\n\nb\nc"
    assert payload_prompt("no roles here") == "no roles here"


def test_a_named_policy_replays_its_own_knob(replay_log: Seeded) -> None:
    RoutingPolicy.objects.create(
        name="thrifty", router={"threshold": 0.4, "ladder": ["small_local", "premium"]}
    )

    result = run(replay_log, policy="thrifty")

    assert (result.knob.threshold, result.knob.ladder) == (0.4, ("small_local", "premium"))
    assert result.replay_cost_usd == D("0.05355")  # as with the same knob given by hand


def test_a_heuristic_policy_needs_a_threshold_or_target(replay_log: Seeded) -> None:
    RoutingPolicy.objects.create(name="plain", router={"mode": "heuristic"})

    with pytest.raises(ReplayError, match="routes by the complexity heuristic"):
        run(replay_log, policy="plain")
    result = run(replay_log, policy="plain", threshold=0.4)

    assert result.replay_cost_usd == D("0.005775")


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        ({"threshold": "1.5"}, "threshold", "threshold must be between 0 and 1"),
        ({"threshold": "x"}, "threshold", "threshold must be a number"),
        ({"threshold": "nan"}, "threshold", "threshold must be between 0 and 1"),
        ({"quality_target": "101"}, "quality_target", "quality target must be between 0 and 100"),
        ({"threshold": "0.3", "quality_target": "90"}, "threshold", "not both"),
        ({"ladder": "small_local,huge"}, "ladder", "unknown tier 'huge'"),
        ({"ladder": "premium,premium"}, "ladder", "listed twice"),
        ({"days": "0"}, "days", "days must be between 1 and 366"),
        ({"days": "2.5"}, "days", "days must be a whole number"),
    ],
)
def test_query_parse_refuses_bad_input(given: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ReplayError, match=message) as caught:
        replay_query_parse(**given)
    assert caught.value.field == field


def test_command_prints_the_exact_json(replay_log: Seeded) -> None:
    out = call_text("--threshold", "0.4", "--policy", "balanced", "--json")

    data = json.loads(out)
    assert set(data) >= {"start", "end"}
    del data["start"], data["end"]
    assert data == {
        "knob": {
            "threshold": 0.4,
            "quality_target_pct": None,
            "ladder": ["small_local", "large_local", "standard", "premium"],
            "policy": "balanced",
            "rung_thresholds": [0.133333, 0.266667, 0.4],
            "router_version": None,
        },
        "requests": 6,
        "replayed": 5,
        "unchanged": 1,
        "unroutable": 0,
        "unknown_price": 0,
        "actual_unknown_price": 0,
        "rescored": 0,
        "probability_reused": 0,
        "compared": 6,
        "actual_cost_usd": "0.04225000",
        "replay_cost_usd": "0.00577500",
        "cost_difference_usd": "-0.03647500",
        "cost_difference_pct": "-86.33",
        "baseline_cost_usd": "0.06575000",
        "scored": 5,
        "actual_quality_kept_pct": 97.0,
        "replay_quality_kept_pct": 87.0,
        "quality_difference_points": -10.0,
        "tiers": {
            "small_local": {"actual": 0, "replay": 1},
            "large_local": {"actual": 0, "replay": 2},
            "standard": {"actual": 3, "replay": 2},
            "premium": {"actual": 3, "replay": 1},
        },
    }


def test_command_uses_the_default_policy_knob_without_a_threshold(replay_log: Seeded) -> None:
    # The policy sets no router knob: the default 95 % target, 0.1 on the active curve.
    data = json.loads(call_text("--json"))

    assert (data["knob"]["threshold"], data["knob"]["quality_target_pct"]) == (0.1, 95.0)


def test_command_prints_a_table(replay_log: Seeded) -> None:
    out = call_text("--threshold", "0.4", "--ladder", "small_local,standard,premium")

    assert "threshold 0.4, ladder small_local > standard > premium" in out
    assert "requests 6: replayed 5, unchanged 1, unroutable 0, unknown price 0" in out
    # B and C → mini, F escalates from tiny to mini: 0.0012 + 0.000975 + 0.0045 + 0.0003 + 0.00075.
    assert "0.04225000" in out and "0.00772500" in out and "-0.03452500" in out
    assert "quality kept %" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threshold", "1.2"], "threshold must be between 0 and 1"),
        (["--threshold", "0.3", "--quality-target", "90"], "not both"),
        (["--ladder", "small_local,gigantic"], "unknown tier 'gigantic'"),
        (["--days", "0"], "days must be between 1 and 366"),
        (["--policy", "nope"], "unknown routing policy 'nope'; known: balanced"),
        (["--router-artifact", "no-such-version"], "unknown router version 'no-such-version'"),
        (["--router-artifact", "/no/such/file.json"], "cannot read router artifact"),
    ],
)
def test_command_errors(replay_log: Seeded, argv: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("router_replay", *argv)


def call_text(*argv: str) -> str:
    out = StringIO()
    call_command("router_replay", *argv, stdout=out)
    return out.getvalue()


def test_page_shows_actual_and_replay_figures(admin_client: Any, replay_log: Seeded) -> None:
    response = admin_client.get(reverse("routing:replay"), {"days": "7", "threshold": "0.4"})

    page = response.content.decode()
    assert response.status_code == 200
    assert '<td data-kpi="actual-cost">$0.04225000</td>' in page
    assert '<td data-kpi="replay-cost">$0.00577500</td>' in page
    assert '<td data-kpi="cost-difference">-0.03647500 (-86.33 %)</td>' in page
    assert '<td data-kpi="actual-quality">97.0 %</td>' in page
    assert '<td data-kpi="replay-quality">87.0 %</td>' in page
    assert '<td data-kpi="quality-difference">-10.0 points</td>' in page
    assert '<tr data-tier="large_local"><td>large_local</td><td>0</td><td>2</td></tr>' in page


def test_page_shows_a_form_error_for_a_bad_threshold(admin_client: Any, replay_log: Seeded) -> None:
    response = admin_client.get(reverse("routing:replay"), {"threshold": "7"})

    page = response.content.decode()
    assert response.status_code == 400
    assert 'data-field="threshold">threshold must be between 0 and 1</p>' in page
    assert 'value="7"' in page
    assert "Replay result" not in page


def test_page_without_a_query_shows_only_the_form(admin_client: Any, replay_log: Seeded) -> None:
    response = admin_client.get(reverse("routing:replay"))

    assert response.status_code == 200
    assert "Replay settings" in response.content.decode()
    assert "Replay result" not in response.content.decode()


@pytest.mark.django_db
def test_page_needs_a_login(client: Any) -> None:
    response = client.get(reverse("routing:replay"))

    assert response.status_code == 302
    assert "login" in response["Location"]


def test_routing_page_links_to_replay(admin_client: Any, replay_log: Seeded) -> None:
    page = admin_client.get(reverse("routing:index")).content.decode()

    assert f'href="{reverse("routing:replay")}"' in page
