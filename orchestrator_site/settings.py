"""The one settings module; every variable is documented in docs/configuration.md."""

from __future__ import annotations

import os
from pathlib import Path

import plotly

from orchestrator_site import config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ORCHESTRATOR_VAR_DIR", BASE_DIR / "var"))
ENV = os.environ

PRODUCTION = config.is_production(ENV)
SECRET_KEY = config.secret_key(ENV, VAR_DIR, PRODUCTION)
DEBUG = config.env_bool(ENV, "DEBUG", not PRODUCTION)
ALLOWED_HOSTS = config.env_list(
    ENV, "ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = config.env_list(ENV, "CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    # Listed so /api/docs loads Swagger UI from ninja's own static files, not from a CDN.
    "ninja",
    "orchestrator_site",
    "providers",
    "analytics",
    "routing",
    "gateway",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "orchestrator_site.security.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "orchestrator_site.urls"
ASGI_APPLICATION = "orchestrator_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orchestrator_site.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {"default": config.database_config(ENV, VAR_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CACHES = config.cache_config(ENV)
CHANNEL_LAYERS = config.channel_layers(ENV)
REDIS_URL = config.redis_url(ENV)
# redis-py's connect and read timeouts for clients outside the cache (the request journal).
REDIS_TIMEOUTS = config.redis_timeouts(ENV)

_celery = config.celery_config(ENV)
CELERY_BROKER_URL = _celery["CELERY_BROKER_URL"]
CELERY_RESULT_BACKEND = _celery["CELERY_RESULT_BACKEND"]
CELERY_TASK_ALWAYS_EAGER = _celery["CELERY_TASK_ALWAYS_EAGER"]
CELERY_TASK_EAGER_PROPAGATES = _celery["CELERY_TASK_EAGER_PROPAGATES"]
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "orchestrator_site.tasks.worker_heartbeat", "schedule": 30.0},
    "provider-health": {"task": "providers.tasks.provider_health_probe_all", "schedule": 60.0},
    "analytics-rollup": {"task": "analytics.tasks.rollup_advance", "schedule": 900.0},
    "analytics-retention": {"task": "analytics.tasks.retention_apply", "schedule": 3600.0},
    "responses-expire": {"task": "analytics.tasks.responses_expire", "schedule": 3600.0},
}

# Analytics (docs/analytics.md): prompt/answer text kept only when on; raw rows older than the
# retention (days, 0 = forever) are deleted once rolled up; the latency target of the score.
ORCHESTRATOR_STORE_PAYLOADS = config.env_bool(ENV, "ORCHESTRATOR_STORE_PAYLOADS", False)
ORCHESTRATOR_RAW_RETENTION_DAYS = config.env_int(ENV, "ORCHESTRATOR_RAW_RETENTION_DAYS", 0)
# Stored /v1/responses answers (previous_response_id) are kept this many days (0 = forever).
ORCHESTRATOR_RESPONSES_RETENTION_DAYS = config.env_int(
    ENV, "ORCHESTRATOR_RESPONSES_RETENTION_DAYS", 30
)
ORCHESTRATOR_LATENCY_TARGET_MS = config.env_int(ENV, "ORCHESTRATOR_LATENCY_TARGET_MS", 2500)
ORCHESTRATOR_EXPORT_INLINE_MAX_ROWS = config.env_int(
    ENV, "ORCHESTRATOR_EXPORT_INLINE_MAX_ROWS", 200_000
)
ORCHESTRATOR_EXACT_PERCENTILES_MAX_ROWS = config.env_int(
    ENV, "ORCHESTRATOR_EXACT_PERCENTILES_MAX_ROWS", 200_000
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = ENV.get("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
# plotly.js ships inside the plotly package; it is served from there, never from a CDN.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/plotly", str(Path(plotly.__file__).parent / "package_data")),
]

# Request bodies beyond this are refused before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = config.env_int(ENV, "MAX_REQUEST_BYTES", 2 * 1024 * 1024)

# Websocket origins accepted besides ALLOWED_HOSTS (see orchestrator_site/asgi.py).
WEBSOCKET_ALLOWED_ORIGINS = config.env_list(ENV, "WEBSOCKET_ALLOWED_ORIGINS", [])

# Service endpoints (/metrics, /metrics/prometheus, /models, /models/<name>/status): open to
# anyone only when public; else a Bearer token (Prometheus) or a staff session (docs/api.md).
ORCHESTRATOR_METRICS_PUBLIC = config.env_bool(ENV, "ORCHESTRATOR_METRICS_PUBLIC", False)
ORCHESTRATOR_METRICS_TOKEN = ENV.get("ORCHESTRATOR_METRICS_TOKEN", "")

# Login throttling (site and admin): this many wrong passwords for one username from one
# address within the lockout locks that pair out for the lockout (docs/deployment.md).
ORCHESTRATOR_LOGIN_MAX_FAILURES = config.env_int(ENV, "ORCHESTRATOR_LOGIN_MAX_FAILURES", 5)
ORCHESTRATOR_LOGIN_LOCKOUT_S = config.env_int(ENV, "ORCHESTRATOR_LOGIN_LOCKOUT_S", 900)

# Encryption key for provider credentials stored in the database (Fernet, urlsafe base64).
CREDENTIALS_KEY = ENV.get("CREDENTIALS_KEY", "")

if PRODUCTION:
    SESSION_COOKIE_SECURE = config.env_bool(ENV, "SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOG_LEVEL = ENV.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "orchestrator_site.logging.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "uvicorn": {"level": "WARNING"},
    },
}

