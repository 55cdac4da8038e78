"""Test settings: the real settings, on Postgres and Redis, with a fast password hasher."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/orchestrator")
# A Redis database of the suite's own (a server run by `make run` or compose uses 0), and a key
# prefix of its own for the cache, the request journal and the channel layer: the suite deletes
# only keys under TEST_KEY_PREFIX, so a test run beside a running server, or another test run
# on the same database, leaves their keys alone. Set in the environment so that the processes
# the tests start (live servers, workers) inherit them.
TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
TEST_KEY_PREFIX = "orch-test"


def worker_redis_url(url: str, worker: str) -> str:
    """The Redis database of one pytest-xdist worker (`gw0`, `gw1`, ...): the run's database
    number minus the worker's index (15, 14, ... from the default), so parallel workers never
    share a cache, a journal, a broker queue or a channel layer."""
    index = int(worker.removeprefix("gw"))
    base, _, number = url.rpartition("/")
    if not number.isdigit() or int(number) < index:
        raise RuntimeError(f"REDIS_URL {url!r} has no database number for xdist worker {worker}")
    return f"{base}/{int(number) - index}"


# Under pytest-xdist, each worker (and every process it starts, which inherits its environment
# and must not shift the number again) gets a Redis database of its own.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER and os.environ.get("ORCHESTRATOR_TEST_REDIS_WORKER") != _WORKER:
    os.environ["REDIS_URL"] = worker_redis_url(os.environ.get("REDIS_URL", TEST_REDIS_URL), _WORKER)
    os.environ["ORCHESTRATOR_TEST_REDIS_WORKER"] = _WORKER
os.environ.setdefault("REDIS_URL", TEST_REDIS_URL)
os.environ.setdefault("CACHE_KEY_PREFIX", TEST_KEY_PREFIX)
os.environ.setdefault("CHANNELS_PREFIX", TEST_KEY_PREFIX)

from orchestrator_site.settings import *  # noqa: E402, F403
from orchestrator_site.settings import DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise RuntimeError(
        "The test suite runs on Postgres only; DATABASE_URL points elsewhere: "
        f"{DATABASES['default']['ENGINE']}"
    )

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# How long a process trusts its last read of the shared routing configuration's version
# (routing/config/cache.py; 1 s deployed): a test that edits the registry waits this out
# (tests/routing/gateway_support.settle_config) before its live server routes to the new rows.
ORCHESTRATOR_SHARED_TTL_S = 0.1
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_STORE_EAGER_RESULT = True
# The service endpoints' scrape token, known to the tests and to the live server alike.
ORCHESTRATOR_METRICS_TOKEN = "metrics-token-for-tests"
