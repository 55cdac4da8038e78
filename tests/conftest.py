from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from providers.local_model import free_port
from tests.providers.conftest import (  # noqa: F401  (shared: upstreams and the local model)
    _close_http_client,
    local_model_url,
    upstream,
    upstream_server,
)

ROOT = Path(__file__).resolve().parent.parent
# The folder of the processes the suite starts (their ORCHESTRATOR_VAR_DIR) and of their logs;
# one per pytest-xdist worker, so parallel workers never share a file.
TEST_VAR_DIR = ROOT / "var" / "test" / os.environ.get("PYTEST_XDIST_WORKER", "")


def pytest_configure(config: pytest.Config) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    if engine != "django.db.backends.postgresql" or not settings.REDIS_URL:
        pytest.exit(
            "The test suite runs on Postgres and Redis only (DJANGO_SETTINGS_MODULE="
            f"{os.environ.get('DJANGO_SETTINGS_MODULE')}, engine {engine}, REDIS_URL "
            f"{settings.REDIS_URL!r}); use orchestrator_site.test_settings.",
            returncode=2,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`), the tests of the bundled local model all run on
    one worker: each worker that ran one would load the model into a llama.cpp server of its
    own, and their inference would compete for the same cores. So do the tests of the
    zero-setup site on SQLite, which migrate its template database once per worker. And the
    `long` tests are sent first, so that none of them starts last and ends the run alone."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "local_model_url" in fixtures:
            item.add_marker(pytest.mark.xdist_group("local_model"))
        elif "sqlite_template" in fixtures:
            item.add_marker(pytest.mark.xdist_group("sqlite_site"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("long") is None)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment a helper process needs to share the test database and Redis."""
    database = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="orchestrator_site.test_settings",
        DATABASE_URL=(
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
        ),
        REDIS_URL=settings.REDIS_URL or "",
        # The suite's key prefix (orchestrator_site/test_settings.py): what a helper process
        # writes to Redis is deleted by the suite's fixtures, and nothing else is.
        CACHE_KEY_PREFIX=settings.CACHES["default"].get("KEY_PREFIX", ""),
        CHANNELS_PREFIX=settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", ""),
        ORCHESTRATOR_VAR_DIR=str(TEST_VAR_DIR),
        SECRET_KEY=settings.SECRET_KEY,
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture(scope="session")
def live_server_url(django_db_setup: None, django_db_blocker: object) -> Iterator[str]:
    """The real ASGI application served by the web process (`orchestrator_site.serve`, as
    deployed) on a free port, on the test database.

    Tests that use it must be `django_db(transaction=True)` so their rows are visible to it.
    """
    port = free_port()
    # A file, not a pipe: nobody reads a pipe during the session, and once its buffer is full
    # the server's next log line blocks its event loop and every request after it hangs.
    TEST_VAR_DIR.mkdir(parents=True, exist_ok=True)
    log_file = open(TEST_VAR_DIR / "live-server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        # A stream still open at the end of the session (a page's live feed) is cut short
        # after 2 s rather than the deployed 10 s.
        [
            sys.executable,
            "-m",
            "orchestrator_site.serve",
            "--port",
            str(port),
            "--shutdown-timeout-s",
            "2",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log_file.close()


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup: None) -> Iterator[None]:
    """Pooled connections would keep the test database busy and block its teardown."""
    yield
    from django.db import connections

    for conn in connections.all():
        if hasattr(conn, "close_pool"):
            conn.close_pool()


def shared_cache_reset() -> None:
    """Breakers, rate limits, cached answers and config versions live in Redis; each test
    starts from an empty cache so no state leaks from one test into another. `cache.clear()`
    deletes only the keys under the suite's prefix (core.redis), never the rest
    of the Redis database."""
    from django.core.cache import cache

    from gateway.apikeys import apikeys_forget_local

    cache.clear()
    apikeys_forget_local()


@pytest.fixture(autouse=True)
def _fresh_shared_cache() -> None:
    shared_cache_reset()


@pytest.fixture(autouse=True)
def _live_server_writes_done(request: pytest.FixtureRequest) -> Iterator[None]:
    """The live server writes each request's log row after the answer has gone out. A test
    that ends right after reading an answer waits for those writes, so none lands in the next
    test's tables or races the database flush."""
    yield
    if "live_server_url" not in request.fixturenames:
        return
    import time

    from routing.pipeline.journal import journal_pending

    deadline = time.monotonic() + 30
    while journal_pending() and time.monotonic() < deadline:
        time.sleep(0.05)
