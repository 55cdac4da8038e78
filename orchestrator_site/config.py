"""Pure functions that turn environment variables into Django settings.

`settings.py` calls them with `os.environ`; tests call them with plain dicts, so every
combination of variables is checked without reloading Django.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dj_database_url

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}")


def env_list(environ: Mapping[str, str], name: str, default: list[str]) -> list[str]:
    raw = environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer; got {raw!r}") from exc


def env_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number; got {raw!r}") from exc


def is_production(environ: Mapping[str, str]) -> bool:
    mode = environ.get("ORCHESTRATOR_ENV", "development").strip().lower()
    if mode not in {"development", "production"}:
        raise ConfigError(f"ORCHESTRATOR_ENV must be 'development' or 'production'; got {mode!r}")
    return mode == "production"


# SQLite shared by the web process's threads (requests, background exports, the agents'
# sampler): in WAL mode readers never block the writer nor it them, so a long export read no
# longer holds writes off; a writer waits up to `timeout` seconds for another to finish instead
# of failing at once; and a transaction takes the write lock when it begins (IMMEDIATE), so one
# that reads before it writes cannot find the lock taken midway, where waiting cannot help.
# synchronous=NORMAL is the usual companion of WAL: safe from corruption, a power cut may take
# the last commits.
SQLITE_OPTIONS: Mapping[str, Any] = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
}


def database_config(environ: Mapping[str, str], var_dir: Path) -> dict[str, Any]:
    """`DATABASE_URL`, or a SQLite file under `var/` for the zero-setup default."""
    url = environ.get("DATABASE_URL", "").strip()
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(var_dir / "orchestrator.sqlite3"),
            "OPTIONS": dict(SQLITE_OPTIONS),
        }
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=0))
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL is not a database URL: {exc}") from exc
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {**SQLITE_OPTIONS, **config.get("OPTIONS", {})}
    if config["ENGINE"] == "django.db.backends.postgresql":
        # Pooled connections (psycopg_pool) instead of per-request connects; the pool and
        # persistent connections exclude each other, hence CONN_MAX_AGE 0 above.
        options = config.setdefault("OPTIONS", {})
        # Every wait on Postgres is bounded, so an outage is answered at once rather than
        # hung on (docs/guards.md): a request waits at most DATABASE_POOL_TIMEOUT_S for a
        # pooled connection, a connection attempt DATABASE_CONNECT_TIMEOUT_S, a statement
        # DATABASE_STATEMENT_TIMEOUT_MS (0: no limit).
        options["pool"] = {
            "min_size": 1,
            "max_size": env_int(environ, "DATABASE_POOL_MAX", 20),
            "timeout": env_float(environ, "DATABASE_POOL_TIMEOUT_S", 2.0),
        }
        options["connect_timeout"] = env_int(environ, "DATABASE_CONNECT_TIMEOUT_S", 2)
        statement_ms = env_int(environ, "DATABASE_STATEMENT_TIMEOUT_MS", 30_000)
        options["options"] = f"-c statement_timeout={statement_ms}"
        # A peer that vanishes without closing the connection (a host gone) is noticed
        # within about 10 s instead of the kernel's two hours.
        options.update(keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3)
        # The request path's few statements (core.db) run prepared; Django's
        # own queries bind client-side and are never prepared. Off for a pooler that cannot
        # keep prepared statements (PgBouncer before 1.21 in transaction mode).
        prepared = env_bool(environ, "DATABASE_PREPARED_STATEMENTS", True)
        options["prepare_threshold"] = 5 if prepared else None
    return config


def redis_url(environ: Mapping[str, str]) -> str | None:
    url = environ.get("REDIS_URL", "").strip()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://; got {url!r}")
    return url or None


def cache_config(environ: Mapping[str, str]) -> dict[str, Any]:
    url = redis_url(environ)
    if url is None:
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return {
        "default": {
            "BACKEND": "core.redis.SharedPoolRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": environ.get("CACHE_KEY_PREFIX", "orch"),
            # Bounded waits: a Redis that is down or stalled fails the call instead of
            # hanging the request (docs/guards.md says what each guard does then).
            "OPTIONS": redis_timeouts(environ),
        }
    }


def redis_timeouts(environ: Mapping[str, str]) -> dict[str, float]:
    """redis-py's connect and read timeouts for the cache, the guards and the journal."""
    return {
        "socket_connect_timeout": env_float(environ, "REDIS_CONNECT_TIMEOUT_S", 1.0),
        "socket_timeout": env_float(environ, "REDIS_SOCKET_TIMEOUT_S", 2.0),
    }


CHANNEL_LAYER_READ_TIMEOUT_S = 30


def channel_layers(environ: Mapping[str, str]) -> dict[str, Any]:
    url = redis_url(environ)
    if url is None:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py reads with a 5 s socket timeout by default, the same 5 s that
                # channels-redis blocks on BZPOPMIN: an idle socket's consumer then dies with
                # "Timeout reading". The read timeout must outlast the blocking pop.
                "hosts": [
                    {
                        "address": url,
                        "socket_timeout": CHANNEL_LAYER_READ_TIMEOUT_S,
                        "socket_connect_timeout": redis_timeouts(environ)["socket_connect_timeout"],
                    }
                ],
                "prefix": environ.get("CHANNELS_PREFIX", "orch"),
            },
        }
    }


def celery_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """With Redis, a real broker; without, tasks run eagerly in the calling process."""
    url = redis_url(environ)
    if url is None:
        return {
            "CELERY_BROKER_URL": "memory://",
            "CELERY_RESULT_BACKEND": "cache+memory://",
            "CELERY_TASK_ALWAYS_EAGER": True,
            "CELERY_TASK_EAGER_PROPAGATES": True,
        }
    return {
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": url,
        "CELERY_TASK_ALWAYS_EAGER": env_bool(environ, "CELERY_TASK_ALWAYS_EAGER", False),
        "CELERY_TASK_EAGER_PROPAGATES": True,
    }


def secret_key(environ: Mapping[str, str], var_dir: Path, production: bool) -> str:
    """`SECRET_KEY`, or one generated once and kept in `var/secret_key` for local runs."""
    key = environ.get("SECRET_KEY", "").strip()
    if key:
        return key
    if production:
        raise ConfigError("SECRET_KEY must be set when ORCHESTRATOR_ENV=production")
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    # Written whole under another name, then linked into place: of processes starting together
    # (a server's workers, parallel test workers) none reads a half-written key, and all keep
    # the first one written.
    fd, temp = tempfile.mkstemp(dir=var_dir, prefix=".secret_key-")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(key)
        os.chmod(temp, 0o600)
        try:
            os.link(temp, path)
        except FileExistsError:
            return path.read_text().strip()
    finally:
        os.unlink(temp)
    return key
