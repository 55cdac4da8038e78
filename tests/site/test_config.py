from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator_site import config

ROOT = Path(__file__).resolve().parents[2]


def test_without_database_url_a_sqlite_file_under_var(tmp_path: Path) -> None:
    database = config.database_config({}, tmp_path)

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "orchestrator.sqlite3")


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout_whichever_way_it_is_named(
    tmp_path: Path,
) -> None:
    default = config.database_config({}, tmp_path)
    named = config.database_config({"DATABASE_URL": f"sqlite:///{tmp_path}/other.db"}, tmp_path)

    for database in (default, named):
        assert database["OPTIONS"] == {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        }
    assert named["NAME"] == f"{tmp_path}/other.db"


def test_postgres_url_gets_a_connection_pool(tmp_path: Path) -> None:
    database = config.database_config(
        {"DATABASE_URL": "postgres://app:pw@db.internal:6432/orch", "DATABASE_POOL_MAX": "7"},
        tmp_path,
    )

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["PORT"], database["NAME"]) == ("db.internal", 6432, "orch")
    assert (database["USER"], database["PASSWORD"]) == ("app", "pw")
    assert database["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 7, "timeout": 2.0}
    assert database["OPTIONS"]["prepare_threshold"] == 5
    assert database["CONN_MAX_AGE"] == 0


def test_every_wait_on_postgres_is_bounded(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgres://app@db/orch",
        "DATABASE_POOL_TIMEOUT_S": "1.5",
        "DATABASE_CONNECT_TIMEOUT_S": "3",
        "DATABASE_STATEMENT_TIMEOUT_MS": "4000",
    }

    options = config.database_config(env, tmp_path)["OPTIONS"]

    assert options["pool"]["timeout"] == 1.5
    assert options["connect_timeout"] == 3
    assert options["options"] == "-c statement_timeout=4000"
    defaults = config.database_config({"DATABASE_URL": "postgres://app@db/orch"}, tmp_path)
    assert defaults["OPTIONS"]["connect_timeout"] == 2
    assert defaults["OPTIONS"]["options"] == "-c statement_timeout=30000"


def test_prepared_statements_can_be_switched_off_for_a_pooler(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgres://app@db/orch", "DATABASE_PREPARED_STATEMENTS": "off"}

    assert config.database_config(env, tmp_path)["OPTIONS"]["prepare_threshold"] is None


def test_malformed_database_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="DATABASE_URL"):
        config.database_config({"DATABASE_URL": "nosuchdb://x"}, tmp_path)


def test_without_redis_everything_stays_in_process() -> None:
    env: dict[str, str] = {}

    assert config.cache_config(env)["default"]["BACKEND"].endswith("LocMemCache")
    assert (
        config.channel_layers(env)["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    )
    celery = config.celery_config(env)
    assert celery["CELERY_TASK_ALWAYS_EAGER"] is True
    assert celery["CELERY_BROKER_URL"] == "memory://"


def test_with_redis_cache_channels_and_broker_use_it() -> None:
    env = {"REDIS_URL": "redis://cache.internal:6379/2"}

    cache = config.cache_config(env)["default"]
    assert cache["BACKEND"] == "core.redis.SharedPoolRedisCache"
    assert cache["LOCATION"] == "redis://cache.internal:6379/2"
    layer = config.channel_layers(env)["default"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert layer["CONFIG"]["hosts"] == [
        {
            "address": "redis://cache.internal:6379/2",
            "socket_timeout": 30,
            "socket_connect_timeout": 1.0,
        }
    ]
    assert cache["OPTIONS"] == {"socket_connect_timeout": 1.0, "socket_timeout": 2.0}
    celery = config.celery_config(env)
    assert celery["CELERY_BROKER_URL"] == "redis://cache.internal:6379/2"
    assert celery["CELERY_TASK_ALWAYS_EAGER"] is False


def test_redis_url_with_wrong_scheme_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="REDIS_URL"):
        config.cache_config({"REDIS_URL": "http://cache:6379"})


def test_secret_key_generated_once_and_kept(tmp_path: Path) -> None:
    first = config.secret_key({}, tmp_path, production=False)
    second = config.secret_key({}, tmp_path, production=False)

    assert first == second
    assert len(first) >= 50
    assert (tmp_path / "secret_key").read_text() == first
    assert config.secret_key({"SECRET_KEY": "given"}, tmp_path, production=True) == "given"


def test_production_refuses_a_missing_secret_key(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="SECRET_KEY must be set"):
        config.secret_key({}, tmp_path, production=True)


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("yes", True), ("off", False), ("0", False)]
)
def test_booleans(raw: str, expected: bool) -> None:
    assert config.env_bool({"DEBUG": raw}, "DEBUG", not expected) is expected


def test_unrecognised_boolean_names_the_variable() -> None:
    with pytest.raises(config.ConfigError, match="DEBUG"):
        config.env_bool({"DEBUG": "maybe"}, "DEBUG", False)


def _settings_in_subprocess(
    env: dict[str, str], expression: str
) -> subprocess.CompletedProcess[str]:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps({expression}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "orchestrator_site.settings",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_module_in_production_mode(tmp_path: Path) -> None:
    result = _settings_in_subprocess(
        {
            "ORCHESTRATOR_ENV": "production",
            "SECRET_KEY": "k" * 60,
            "ALLOWED_HOSTS": "orch.example.com, api.example.com",
            "CSRF_TRUSTED_ORIGINS": "https://orch.example.com",
            "ORCHESTRATOR_VAR_DIR": str(tmp_path),
        },
        "[s.DEBUG, s.ALLOWED_HOSTS, s.CSRF_TRUSTED_ORIGINS, s.SESSION_COOKIE_SECURE,"
        " s.DATABASES['default']['ENGINE']]",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        '[false, ["orch.example.com", "api.example.com"], ["https://orch.example.com"], true,'
        ' "django.db.backends.sqlite3"]'
    )


def test_settings_module_refuses_production_without_secret_key(tmp_path: Path) -> None:
    result = _settings_in_subprocess(
        {"ORCHESTRATOR_ENV": "production", "ORCHESTRATOR_VAR_DIR": str(tmp_path)}, "1"
    )

    assert result.returncode != 0
    assert "SECRET_KEY must be set when ORCHESTRATOR_ENV=production" in result.stderr
    assert not (tmp_path / "secret_key").exists()
