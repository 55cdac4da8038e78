from __future__ import annotations

import logging

import pytest
from django.conf import settings as django_settings

from orchestrator_site.celery import app
from orchestrator_site.logging import JsonFormatter
from providers.local_model import free_port
from providers.models import Provider
from providers.services import provider_health_check
from providers.tasks import provider_health_probe, provider_health_probe_all
from tests.providers.upstream_server import Reply, UpstreamServer, fixture

SECRET = "sk-test-0a1b2c3d4e5f60718293a4b5c6d7e8f9-wxyz"
KEY_VAR = "ORCH_TEST_HEALTH_KEY"

# Ollama's documented GET /api/tags answer (docs.ollama.com/api/tags, "List models" example).
OLLAMA_TAGS = {
    "models": [
        {
            "name": "gemma3:latest",
            "model": "gemma3:latest",
            "modified_at": "2025-10-03T23:34:03.409490317-07:00",
            "size": 3338801804,
            "digest": "a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a",
            "details": {
                "format": "gguf",
                "family": "gemma",
                "families": ["gemma"],
                "parameter_size": "4.3B",
                "quantization_level": "Q4_K_M",
            },
        }
    ]
}


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_VAR, SECRET)
    return SECRET


def openai_provider(upstream: UpstreamServer, name: str = "cloud-a", **fields) -> Provider:
    defaults = {
        "kind": "openai",
        "base_url": f"{upstream.url}/v1",
        "locality": "cloud",
        "credential_env": KEY_VAR,
    }
    return Provider.objects.create(name=name, **(defaults | fields))


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


@pytest.mark.django_db
def test_healthy_provider_records_status_latency_and_no_error(
    upstream: UpstreamServer, api_key: str
) -> None:
    upstream.reply("GET", "/v1/models", Reply.json(fixture("openai/models.json")))
    provider = openai_provider(upstream)

    check = provider_health_check(provider=provider)

    assert (check.status, check.error, check.model_count) == ("healthy", "", 3)
    assert check.latency_ms is not None and 0 <= check.latency_ms < 5000
    stored = Provider.objects.get(pk=provider.pk)
    assert stored.health_status == Provider.Health.HEALTHY
    assert stored.health_latency_ms == check.latency_ms
    assert stored.health_error == ""
    assert stored.health_checked_at == check.checked_at
    assert [(r.method, r.path) for r in upstream.requests] == [("GET", "/v1/models")]
    assert upstream.requests[0].headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.django_db
def test_server_error_marks_the_provider_down_with_the_upstream_message(
    upstream: UpstreamServer, api_key: str
) -> None:
    upstream.reply("GET", "/v1/models", Reply.json(fixture("openai/error_500.json"), status=500))
    provider = openai_provider(upstream)

    check = provider_health_check(provider=provider)

    stored = Provider.objects.get(pk=provider.pk)
    assert stored.health_status == Provider.Health.DOWN
    assert stored.health_error == check.error
    assert check.error == "The server had an error while processing your request. Sorry about that!"
    assert stored.health_latency_ms is not None


@pytest.mark.django_db
def test_unreachable_provider_is_down_with_a_connection_error(api_key: str) -> None:
    provider = Provider.objects.create(
        name="gone",
        kind="ollama",
        base_url=f"http://127.0.0.1:{free_port()}",
        locality="local",
    )

    check = provider_health_check(provider=provider)

    provider.refresh_from_db()
    assert provider.health_status == Provider.Health.DOWN
    assert provider.health_error.startswith("cannot connect to upstream")
    assert check.model_count == 0


