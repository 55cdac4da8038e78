"""The test suite keeps to its own Redis database and key prefix: its fixtures delete only keys
under that prefix, so a server, a worker or another test run sharing the Redis keeps its state."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from django.core.cache import cache

from orchestrator_site.test_settings import TEST_KEY_PREFIX, TEST_REDIS_URL
from tests.conftest import ROOT, shared_cache_reset, subprocess_env


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    assert settings.REDIS_URL
    with redis.Redis.from_url(settings.REDIS_URL) as connection:
        yield connection


def test_the_suite_reset_deletes_its_own_keys_and_nothing_else(client: redis.Redis) -> None:
    run = uuid.uuid4().hex
    # What a server sharing the database keeps there: its cache and journal (prefix `orch`), the
    # Celery broker's queue, its channel layer's groups; and a key of another install.
    outside = [
        f"orch:1:breaker:{run}",
        f"orch:journal:{run}",
        f"celery-{run}",
        f"orch:group:{run}",
        f"{TEST_KEY_PREFIX}-other:1:{run}",
        f"{TEST_KEY_PREFIX}{run}",
    ]
    for key in outside:
        client.set(key, "kept", ex=60)
    cache.set(f"mine-{run}", "gone", 60)
    journal_key = f"{TEST_KEY_PREFIX}:journal:{run}"
    client.set(journal_key, "gone", ex=60)

    shared_cache_reset()

    assert [client.get(key) for key in outside] == [b"kept"] * len(outside)
    assert cache.get(f"mine-{run}") is None
    assert client.exists(journal_key) == 0
    client.delete(*outside)


def test_the_suite_has_its_own_prefix_and_passes_it_to_the_processes_it_starts() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "from routing.pipeline import journal; "
        "print(settings.CACHES['default']['KEY_PREFIX'], "
        "settings.CHANNEL_LAYERS['default']['CONFIG']['prefix'], journal.INDEX_KEY)"
    )
    # A helper process of the suite with the deployed settings module still uses the prefix.
    env = subprocess_env(DJANGO_SETTINGS_MODULE="orchestrator_site.settings")
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()

    assert settings.CACHES["default"]["KEY_PREFIX"] == TEST_KEY_PREFIX == "orch-test"
    assert shown == ["orch-test", "orch-test", "orch-test:journal"]


def test_without_redis_url_the_suite_uses_its_own_redis_database() -> None:
    code = (
        "import orchestrator_site.test_settings as s; "
        "print(s.REDIS_URL, s.CACHES['default']['LOCATION'])"
    )
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"REDIS_URL", "CACHE_KEY_PREFIX", "CHANNELS_PREFIX"}
    }
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()

    assert TEST_REDIS_URL == "redis://127.0.0.1:6379/15"
    assert shown == [TEST_REDIS_URL, TEST_REDIS_URL]
