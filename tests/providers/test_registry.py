from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import IntegrityError, transaction

from analytics.pricing import CostState, Prices, cost_for
from providers.adapters.types import Usage
from providers.demo import LOCAL_PROVIDER, demo_registry_load
from providers.models import LLMModel, Provider
from providers.selectors import provider_endpoint
from providers.services import provider_models_import
from tests.providers.upstream_server import Reply, UpstreamServer, fixture

pytestmark = pytest.mark.django_db

CLOUD_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")


@pytest.fixture
def no_cloud_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in CLOUD_KEYS:
        monkeypatch.delenv(variable, raising=False)


def prices_of(model: LLMModel) -> Prices:
    return Prices(
        model.input_price_per_mtok_usd,
        model.output_price_per_mtok_usd,
        model.cached_input_price_per_mtok_usd,
    )


def test_demo_registry_loads_the_free_local_model_and_keyless_clouds_disabled(
    no_cloud_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")

    demo_registry_load(local_model_url="http://127.0.0.1:40001/v1")

    assert dict(Provider.objects.values_list("name", "enabled")) == {
        LOCAL_PROVIDER: True,
        "openai": False,
        "anthropic": True,
        "gemini": False,
    }
    local = Provider.objects.get(name=LOCAL_PROVIDER)
    assert (local.kind, local.locality, local.credential_state) == (
        "openai_compatible",
        "local",
        "not set",
    )
    assert provider_endpoint(local).api_key is None
    smol = LLMModel.objects.get(provider=local)
    free = cost_for(Usage(input=1200, output=300), prices_of(smol))
    assert (free.cost_usd, free.state) == (Decimal(0), CostState.REPORTED)
    assert list(LLMModel.objects.filter(is_baseline=True).values_list("name", flat=True)) == [
        "gpt-4o"
    ]
    anthropic = Provider.objects.get(name="anthropic")
    assert anthropic.credential_state == "set (environment variable ANTHROPIC_API_KEY)"
    assert provider_endpoint(anthropic).api_key == "sk-ant-test"


def test_demo_registry_is_idempotent_and_keeps_admin_changes(no_cloud_keys: None) -> None:
    demo_registry_load(local_model_url="http://127.0.0.1:40001/v1")
    LLMModel.objects.filter(name="gpt-4o-mini").update(input_price_per_mtok_usd=Decimal("0.2"))

    demo_registry_load(local_model_url="http://127.0.0.1:40002/v1")

    assert Provider.objects.count() == 4
    assert LLMModel.objects.count() == 5
    assert Provider.objects.get(name=LOCAL_PROVIDER).base_url == "http://127.0.0.1:40002/v1"
    mini = LLMModel.objects.get(name="gpt-4o-mini")
    assert mini.input_price_per_mtok_usd == Decimal("0.2")


def test_a_demo_cloud_provider_is_enabled_when_its_key_appears_after_the_first_start(
    no_cloud_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_registry_load(local_model_url=None)
    assert Provider.objects.get(name="openai").enabled is False

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-later")
    demo_registry_load(local_model_url=None)

    assert dict(Provider.objects.values_list("name", "enabled")) == {
        "openai": True,
        "anthropic": False,
        "gemini": False,
    }


def test_a_demo_cloud_provider_is_disabled_when_its_key_is_gone(
    no_cloud_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test")
    demo_registry_load(local_model_url=None)
    assert Provider.objects.get(name="gemini").enabled is True

    monkeypatch.delenv("GEMINI_API_KEY")
    demo_registry_load(local_model_url=None)

    assert Provider.objects.get(name="gemini").enabled is False


def test_providers_the_admin_chose_are_left_alone(
    no_cloud_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = Provider.objects.create(
        name="my-openai",
        kind="openai",
        base_url="https://api.openai.com/v1",
        locality="cloud",
        credential_env="OPENAI_API_KEY",
        enabled=True,
    )
    demo_registry_load(local_model_url=None)
    Provider.objects.filter(name="anthropic").update(enabled=True, follows_credential_env=False)

    monkeypatch.setenv("GEMINI_API_KEY", "gm-test")
    demo_registry_load(local_model_url=None)

    assert dict(Provider.objects.values_list("name", "enabled")) == {
        "my-openai": True,
        "openai": False,
        "anthropic": True,
        "gemini": True,
    }
    mine.refresh_from_db()
    assert (mine.enabled, mine.follows_credential_env) == (True, False)


def test_bootstrap_local_says_which_providers_wait_for_a_key(
    no_cloud_keys: None, settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("ORCHESTRATOR_ADMIN_PASSWORD", "a-long-admin-password-42")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    out = StringIO()

    call_command("bootstrap_local", local_model_url="http://127.0.0.1:40001/v1", stdout=out)

    assert f"enabled providers: {LOCAL_PROVIDER}, anthropic" in out.getvalue()
    assert "off until their key is set: openai (OPENAI_API_KEY), gemini (GEMINI_API_KEY)" in (
        out.getvalue()
    )


def test_bootstrap_local_command_loads_the_demo(
    no_cloud_keys: None, settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("ORCHESTRATOR_ADMIN_PASSWORD", "a-long-admin-password-42")
    out = StringIO()

    call_command("bootstrap_local", local_model_url="http://127.0.0.1:40001/v1", stdout=out)

    assert f"enabled providers: {LOCAL_PROVIDER}" in out.getvalue()
    assert Provider.objects.filter(name=LOCAL_PROVIDER, enabled=True).exists()


def test_an_empty_admin_password_is_generated_and_kept(
    no_cloud_keys: None, settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("ORCHESTRATOR_ADMIN_PASSWORD", "")
    out = StringIO()

    call_command("bootstrap_local", local_model_url="http://127.0.0.1:40001/v1", stdout=out)

    kept = (tmp_path / "admin_password").read_text().strip()
    assert len(kept) == 16
    assert f"admin account created: admin / {kept}" in out.getvalue()
    assert get_user_model().objects.get(username="admin").check_password(kept)


def test_the_database_allows_one_baseline_only() -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="https://a.example/v1", locality="cloud"
    )
    LLMModel.objects.create(provider=provider, name="a", is_baseline=True)

    with pytest.raises(IntegrityError, match="llmmodel_single_baseline"), transaction.atomic():
        LLMModel.objects.create(provider=provider, name="b", is_baseline=True)


def test_import_creates_only_missing_models(
    upstream: UpstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_TEST_IMPORT_KEY", "sk-test-import")
    upstream.reply("GET", "/v1/models", Reply.json(fixture("openai/models.json")))
    provider = Provider.objects.create(
        name="vllm",
        kind="openai_compatible",
        base_url=f"{upstream.url}/v1",
        locality="local",
        credential_env="ORCH_TEST_IMPORT_KEY",
    )
    LLMModel.objects.create(provider=provider, name="gpt-4o-mini", enabled=True)

    imported = provider_models_import(provider=provider)

    assert imported.created == ("gpt-4o", "text-embedding-3-small")
    assert imported.existing == ("gpt-4o-mini",)
    assert sorted(
        LLMModel.objects.filter(provider=provider).values_list(
            "name", "tier", "enabled", "input_price_per_mtok_usd"
        )
    ) == [
        ("gpt-4o", "small_local", False, None),
        ("gpt-4o-mini", "standard", True, None),
        ("text-embedding-3-small", "small_local", False, None),
    ]
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-test-import"
