from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from orchestrator_site.logging import JsonFormatter
from providers.adapters.types import ProviderAuthFailed
from providers.credentials import CredentialUnavailable
from providers.models import Provider
from providers.selectors import provider_endpoint
from providers.services import CredentialInvalid, provider_credential_set

SECRET = "sk-test-f3b9c2a7d1e04c6b8a5f2e9d7c3b1a0e-wxyz"


@pytest.fixture
def credentials_key(settings) -> str:
    key = Fernet.generate_key().decode()
    settings.CREDENTIALS_KEY = key
    return key


@pytest.fixture
def provider(db) -> Provider:
    return Provider.objects.create(
        name="cloud-a", kind="openai", base_url="https://example.invalid/v1", locality="cloud"
    )


def json_log_text(caplog: pytest.LogCaptureFixture) -> str:
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


def test_secret_round_trips_through_fernet_and_is_not_stored_in_clear(
    provider: Provider, credentials_key: str
) -> None:
    provider_credential_set(provider=provider, secret=SECRET)

    provider.refresh_from_db()
    assert provider.credential_encrypted
    assert SECRET not in provider.credential_encrypted
    assert (
        Fernet(credentials_key).decrypt(provider.credential_encrypted.encode()).decode() == SECRET
    )
    assert provider.credential_env == ""
    assert provider_endpoint(provider).api_key == SECRET
    assert provider.credential_state == "set (stored encrypted)"


def test_storing_a_secret_without_credentials_key_fails_clearly(
    provider: Provider, settings
) -> None:
    settings.CREDENTIALS_KEY = ""

    with pytest.raises(ImproperlyConfigured) as raised:
        provider_credential_set(provider=provider, secret=SECRET)

    assert str(raised.value).startswith("CREDENTIALS_KEY is not set")
    assert SECRET not in str(raised.value)
    provider.refresh_from_db()
    assert provider.credential_encrypted == ""


def test_an_invalid_credentials_key_is_named_not_echoed(provider: Provider, settings) -> None:
    settings.CREDENTIALS_KEY = "not-a-fernet-key"

    with pytest.raises(ImproperlyConfigured) as raised:
        provider_credential_set(provider=provider, secret=SECRET)

    assert str(raised.value) == (
        "CREDENTIALS_KEY is not a valid Fernet key (32 url-safe base64-encoded bytes)."
    )


def test_a_changed_credentials_key_is_an_auth_failure_without_the_ciphertext(
    provider: Provider, credentials_key: str, settings
) -> None:
    provider_credential_set(provider=provider, secret=SECRET)
    provider.refresh_from_db()
    settings.CREDENTIALS_KEY = Fernet.generate_key().decode()

    with pytest.raises(CredentialUnavailable) as raised:
        provider_endpoint(provider)

    assert isinstance(raised.value, ProviderAuthFailed)
    assert raised.value.code == "AUTHENTICATION_FAILED"
    assert raised.value.message == (
        "provider cloud-a: the stored API key cannot be decrypted with the current "
        "CREDENTIALS_KEY (was the key changed?); store the key again"
    )
    assert provider.credential_encrypted not in raised.value.message


def test_an_encrypted_key_without_credentials_key_is_an_auth_failure(
    provider: Provider, credentials_key: str, settings
) -> None:
    provider_credential_set(provider=provider, secret=SECRET)
    settings.CREDENTIALS_KEY = ""

    with pytest.raises(CredentialUnavailable) as raised:
        provider_endpoint(provider)

    assert raised.value.message.startswith(
        "provider cloud-a: its API key is stored encrypted but CREDENTIALS_KEY is not set"
    )


def test_environment_variable_is_resolved_when_the_endpoint_is_built(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider_credential_set(provider=provider, env_var="ORCH_TEST_CLOUD_A_KEY")
    monkeypatch.setenv("ORCH_TEST_CLOUD_A_KEY", SECRET)

    endpoint = provider_endpoint(provider)

    assert endpoint.api_key == SECRET
    assert SECRET not in repr(endpoint)
    assert provider.credential_state == "set (environment variable ORCH_TEST_CLOUD_A_KEY)"


def test_an_unset_environment_variable_is_named_in_the_error(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCH_TEST_CLOUD_A_KEY", raising=False)
    provider_credential_set(provider=provider, env_var="ORCH_TEST_CLOUD_A_KEY")

    with pytest.raises(CredentialUnavailable) as raised:
        provider_endpoint(provider)

    assert raised.value.message == (
        "provider cloud-a: environment variable ORCH_TEST_CLOUD_A_KEY is not set"
    )
    assert provider.credential_state == "not set (environment variable ORCH_TEST_CLOUD_A_KEY)"


def test_a_provider_without_credential_sends_no_key(provider: Provider) -> None:
    assert provider_endpoint(provider).api_key is None
    assert provider.credential_state == "not set"


def test_one_credential_source_replaces_the_other(provider: Provider, credentials_key: str) -> None:
    provider_credential_set(provider=provider, secret=SECRET)
    provider_credential_set(provider=provider, env_var="ORCH_TEST_CLOUD_A_KEY")
    provider.refresh_from_db()
    assert (provider.credential_env, provider.credential_encrypted) == (
        "ORCH_TEST_CLOUD_A_KEY",
        "",
    )

    provider_credential_set(provider=provider)
    provider.refresh_from_db()
    assert (provider.credential_env, provider.credential_encrypted) == ("", "")


def test_both_sources_at_once_are_refused(provider: Provider, credentials_key: str) -> None:
    with pytest.raises(CredentialInvalid):
        provider_credential_set(provider=provider, env_var="ORCH_KEY", secret=SECRET)


def test_a_key_given_as_variable_name_is_refused_without_repeating_it(
    provider: Provider,
) -> None:
    with pytest.raises(CredentialInvalid) as raised:
        provider_credential_set(provider=provider, env_var=SECRET)

    assert SECRET not in str(raised.value)
    provider.refresh_from_db()
    assert provider.credential_env == ""


def test_storing_a_credential_logs_its_source_never_its_value(
    provider: Provider, credentials_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    provider_credential_set(provider=provider, secret=SECRET)

    lines = json_log_text(caplog)
    assert '"credential_source": "encrypted"' in lines
    assert SECRET not in lines
    provider.refresh_from_db()
    assert provider.credential_encrypted not in lines
