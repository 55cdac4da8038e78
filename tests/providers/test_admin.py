from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from providers.models import LLMModel, Provider
from providers.selectors import provider_endpoint
from providers.services import provider_credential_set
from tests.providers.test_health import OLLAMA_TAGS
from tests.providers.upstream_server import Reply, UpstreamServer, fixture

STORED_SECRET = "sk-test-stored-7c1e9a3b5d2f4e6a8b0c1d2e3f4a5b6c-wxyz"
ENV_SECRET = "sk-test-environ-2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e1b-wxyz"
KEY_VAR = "ORCH_TEST_ADMIN_KEY"
PASSWORD = "a-long-admin-password-42"

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client: Client) -> Client:
    """A superuser logged in through the admin's own login form."""
    get_user_model().objects.create_superuser("root", "", PASSWORD)
    response = client.post(
        reverse("admin:login"),
        {"username": "root", "password": PASSWORD, "next": reverse("admin:index")},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
    return client


@pytest.fixture
def credentials_key(settings) -> str:
    key = Fernet.generate_key().decode()
    settings.CREDENTIALS_KEY = key
    return key


@pytest.fixture
def env_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_VAR, ENV_SECRET)
    return ENV_SECRET


def provider_form_data(provider: Provider, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": provider.name,
        "kind": provider.kind,
        "base_url": provider.base_url,
        "locality": provider.locality,
        "credential_env": provider.credential_env,
        "connect_timeout_s": provider.connect_timeout_s,
        "read_timeout_s": provider.read_timeout_s,
        "credential_secret": "",
        "models-TOTAL_FORMS": "0",
        "models-INITIAL_FORMS": "0",
        "models-MIN_NUM_FORMS": "0",
        "models-MAX_NUM_FORMS": "1000",
    }
    if provider.enabled:
        data["enabled"] = "on"
    if provider.follows_credential_env:
        data["follows_credential_env"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value is not False}


def model_form_data(model: LLMModel, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "provider": model.provider_id,
        "name": model.name,
        "display_name": model.display_name,
        "tier": model.tier,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "input_price_per_mtok_usd": model.input_price_per_mtok_usd or "",
        "output_price_per_mtok_usd": model.output_price_per_mtok_usd or "",
        "cached_input_price_per_mtok_usd": model.cached_input_price_per_mtok_usd or "",
        "task_strengths": json.dumps(model.task_strengths),
        "enabled": "on",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not False}


def messages_of(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in response.context["messages"]]


def change_url(provider: Provider) -> str:
    return reverse("admin:providers_provider_change", args=[provider.pk])


def test_credentials_are_never_rendered_in_admin_pages(
    admin: Client, credentials_key: str, env_secret: str
) -> None:
    stored = Provider.objects.create(
        name="stored", kind="openai", base_url="https://a.example/v1", locality="cloud"
    )
    provider_credential_set(provider=stored, secret=STORED_SECRET)
    stored.refresh_from_db()
    from_env = Provider.objects.create(
        name="from-env", kind="anthropic", base_url="https://b.example", locality="cloud"
    )
    provider_credential_set(provider=from_env, env_var=KEY_VAR)
    LLMModel.objects.create(provider=stored, name="gpt-4o")

    pages = {
        url: admin.get(url)
        for url in (
            reverse("admin:providers_provider_changelist"),
            change_url(stored),
            change_url(from_env),
            reverse("admin:providers_provider_add"),
            reverse("admin:providers_llmmodel_changelist"),
            reverse("providers:models"),
        )
    }

    for url, response in pages.items():
        html = response.content.decode()
        assert response.status_code == 200, url
        for secret in (STORED_SECRET, ENV_SECRET, stored.credential_encrypted):
            assert secret not in html, url
    changelist = pages[reverse("admin:providers_provider_changelist")].content.decode()
    assert "set (stored encrypted)" in changelist
    assert f"set (environment variable {KEY_VAR})" in changelist
    stored_form = pages[change_url(stored)].content.decode()
    assert 'type="password"' in stored_form
    assert 'name="credential_secret"' in stored_form


