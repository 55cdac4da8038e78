"""Test settings: the real settings, on Postgres and Redis, with a fast password hasher."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/orchestrator")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")

from orchestrator_site.settings import *  # noqa: F403
from orchestrator_site.settings import DATABASES

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise RuntimeError(
        "The test suite runs on Postgres only; DATABASE_URL points elsewhere: "
        f"{DATABASES['default']['ENGINE']}"
    )

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_STORE_EAGER_RESULT = True
# The service endpoints' scrape token, known to the tests and to the live server alike.
ORCHESTRATOR_METRICS_TOKEN = "metrics-token-for-tests"
