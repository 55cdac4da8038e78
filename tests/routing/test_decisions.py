from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from routing import sampling
from routing.engine.values import RoutingError
from routing.models import RoutingPolicy
from routing.pipeline.route import route_decide
from routing.router import store


def publish(states: list[tuple[str, str, str]], *, age_s: float = 0, ok: bool = True) -> None:
    at = (timezone.now() - timedelta(seconds=age_s)).isoformat()
    cache.set(
        sampling.SNAPSHOT_KEY,
        {
            "taken_at": at,
            "agents": [
                {
                    "agent": a,
                    "target": t,
                    "state": s,
                    "ok": ok,
                    "reason": "r",
                    "metrics": {},
                    "sampled_at": at,
                }
                for a, t, s in states
            ],
        },
    )


@pytest.mark.django_db
def test_decision_uses_db_policy_classifier_and_router(registry_rows, tiny_router):
    publish([("connectivity", "", "OPTIMAL")])

    decision = route_decide(prompt="Fix this bug in my python function please")

    assert decision.policy_name == "balanced"
    assert decision.task_type == "code"
    # "bug" scores 0.880797 >= 0.5, the threshold for 95 % quality: the top rung.
    assert decision.complexity == "complex"
    assert [m.ref for m in decision.chain] == ["openai:big", "openai:mini", "local:tiny"]
    assert decision.trace["classification"]["task_type_from"] == "classifier"
    assert decision.trace["classification"]["complexity_from"] == "router"
    assert decision.trace["router"] == {
        "mode": "learned",
        "version": "r1-test00000001",
        "probability": 0.880797,
        "threshold": 0.5,
        "quality_target_pct": 95.0,
        "ladder": ["small_local", "large_local", "standard", "premium"],
        "rung_thresholds": [0.166667, 0.333333, 0.5],
        "rung": 3,
        "tier": "premium",
        "complexity": "complex",
    }
    assert decision.chain[0].input_price_per_mtok_usd is not None
    assert str(decision.chain[0].input_price_per_mtok_usd) == "2.500000"


@pytest.mark.django_db
def test_heuristic_mode_keeps_the_complexity_heuristic(registry_rows, tiny_router):
    RoutingPolicy.objects.filter(name="balanced").update(router={"mode": "heuristic"})
    publish([("connectivity", "", "OPTIMAL")])

    decision = route_decide(prompt="Fix this bug in my python function please")

    assert decision.complexity == "simple"
    assert [m.ref for m in decision.chain] == ["openai:big", "local:tiny", "openai:mini"]
    assert decision.trace["classification"]["complexity_from"] == "classifier"
    assert "router" not in decision.trace


@pytest.mark.django_db
def test_a_lower_probability_takes_a_cheaper_rung(registry_rows, tiny_router):
    RoutingPolicy.objects.filter(name="balanced").update(
        router={"threshold": 0.9, "ladder": ["small_local", "standard", "premium"]}
    )
    publish([("connectivity", "", "OPTIMAL")])

    decision = route_decide(prompt="Summarise the minutes of our meeting")

    # No known term: p = 0.5; rungs start at 0.45 and 0.9, so the middle rung (standard) wins,
    # then better rungs, then cheaper ones.
    assert decision.trace["router"]["probability"] == 0.5
    assert decision.trace["router"]["rung_thresholds"] == [0.45, 0.9]
    assert decision.trace["router"]["quality_target_pct"] is None
    assert decision.complexity == "moderate"
    assert [m.ref for m in decision.chain] == ["openai:mini", "openai:big", "local:tiny"]


@pytest.mark.django_db
def test_caller_complexity_and_override_skip_the_router(registry_rows, tiny_router):
    publish([("connectivity", "", "OPTIMAL")])

    given = route_decide(prompt="Fix this bug", complexity="simple")
    named = route_decide(prompt="Fix this bug", override="openai:mini")

    assert "router" not in given.trace
    assert given.complexity == "simple"
    assert "router" not in named.trace