def test_a_key_entered_in_the_form_is_stored_encrypted_and_not_shown_back(
    admin: Client, credentials_key: str
) -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="https://a.example/v1", locality="cloud"
    )

    response = admin.post(
        change_url(provider),
        provider_form_data(provider, credential_secret=STORED_SECRET, _continue="1"),
        follow=True,
    )

    provider.refresh_from_db()
    assert response.status_code == 200
    assert provider_endpoint(provider).api_key == STORED_SECRET
    assert STORED_SECRET not in provider.credential_encrypted
    html = response.content.decode()
    assert STORED_SECRET not in html
    assert provider.credential_encrypted not in html
    assert "set (stored encrypted)" in html


def test_naming_a_variable_replaces_a_stored_key(admin: Client, credentials_key: str) -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="https://a.example/v1", locality="cloud"
    )
    provider_credential_set(provider=provider, secret=STORED_SECRET)
    provider.refresh_from_db()

    admin.post(change_url(provider), provider_form_data(provider, credential_env=KEY_VAR))

    provider.refresh_from_db()
    assert (provider.credential_env, provider.credential_encrypted) == (KEY_VAR, "")


def test_the_stored_key_can_be_removed(admin: Client, credentials_key: str) -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="https://a.example/v1", locality="cloud"
    )
    provider_credential_set(provider=provider, secret=STORED_SECRET)
    provider.refresh_from_db()

    response = admin.post(change_url(provider), provider_form_data(provider, credential_clear="on"))

    assert response.status_code == 302
    provider.refresh_from_db()
    assert (provider.credential_env, provider.credential_encrypted) == ("", "")
    assert provider.credential_state == "not set"