# Routing agents and decisions (docs/routing.md). Sampling runs in Celery beat when Redis is set,
# else in a background loop of the web process; "off" disables it.
ORCHESTRATOR_AGENT_SAMPLING = ENV.get("ORCHESTRATOR_AGENT_SAMPLING", "beat" if REDIS_URL else "web")
ORCHESTRATOR_AGENT_INTERVAL_S = config.env_int(ENV, "ORCHESTRATOR_AGENT_INTERVAL_S", 15)
ORCHESTRATOR_AGENT_RETENTION_H = config.env_int(ENV, "ORCHESTRATOR_AGENT_RETENTION_H", 24)
ORCHESTRATOR_AGENTS = config.env_list(ENV, "ORCHESTRATOR_AGENTS", [])
ORCHESTRATOR_DEBUG_ROUTING = config.env_bool(ENV, "ORCHESTRATOR_DEBUG_ROUTING", False)
# Budgets (docs/guards.md): the budget agent's reader, the share of a limit that is critical, and
# how old an unsettled hold may grow before the beat sweep releases it.
ORCHESTRATOR_BUDGET_READER = ENV.get(
    "ORCHESTRATOR_BUDGET_READER", "routing.budget_reader.budget_read"
)
ORCHESTRATOR_BUDGET_CRITICAL_SHARE = ENV.get("ORCHESTRATOR_BUDGET_CRITICAL_SHARE", "0.95")
ORCHESTRATOR_BUDGET_HOLD_MAX_S = config.env_int(ENV, "ORCHESTRATOR_BUDGET_HOLD_MAX_S", 900)
CELERY_BEAT_SCHEDULE["routing-budget-holds-expire"] = {
    "task": "routing.tasks.budget_reservations_expire",
    "schedule": 300.0,
}
CELERY_BEAT_SCHEDULE["routing-agents-sample"] = {
    "task": "routing.tasks.agents_sample",
    "schedule": float(ORCHESTRATOR_AGENT_INTERVAL_S),
}
# Request journal (docs/api.md): how long an unfinished request may stay open before the sweep
# writes its row.
ORCHESTRATOR_JOURNAL_GRACE_S = config.env_int(ENV, "ORCHESTRATOR_JOURNAL_GRACE_S", 900)
CELERY_BEAT_SCHEDULE["routing-journal-sweep"] = {
    "task": "routing.tasks.journal_sweep",
    "schedule": 60.0,
}
# Guards (docs/guards.md).
ORCHESTRATOR_BREAKER_FAILURE_THRESHOLD = config.env_int(
    ENV, "ORCHESTRATOR_BREAKER_FAILURE_THRESHOLD", 5
)
ORCHESTRATOR_BREAKER_WINDOW_S = config.env_int(ENV, "ORCHESTRATOR_BREAKER_WINDOW_S", 60)
ORCHESTRATOR_BREAKER_COOLDOWN_S = config.env_int(ENV, "ORCHESTRATOR_BREAKER_COOLDOWN_S", 30)
ORCHESTRATOR_BREAKER_PROBE_TIMEOUT_S = config.env_int(
    ENV, "ORCHESTRATOR_BREAKER_PROBE_TIMEOUT_S", 60
)
ORCHESTRATOR_BALANCER_STRATEGY = ENV.get("ORCHESTRATOR_BALANCER_STRATEGY", "round_robin")
ORCHESTRATOR_RESPONSE_CACHE_ENABLED = config.env_bool(
    ENV, "ORCHESTRATOR_RESPONSE_CACHE_ENABLED", True
)
ORCHESTRATOR_RESPONSE_CACHE_TTL_S = config.env_int(ENV, "ORCHESTRATOR_RESPONSE_CACHE_TTL_S", 3600)
ORCHESTRATOR_RESPONSE_CACHE_MAX_ENTRY_BYTES = config.env_int(
    ENV, "ORCHESTRATOR_RESPONSE_CACHE_MAX_ENTRY_BYTES", 64 * 1024
)
ORCHESTRATOR_RESPONSE_CACHE_SLOTS = config.env_int(ENV, "ORCHESTRATOR_RESPONSE_CACHE_SLOTS", 4096)
ORCHESTRATOR_RATE_LIMIT_BURST_SHARE = config.env_float(
    ENV, "ORCHESTRATOR_RATE_LIMIT_BURST_SHARE", 1.0
)
# A dotted path to a class with `classify(text) -> Classification` replacing the heuristic.
ORCHESTRATOR_CLASSIFIER = ENV.get("ORCHESTRATOR_CLASSIFIER", "")
# The learned router's cost-quality curve as the reports show it (a dotted path to a callable
# returning a dict; empty hides the curve).
ORCHESTRATOR_ROUTER_CURVE = ENV.get(
    "ORCHESTRATOR_ROUTER_CURVE", "routing.router.report.router_curve_read"
)
# One router artifact file to use instead of the shipped one and the kept versions (a path).
ORCHESTRATOR_ROUTER_ARTIFACT = ENV.get("ORCHESTRATOR_ROUTER_ARTIFACT", "")
# Routing-dev JSONL files `manage.py router train` reads by default (comma-separated paths).
ORCHESTRATOR_ROUTER_DATA = [p for p in ENV.get("ORCHESTRATOR_ROUTER_DATA", "").split(",") if p]
# Where finished background CSV exports are kept until downloaded.
ORCHESTRATOR_EXPORT_DIR = Path(ENV.get("ORCHESTRATOR_EXPORT_DIR", str(VAR_DIR / "exports")))
# Run background exports in a thread of the web process rather than as Celery tasks: the
# default without Redis, where Celery has no broker and would run them inside the request.
ORCHESTRATOR_EXPORT_IN_THREAD = config.env_bool(
    ENV, "ORCHESTRATOR_EXPORT_IN_THREAD", REDIS_URL is None
)
# Budget alerts (docs/guards.md#budget-alerts): sent from a thread of the web process rather
# than by a Celery worker (the default when Celery runs eagerly, without a broker, where it
# would send them inside the request); the first retry's wait, tripled at each retry.
ORCHESTRATOR_ALERTS_IN_THREAD = config.env_bool(
    ENV, "ORCHESTRATOR_ALERTS_IN_THREAD", CELERY_TASK_ALWAYS_EAGER
)
ORCHESTRATOR_ALERT_RETRY_BASE_S = config.env_float(ENV, "ORCHESTRATOR_ALERT_RETRY_BASE_S", 10.0)
# A failed batch item's retries wait this times 2, then times 4 (plus up to this much jitter).
ORCHESTRATOR_BATCH_RETRY_BASE_S = config.env_float(ENV, "ORCHESTRATOR_BATCH_RETRY_BASE_S", 1.0)
# Outgoing mail (budget alerts), through Django's SMTP backend unless EMAIL_BACKEND says else.
EMAIL_BACKEND = ENV.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = ENV.get("EMAIL_HOST", "localhost")
EMAIL_PORT = config.env_int(ENV, "EMAIL_PORT", 25)
EMAIL_HOST_USER = ENV.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = ENV.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = config.env_bool(ENV, "EMAIL_USE_TLS", False)
EMAIL_USE_SSL = config.env_bool(ENV, "EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = config.env_int(ENV, "EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = ENV.get("DEFAULT_FROM_EMAIL", "llm-orchestrator@localhost")
# How often the telemetry page is pushed a sample.
ORCHESTRATOR_TELEMETRY_INTERVAL_S = config.env_float(ENV, "ORCHESTRATOR_TELEMETRY_INTERVAL_S", 1.0)