@pytest.mark.django_db
def test_an_unreadable_artifact_falls_back_to_the_heuristic(registry_rows, settings, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    settings.ORCHESTRATOR_ROUTER_ARTIFACT = str(bad)
    store.router_forget()
    publish([("connectivity", "", "OPTIMAL")])

    decision = route_decide(prompt="Fix this bug in my python function please")

    store.router_forget()
    assert decision.complexity == "simple"
    assert "router" not in decision.trace
    assert decision.trace["classification"]["router_error"].startswith(
        f"cannot read router artifact {bad}"
    )


@pytest.mark.django_db
def test_warm_decision_reads_no_table(registry_rows, django_assert_num_queries):
    publish([("connectivity", "", "OPTIMAL")])
    route_decide(prompt="warm up")

    with django_assert_num_queries(0):
        decision = route_decide(prompt="write a poem about the sea", conversation_model_id=None)

    assert decision.task_type == "creative"


@pytest.mark.django_db(transaction=True)
def test_policy_edit_invalidates_the_cached_configuration(registry_rows):
    publish([("connectivity", "", "DISCONNECTED")])
    first = route_decide(prompt="hello", task_type="general", complexity="complex")
    assert [m.ref for m in first.chain] == ["local:tiny"]

    RoutingPolicy.objects.get(name="balanced").state_rules.all().delete()

    second = route_decide(prompt="hello", task_type="general", complexity="complex")
    assert [m.ref for m in second.chain] == ["openai:big", "openai:mini", "local:tiny"]


@pytest.mark.django_db
def test_stale_snapshot_is_unknown_in_the_trace(registry_rows, settings):
    settings.ORCHESTRATOR_AGENT_INTERVAL_S = 10
    publish([("connectivity", "", "DISCONNECTED")], age_s=31)

    decision = route_decide(prompt="hello", task_type="general", complexity="simple")

    assert decision.trace["agents"][0]["state"] == "unknown"
    assert decision.trace["agents"][0]["reason"] == "stale: sampled 31 s ago (was DISCONNECTED)"
    assert decision.trace["state_rules"][0]["matched"] is False


@pytest.mark.django_db
def test_failed_sample_is_unknown(registry_rows):
    publish([("resources", "", "unknown")], ok=False)

    decision = route_decide(prompt="hi", task_type="simple", complexity="simple")

    assert decision.trace["agents"] == [
        {
            "agent": "resources",
            "target": "",
            "state": "unknown",
            "reason": "r",
            "metrics": {},
            "proceed": True,
            "recommend": "",
            "source": "sampled",
        }
    ]


@pytest.mark.django_db
def test_no_sample_yet_is_unknown(registry_rows):
    decision = route_decide(prompt="hi", task_type="simple", complexity="simple")

    assert [(a["agent"], a["state"], a["reason"]) for a in decision.trace["agents"]] == [
        ("resources", "unknown", "no sample yet"),
        ("connectivity", "unknown", "no sample yet"),
        ("budget", "unknown", "no sample yet"),
    ]


@pytest.mark.django_db
def test_without_any_policy_the_builtin_one_routes(db):
    decision = route_decide(prompt="hi")

    assert decision.policy_name == "builtin"
    assert decision.chain == ()
    assert decision.blocked_reason == "no eligible model"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task_type": "poetry"}, "unknown task_type 'poetry'"),
        ({"complexity": "hard"}, "unknown complexity 'hard'"),
        ({"policy_name": "nope"}, "unknown routing policy 'nope'"),
        ({"override": "openai:gpt-9"}, "unknown model 'openai:gpt-9'"),
    ],
)
def test_caller_mistakes_raise_routing_error(registry_rows, kwargs, message):
    with pytest.raises(RoutingError, match=message):
        route_decide(prompt="hi", **kwargs)


@pytest.mark.django_db
def test_debug_setting_logs_one_json_line_per_decision(registry_rows, settings, caplog):
    settings.ORCHESTRATOR_DEBUG_ROUTING = True

    with caplog.at_level(logging.INFO, logger="routing.decisions"):
        decision = route_decide(prompt="hi", override="openai:mini")

    lines = [r.getMessage() for r in caplog.records if r.name == "routing.decisions"]
    assert len(lines) == 1
    assert json.loads(lines[0]) == {"routing_decision": decision.trace}


@pytest.mark.django_db
def test_debug_setting_off_logs_nothing(registry_rows, caplog):
    with caplog.at_level(logging.INFO, logger="routing.decisions"):
        route_decide(prompt="hi")

    assert [r for r in caplog.records if r.name == "routing.decisions"] == []


@pytest.mark.django_db
def test_another_process_edit_is_seen_after_the_shared_ttl(registry_rows, monkeypatch):
    from routing.config import cache as config_cache

    publish([("connectivity", "", "DISCONNECTED")])
    assert [m.ref for m in route_decide(prompt="hi", task_type="general").chain] == ["local:tiny"]
    # Another process changed the policy: its rows and the shared version, not this memo.
    RoutingPolicy.objects.get(name="balanced").state_rules.all().delete()
    cache.set(config_cache.VERSION_KEY, "edited-elsewhere")

    within_ttl = route_decide(prompt="hi", task_type="general", complexity="simple")
    monkeypatch.setattr(config_cache, "SHARED_TTL_S", 0.0)
    after_ttl = route_decide(prompt="hi", task_type="general", complexity="simple")

    assert [m.ref for m in within_ttl.chain] == ["local:tiny"]
    assert [m.ref for m in after_ttl.chain] == ["local:tiny", "openai:mini", "openai:big"]