def test_a_rejected_form_does_not_render_the_key_back(admin: Client, credentials_key: str) -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="https://a.example/v1", locality="cloud"
    )

    response = admin.post(
        change_url(provider),
        provider_form_data(provider, base_url="not a url", credential_secret=STORED_SECRET),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["base_url"] == ["Enter a valid URL."]
    assert STORED_SECRET not in response.content.decode()
    provider.refresh_from_db()
    assert provider.credential_encrypted == ""


def test_storing_a_key_without_credentials_key_shows_a_clear_error(admin: Client, settings) -> None:
    settings.CREDENTIALS_KEY = ""
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="https://a.example/v1", locality="cloud"
    )

    response = admin.post(
        change_url(provider), provider_form_data(provider, credential_secret=STORED_SECRET)
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["credential_secret"]
    assert errors[0].startswith(
        "CREDENTIALS_KEY is not set, so API keys cannot be stored encrypted."
    )
    assert STORED_SECRET not in response.content.decode()
    provider.refresh_from_db()
    assert provider.credential_encrypted == ""


def test_a_key_pasted_as_variable_name_is_refused_and_not_shown_back(admin: Client) -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="https://a.example/v1", locality="cloud"
    )

    response = admin.post(
        change_url(provider), provider_form_data(provider, credential_env=ENV_SECRET)
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["credential_env"] == [
        "Letters, digits and underscores only, not starting with a digit. If this is the key "
        "itself, put it in the API key field instead."
    ]
    assert ENV_SECRET not in response.content.decode()
    provider.refresh_from_db()
    assert provider.credential_env == ""


def run_action(admin: Client, action: str, *providers: Provider) -> Any:
    return admin.post(
        reverse("admin:providers_provider_changelist"),
        {"action": action, "_selected_action": [p.pk for p in providers]},
        follow=True,
    )


def test_test_connection_reports_healthy_and_down_providers(
    admin: Client, upstream: UpstreamServer, env_secret: str
) -> None:
    upstream.reply("GET", "/v1/models", Reply.json(fixture("openai/models.json")))
    upstream.reply("GET", "/api/tags", Reply.json({"error": "model store unavailable"}, status=503))
    cloud = Provider.objects.create(
        name="cloud",
        kind="openai",
        base_url=f"{upstream.url}/v1",
        locality="cloud",
        credential_env=KEY_VAR,
    )
    ollama = Provider.objects.create(
        name="ollama", kind="ollama", base_url=upstream.url, locality="local"
    )

    response = run_action(admin, "test_connection", cloud, ollama)

    assert response.status_code == 200
    (healthy_level, healthy), (down_level, down) = messages_of(response)
    assert healthy_level == "success"
    assert re.fullmatch(r"cloud: healthy, 3 models listed in \d+ ms\.", healthy)
    assert (down_level, down) == ("error", "ollama: down: model store unavailable")
    assert dict(Provider.objects.values_list("name", "health_status")) == {
        "cloud": "healthy",
        "ollama": "down",
    }
    html = response.content.decode()
    assert "model store unavailable" in html
    assert ENV_SECRET not in html


def test_test_connection_never_shows_an_echoed_key(
    admin: Client, upstream: UpstreamServer, env_secret: str
) -> None:
    echoed = {"error": {"message": f"Incorrect API key provided: {ENV_SECRET}.", "code": "x"}}
    upstream.reply("GET", "/v1/models", Reply.json(echoed, status=401))
    cloud = Provider.objects.create(
        name="cloud",
        kind="openai",
        base_url=f"{upstream.url}/v1",
        locality="cloud",
        credential_env=KEY_VAR,
    )

    response = run_action(admin, "test_connection", cloud)

    assert messages_of(response) == [
        ("error", "cloud: down: Incorrect API key provided: [redacted].")
    ]
    assert ENV_SECRET not in response.content.decode()
    changelist = admin.get(reverse("admin:providers_provider_changelist")).content.decode()
    assert ENV_SECRET not in changelist


def test_import_models_creates_missing_openai_models_unpriced_and_disabled(
    admin: Client, upstream: UpstreamServer, env_secret: str
) -> None:
    upstream.reply("GET", "/v1/models", Reply.json(fixture("openai/models.json")))
    cloud = Provider.objects.create(
        name="cloud",
        kind="openai",
        base_url=f"{upstream.url}/v1",
        locality="cloud",
        credential_env=KEY_VAR,
    )
    LLMModel.objects.create(
        provider=cloud,
        name="gpt-4o",
        input_price_per_mtok_usd=Decimal("2.50"),
        output_price_per_mtok_usd=Decimal("10.00"),
    )

    response = run_action(admin, "import_models", cloud)

    assert messages_of(response) == [
        (
            "success",
            "cloud: 2 models imported (gpt-4o-mini, text-embedding-3-small); 1 already "
            "present. Set their prices and enable them.",
        )
    ]
    rows = {
        m.name: (
            m.input_price_per_mtok_usd,
            m.output_price_per_mtok_usd,
            m.cached_input_price_per_mtok_usd,
            m.enabled,
            m.tier,
        )
        for m in LLMModel.objects.filter(provider=cloud)
    }
    assert rows == {
        "gpt-4o": (Decimal("2.50"), Decimal("10.00"), None, True, "standard"),
        "gpt-4o-mini": (None, None, None, False, "standard"),
        "text-embedding-3-small": (None, None, None, False, "standard"),
    }

    again = run_action(admin, "import_models", cloud)

    assert messages_of(again) == [
        (
            "success",
            "cloud: 0 models imported (none); 3 already present. Set their prices and enable them.",
        )
    ]
    assert LLMModel.objects.filter(provider=cloud).count() == 3


def test_import_models_reads_ollama_tags(admin: Client, upstream: UpstreamServer) -> None:
    upstream.reply("GET", "/api/tags", Reply.json(OLLAMA_TAGS))
    ollama = Provider.objects.create(
        name="ollama", kind="ollama", base_url=upstream.url, locality="local"
    )

    run_action(admin, "import_models", ollama)

    assert list(LLMModel.objects.values_list("name", "tier", "enabled")) == [
        ("gemma3:latest", "small_local", False)
    ]
    changelist = admin.get(reverse("admin:providers_llmmodel_changelist")).content.decode()
    assert "Input price (USD / 1M tokens)" in changelist
    assert changelist.count(">unknown<") == 3


def test_import_failure_is_reported_without_the_key(
    admin: Client, upstream: UpstreamServer, env_secret: str
) -> None:
    echoed = {"error": {"message": f"Incorrect API key provided: {ENV_SECRET}.", "code": "x"}}
    upstream.reply("GET", "/v1/models", Reply.json(echoed, status=401))
    cloud = Provider.objects.create(
        name="cloud",
        kind="openai",
        base_url=f"{upstream.url}/v1",
        locality="cloud",
        credential_env=KEY_VAR,
    )

    response = run_action(admin, "import_models", cloud)

    assert messages_of(response) == [
        ("error", "cloud: import failed: Incorrect API key provided: [redacted].")
    ]
    assert LLMModel.objects.count() == 0


def test_a_second_baseline_model_is_refused_with_a_clear_error(admin: Client) -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="https://a.example/v1", locality="cloud"
    )
    LLMModel.objects.create(provider=provider, name="gpt-4o", is_baseline=True)
    other = LLMModel.objects.create(provider=provider, name="gpt-4o-mini")

    response = admin.post(
        reverse("admin:providers_llmmodel_change", args=[other.pk]),
        model_form_data(other, is_baseline="on"),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "Only one model can be the baseline."
    ]
    assert list(LLMModel.objects.filter(is_baseline=True).values_list("name", flat=True)) == [
        "gpt-4o"
    ]


