"""The local model's health is probed where the Models page asks for it (and by the web
process's loop), with a short timeout, cached on the provider: up, then down with the reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from providers.models import Provider
from providers.services import local_health_refresh
from tests.providers.upstream_server import Reply, UpstreamServer, fixture

pytestmark = pytest.mark.django_db


def _health_line(client: Client, name: str) -> str:
    page = client.get("/models/").content.decode()
    start = page.index(f'data-health="{name}"')
    return page[start : page.index("</p>", start)]


def test_models_page_shows_local_server_up_then_down_with_the_reason() -> None:
    client = Client()
    client.force_login(User.objects.create_user("ops"))
    with UpstreamServer() as llama_server:
        # llama.cpp's server (and llama-cpp-python's) lists its model at /v1/models.
        llama_server.reply("GET", "/v1/models", Reply.json(fixture("openai/models.json")))
        local = Provider.objects.create(
            name="llama",
            kind="openai_compatible",
            base_url=f"{llama_server.url}/v1",
            locality="local",
        )
        cloud = Provider.objects.create(
            name="cloud", kind="openai", base_url=f"{llama_server.url}/cloud/v1", locality="cloud"
        )

        up = _health_line(client, "llama")
        again = _health_line(client, "llama")

        # Probed once: the second page load reads the stored result.
        assert [(r.method, r.path) for r in llama_server.requests] == [("GET", "/v1/models")]
    assert '<span class="state state-up">up</span>' in up
    assert again == up
    # Cloud providers are left to the beat task.
    assert Provider.objects.get(pk=cloud.pk).health_status == Provider.Health.UNKNOWN

    # The server is gone; once the stored result is older than the cache age, the page probes.
    Provider.objects.filter(pk=local.pk).update(
        health_checked_at=timezone.now() - timedelta(seconds=31)
    )
    down = _health_line(client, "llama")

    stored = Provider.objects.get(pk=local.pk)
    assert stored.health_status == Provider.Health.DOWN
    assert stored.health_error != ""
    assert stored.health_error.startswith("cannot connect to upstream")
    assert '<span class="state state-down">down</span>' in down
    assert f'<span class="reason">{escape(stored.health_error)}</span>' in down


def test_refresh_probes_only_stale_local_providers_within_the_timeout() -> None:
    with UpstreamServer() as ollama:
        # Ollama lists its models at /api/tags; this one answers slower than the probe waits.
        ollama.reply("GET", "/api/tags", Reply.json({"models": []}, status=200).but(delay_s=3))
        slow = Provider.objects.create(
            name="ollama", kind="ollama", base_url=ollama.url, locality="local"
        )
        now = timezone.now()

        (check,) = local_health_refresh(now=now, timeout_s=0.5)
        fresh = local_health_refresh(now=now + timedelta(seconds=10), timeout_s=0.5)

    assert (check.provider_id, check.status) == (slow.pk, Provider.Health.DOWN)
    assert check.latency_ms is not None and check.latency_ms < 2000
    assert "timed out" in check.error.lower() or "timeout" in check.error.lower()
    assert fresh == []
