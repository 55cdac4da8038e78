from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from providers.models import LLMModel, Provider
from routing.config import ConfigFileError, config_apply, config_export
from routing.config.presets import PRESETS, default_policy_ensure, preset_load
from routing.models import RoutingPolicy, RoutingRule, StateRule

GOOD = """\
version: 1
providers:
  - name: local
    kind: openai_compatible
    base_url: http://127.0.0.1:8080/v1
    locality: local
    models:
      - name: tiny
        tier: small_local
        context_window: 2048
        max_output_tokens: 512
        prices: {input: 0, output: 0, cached_input: 0}
        task_strengths: [simple, general]
  - name: openai
    kind: openai
    base_url: https://api.openai.com/v1
    locality: cloud
    credential_env: OPENAI_API_KEY
    models:
      - name: gpt-4o
        display_name: GPT-4o
        tier: premium
        context_window: 128000
        max_output_tokens: 16384
        prices: {input: 2.50, output: 10.00, cached_input: 1.25}
        task_strengths: [code]
        is_baseline: true
      - name: gpt-4o-mini
        tier: standard
        context_window: 128000
        max_output_tokens: 16384
        prices: {input: 0.15, output: 0.6, cached_input: null}
policies:
  - name: house
    default: true
    sticky_sessions: false
    tier_ladder:
      simple: [small_local, standard]
    thresholds:
      resources: {cpu_pct: 70}
      connectivity: {latency_ms: 300}
    rules:
      - task_type: code
        primary: openai:gpt-4o
        fallbacks: [openai:gpt-4o-mini, local:tiny]
      - task_type: research
        complexity: complex
        tiers: [premium]
    state_rules:
      - {agent: connectivity, state: DISCONNECTED, action: local_only}
      - {agent: budget, state: budget_critical, action: free_only}
"""


@pytest.mark.django_db
def test_import_creates_everything_with_exact_prices():
    report = config_apply(text=GOOD)

    assert report.created == [
        "provider local",
        "model local:tiny",
        "provider openai",
        "model openai:gpt-4o",
        "model openai:gpt-4o-mini",
        "policy house",
    ]
    gpt = LLMModel.objects.get(name="gpt-4o")
    assert gpt.input_price_per_mtok_usd == Decimal("2.5")
    assert gpt.cached_input_price_per_mtok_usd == Decimal("1.25")
    assert gpt.is_baseline is True
    assert LLMModel.objects.get(name="gpt-4o-mini").cached_input_price_per_mtok_usd is None
    assert Provider.objects.get(name="openai").credential_env == "OPENAI_API_KEY"
    policy = RoutingPolicy.objects.get(name="house")
    assert (policy.is_default, policy.sticky_sessions) == (True, False)
    assert policy.thresholds == {"resources": {"cpu_pct": 70}, "connectivity": {"latency_ms": 300}}
    code = RoutingRule.objects.get(policy=policy, task_type="code")
    assert code.primary == gpt
    assert [f.model.name for f in code.fallbacks.all()] == ["gpt-4o-mini", "tiny"]
    assert list(StateRule.objects.values_list("agent", "state", "action")) == [
        ("connectivity", "DISCONNECTED", "local_only"),
        ("budget", "budget_critical", "free_only"),
    ]


@pytest.mark.django_db
def test_import_is_idempotent():
    config_apply(text=GOOD)
    ids = sorted(RoutingRule.objects.values_list("id", flat=True))

    again = config_apply(text=GOOD)

    assert again.created == [] and again.updated == []
    assert len(again.unchanged) == 6
    assert sorted(RoutingRule.objects.values_list("id", flat=True)) == ids


@pytest.mark.django_db
def test_changed_price_and_policy_are_updated():
    config_apply(text=GOOD)

    report = config_apply(
        text=GOOD.replace("input: 0.15", "input: 0.20").replace("cpu_pct: 70", "cpu_pct: 75")
    )

    assert report.updated == ["model openai:gpt-4o-mini", "policy house"]
    assert LLMModel.objects.get(name="gpt-4o-mini").input_price_per_mtok_usd == Decimal("0.2")
    assert RoutingPolicy.objects.get().thresholds["resources"] == {"cpu_pct": 75}
    assert RoutingRule.objects.count() == 2