def test_two_baselines_in_one_inline_submission_are_refused(admin: Client) -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="https://a.example/v1", locality="cloud"
    )
    data = provider_form_data(provider, **{"models-TOTAL_FORMS": "2"})
    for index, name in enumerate(("premium-a", "premium-b")):
        data |= {
            f"models-{index}-name": name,
            f"models-{index}-display_name": "",
            f"models-{index}-tier": "premium",
            f"models-{index}-context_window": "8192",
            f"models-{index}-max_output_tokens": "4096",
            f"models-{index}-enabled": "on",
            f"models-{index}-is_baseline": "on",
        }

    response = admin.post(change_url(provider), data)

    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert formset.non_form_errors() == ["Only one model can be the baseline."]
    assert "Only one model can be the baseline." in response.content.decode()
    assert LLMModel.objects.count() == 0


def test_changelist_search_and_filters(admin: Client) -> None:
    Provider.objects.create(
        name="ollama-box", kind="ollama", base_url="http://10.0.0.5:11434", locality="local"
    )
    Provider.objects.create(
        name="cloud",
        kind="openai",
        base_url="https://a.example/v1",
        locality="cloud",
        health_status="down",
    )
    url = reverse("admin:providers_provider_changelist")

    def listed(**params: str) -> list[str]:
        response = admin.get(url, params)
        return [p.name for p in response.context["cl"].result_list]

    assert listed(q="10.0.0.5") == ["ollama-box"]
    assert listed(kind__exact="openai") == ["cloud"]
    assert listed(locality__exact="local") == ["ollama-box"]
    assert listed(health_status__exact="down") == ["cloud"]
    assert listed() == ["cloud", "ollama-box"]


def test_turning_a_provider_off_by_hand_stops_it_following_its_key(
    admin: Client, env_secret: str
) -> None:
    provider = Provider.objects.create(
        name="openai",
        kind="openai",
        base_url="https://api.openai.com/v1",
        locality="cloud",
        credential_env=KEY_VAR,
        follows_credential_env=True,
    )

    admin.post(change_url(provider), provider_form_data(provider, enabled=False))

    provider.refresh_from_db()
    assert (provider.enabled, provider.follows_credential_env) == (False, False)


def test_editing_another_field_keeps_a_provider_following_its_key(admin: Client) -> None:
    provider = Provider.objects.create(
        name="openai",
        kind="openai",
        base_url="https://api.openai.com/v1",
        locality="cloud",
        credential_env=KEY_VAR,
        follows_credential_env=True,
        enabled=False,
    )

    admin.post(change_url(provider), provider_form_data(provider, read_timeout_s="30"))

    provider.refresh_from_db()
    assert (provider.enabled, provider.follows_credential_env, provider.read_timeout_s) == (
        False,
        True,
        30.0,
    )


def test_the_provider_pages_say_which_variable_enables_a_provider(
    admin: Client, env_secret: str
) -> None:
    Provider.objects.create(
        name="openai",
        kind="openai",
        base_url="https://api.openai.com/v1",
        locality="cloud",
        credential_env=KEY_VAR,
        follows_credential_env=True,
    )
    Provider.objects.create(
        name="gemini",
        kind="gemini",
        base_url="https://generativelanguage.googleapis.com",
        locality="cloud",
        credential_env="ORCH_TEST_UNSET_KEY",
        follows_credential_env=True,
        enabled=False,
    )

    changelist = admin.get(reverse("admin:providers_provider_changelist")).content.decode()
    models_page = admin.get(reverse("providers:models")).content.decode()

    for html in (changelist, models_page):
        assert f"set (environment variable {KEY_VAR})" in html
        assert "not set (environment variable ORCH_TEST_UNSET_KEY)" in html
        assert ENV_SECRET not in html
    assert (
        f"enabled on every start when <code>{KEY_VAR}</code> is set, disabled when it is not"
        in models_page
    )