@pytest.mark.django_db
def test_an_echoed_key_never_reaches_the_stored_error_or_the_logs(
    upstream: UpstreamServer, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echoed = {
        "error": {
            "message": f"Incorrect API key provided: {SECRET}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    upstream.reply("GET", "/v1/models", Reply.json(echoed, status=401))
    provider = openai_provider(upstream)

    check = provider_health_check(provider=provider)

    provider.refresh_from_db()
    assert provider.health_status == Provider.Health.DOWN
    assert provider.health_error == (
        "Incorrect API key provided: [redacted]. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    assert check.error == provider.health_error
    lines = log_text(caplog)
    assert '"health_status": "down"' in lines
    assert SECRET not in lines


@pytest.mark.django_db
def test_missing_key_is_down_without_calling_the_provider(
    upstream: UpstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_VAR, raising=False)
    provider = openai_provider(upstream)

    check = provider_health_check(provider=provider)

    assert check.status == "down"
    assert check.latency_ms is None
    assert check.error == f"provider cloud-a: environment variable {KEY_VAR} is not set"
    assert upstream.requests == []


@pytest.mark.django_db
def test_ollama_probe_lists_tags(upstream: UpstreamServer) -> None:
    upstream.reply("GET", "/api/tags", Reply.json(OLLAMA_TAGS))
    provider = Provider.objects.create(
        name="ollama", kind="ollama", base_url=upstream.url, locality="local"
    )

    check = provider_health_check(provider=provider)

    assert (check.status, check.model_count) == ("healthy", 1)
    assert "authorization" not in upstream.requests[0].headers


@pytest.mark.django_db
def test_beat_task_probes_each_enabled_provider_and_skips_disabled_ones(
    upstream: UpstreamServer, api_key: str
) -> None:
    upstream.reply("GET", "/v1/models", Reply.json(fixture("openai/models.json")))
    upstream.reply("GET", "/api/tags", Reply.json({"error": "boom"}, status=500))
    healthy = openai_provider(upstream, "cloud-a")
    down = Provider.objects.create(
        name="ollama", kind="ollama", base_url=upstream.url, locality="local"
    )
    disabled = openai_provider(upstream, "cloud-off", enabled=False)

    probed = provider_health_probe_all.delay().get(timeout=30)

    assert probed == [healthy.pk, down.pk]
    statuses = dict(Provider.objects.values_list("name", "health_status"))
    assert statuses == {"cloud-a": "healthy", "ollama": "down", "cloud-off": "unknown"}
    assert Provider.objects.get(pk=down.pk).health_error == "boom"
    assert provider_health_probe.delay(disabled.pk).get(timeout=5) == "skipped"
    assert provider_health_probe.delay(10**9).get(timeout=5) == "skipped"


@pytest.mark.django_db
def test_probing_again_only_replaces_the_latest_result(
    upstream: UpstreamServer, api_key: str
) -> None:
    upstream.reply(
        "GET",
        "/v1/models",
        Reply.json(fixture("openai/models.json")),
        Reply.json(fixture("openai/error_500.json"), status=500),
    )
    provider = openai_provider(upstream)

    first = provider_health_probe.delay(provider.pk).get(timeout=10)
    first_checked_at = Provider.objects.get(pk=provider.pk).health_checked_at
    second = provider_health_probe.delay(provider.pk).get(timeout=10)

    stored = Provider.objects.get(pk=provider.pk)
    assert (first, second) == ("healthy", "down")
    assert first_checked_at is not None and stored.health_checked_at is not None
    assert stored.health_checked_at > first_checked_at
    assert Provider.objects.count() == 1


def test_beat_schedules_the_health_probe() -> None:
    app.loader.import_default_modules()

    entry = django_settings.CELERY_BEAT_SCHEDULE["provider-health"]

    assert entry == {"task": "providers.tasks.provider_health_probe_all", "schedule": 60.0}
    assert entry["task"] in app.tasks
    assert app.tasks[entry["task"]].time_limit == 30
    assert app.tasks["providers.tasks.provider_health_probe"].time_limit == 60


async def test_calling_the_blocking_probe_from_a_running_loop_fails_loudly() -> None:
    provider = Provider(name="cloud", kind="openai", base_url="https://a.example/v1")

    with pytest.raises(RuntimeError, match="provider_health_check blocks; from async code"):
        provider_health_check(provider=provider)