@pytest.mark.django_db
def test_export_import_round_trip():
    config_apply(text=GOOD)
    exported = config_export()

    for model in (RoutingPolicy, LLMModel, Provider):
        model.objects.all().delete()
    config_apply(text=exported)

    assert config_export() == exported
    assert "credential_encrypted" not in exported
    assert "input: '2.5'" in exported


BAD_CASES = [
    ("version: 2\n", ["line 1: version must be 1"]),
    (
        "version: 1\nfoo: 1\n",
        [
            "line 2: the file: unknown key 'foo'; "
            "expected one of version, providers, policies, budgets"
        ],
    ),
    ("version: 1\npolicies: [\n", None),
    (
        GOOD.replace("tier: standard", "tier: huge"),
        [
            "line 29: model openai:gpt-4o-mini tier: 'huge' is not one of "
            "small_local, large_local, standard, premium"
        ],
    ),
    (
        GOOD.replace("output: 0.6", "output: cheap"),
        ["line 32: model openai:gpt-4o-mini price output must be a number or null; got 'cheap'"],
    ),
    (
        GOOD.replace("context_window: 2048", "context_window: lots"),
        ["line 10: model local:tiny context_window must be an integer; got 'lots'"],
    ),
    (
        GOOD.replace("fallbacks: [openai:gpt-4o-mini, local:tiny]", "fallbacks: [openai:gpt-5]"),
        ["line 45: unknown model 'openai:gpt-5' (not in this file nor the database)"],
    ),
    (
        GOOD.replace("cpu_pct: 70", "cpu: 70"),
        [
            "line 40: policy 'house' thresholds: resources: unknown threshold 'cpu'; "
            "expected one of cpu_pct, critical_cpu_pct, critical_disk_mbs, critical_gpu_pct, "
            "critical_load_1m, critical_memory_pct, critical_net_mbps, disk_mbs, gpu_pct, "
            "load_1m, margin_load, margin_pct, memory_pct, net_mbps"
        ],
    ),
    (
        GOOD.replace("state: DISCONNECTED", "state: OFFLINE").replace(
            "action: free_only", "action: pray"
        ),
        [
            "line 50: policy 'house': unknown state 'OFFLINE' for agent 'connectivity'; "
            "expected one of OPTIMAL, DEGRADED, DISCONNECTED, no_targets, unknown",
            "line 51: policy 'house' state rule action: 'pray' is not one of local_only, "
            "cloud_only, prefer_local, prefer_cloud, smaller_cloud_or_local, free_only, block",
        ],
    ),
    (
        GOOD.replace(
            "        task_strengths: [code]\n",
            "        task_strengths: [code]\n        is_baseline: true\n",
        ),
        ["line 28: model: 'is_baseline' given twice"],
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("text", "errors"), BAD_CASES, ids=range(len(BAD_CASES)))
def test_bad_files_are_rejected_with_lines_and_nothing_applied(text, errors):
    Provider.objects.create(name="keep", kind="openai", base_url="http://x.test", locality="cloud")

    with pytest.raises(ConfigFileError) as raised:
        config_apply(text=text)

    if errors is None:
        assert raised.value.errors[0].startswith("line 3: invalid YAML")
    else:
        assert raised.value.errors == errors
    assert list(Provider.objects.values_list("name", flat=True)) == ["keep"]
    assert not LLMModel.objects.exists()
    assert not RoutingPolicy.objects.exists()


@pytest.mark.django_db
def test_late_failure_rolls_back_earlier_writes():
    """The providers are written before the unknown model in a rule is found; all is undone."""
    text = GOOD.replace("primary: openai:gpt-4o", "primary: openai:gpt-6")

    with pytest.raises(ConfigFileError, match="line 44: unknown model 'openai:gpt-6'"):
        config_apply(text=text)

    assert not Provider.objects.exists()


@pytest.mark.django_db
def test_commands(tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    out = io.StringIO()

    call_command("config_import", str(good), stdout=out)
    assert out.getvalue().startswith(f"{good}: applied: 6 created, 0 updated, 0 unchanged")

    exported = tmp_path / "out.yaml"
    call_command("config_export", "--output", str(exported), stdout=io.StringIO())
    assert exported.read_text() == config_export()

    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("locality: cloud", "locality: moon"))
    with pytest.raises(CommandError) as raised:
        call_command("config_import", str(bad))
    assert str(raised.value) == (
        f"{bad}: nothing was applied\n"
        f"{bad}: line 17: provider 'openai' locality: 'moon' is not one of local, cloud"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_reload_unchanged(name):
    first = preset_load(name=name)
    second = preset_load(name=name)

    assert first.created == [f"policy {name}"]
    assert second.unchanged == [f"policy {name}"]
    assert RoutingPolicy.objects.get(name=name).state_rules.count() >= 2


@pytest.mark.django_db
def test_default_policy_is_loaded_once():
    assert default_policy_ensure() is True
    assert default_policy_ensure() is False
    assert RoutingPolicy.objects.get(is_default=True).name == "balanced"


@pytest.mark.django_db
def test_bootstrap_loads_balanced_policy(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = io.StringIO()

    call_command("bootstrap_local", stdout=out)

    assert "==> routing policy 'balanced' loaded as the default" in out.getvalue()
    assert RoutingPolicy.objects.get(is_default=True).name == "balanced"


@pytest.mark.django_db
def test_the_documented_example_imports():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "routing.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]

    report = config_apply(text=example)

    assert report.created == [
        "provider openai",
        "model openai:gpt-4o",
        "model openai:gpt-4o-mini",
        "policy house",
        "budget team",
        "budget premium-cap",
    ]


@pytest.mark.django_db
def test_an_imported_on_or_off_stops_a_provider_following_its_key():
    config_apply(text=GOOD)
    Provider.objects.filter(name__in=["openai", "local"]).update(follows_credential_env=True)

    config_apply(
        text=GOOD.replace(
            "credential_env: OPENAI_API_KEY", "credential_env: OPENAI_API_KEY\n    enabled: false"
        )
    )

    assert dict(Provider.objects.values_list("name", "follows_credential_env")) == {
        "local": True,
        "openai": False,
    }


@pytest.mark.django_db
def test_a_policy_balance_is_validated_and_kept() -> None:
    balanced = GOOD.replace(
        "    sticky_sessions: false\n",
        "    sticky_sessions: false\n"
        "    router:\n"
        "      balance: {strategy: weighted, weights: {openai:gpt-4o-mini: 3}}\n",
    )
    config_apply(text=balanced)

    policy = RoutingPolicy.objects.get(name="house")
    assert policy.router == {
        "balance": {"strategy": "weighted", "weights": {"openai:gpt-4o-mini": 3}}
    }
    with pytest.raises(ConfigFileError) as refused:
        config_apply(text=balanced.replace("weighted", "fastest"))
    assert "strategy 'fastest' is not one of none, round_robin, least_latency, weighted" in str(
        refused.value.errors
    )


@pytest.mark.django_db
def test_the_tool_and_json_flags_import_and_export() -> None:
    flagged = GOOD.replace(
        "        task_strengths: [simple, general]\n",
        "        task_strengths: [simple, general]\n"
        "        accepts_tools: true\n"
        "        accepts_json_output: true\n",
        1,
    )
    config_apply(text=flagged)
    tiny = LLMModel.objects.get(name="tiny")
    exported = config_export()

    assert (tiny.accepts_tools, tiny.accepts_json_output) == (True, True)
    assert exported.count("accepts_tools: true") == 1
    assert exported.count("accepts_json_output: true") == 1
    for model in (RoutingPolicy, LLMModel, Provider):
        model.objects.all().delete()
    config_apply(text=exported)
    assert list(
        LLMModel.objects.filter(accepts_tools=True, accepts_json_output=True).values_list(
            "name", flat=True
        )
    ) == ["tiny"]
