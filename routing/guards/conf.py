"""Guard settings with their defaults, read from Django settings at call time (tests override).

Every name and default is listed in docs/guards.md.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


def setting(name: str, default: Any) -> Any:
    return getattr(settings, f"ORCHESTRATOR_{name}", default)


def breaker_defaults() -> dict[str, int]:
    return {
        "failure_threshold": int(setting("BREAKER_FAILURE_THRESHOLD", 5)),
        "window_s": int(setting("BREAKER_WINDOW_S", 60)),
        "cooldown_s": int(setting("BREAKER_COOLDOWN_S", 30)),
        "probe_timeout_s": int(setting("BREAKER_PROBE_TIMEOUT_S", 60)),
    }


def balancer_strategy() -> str:
    return str(setting("BALANCER_STRATEGY", "round_robin"))


def response_cache_ttl_s() -> int:
    return int(setting("RESPONSE_CACHE_TTL_S", 3600))


def response_cache_max_entry_bytes() -> int:
    return int(setting("RESPONSE_CACHE_MAX_ENTRY_BYTES", 64 * 1024))


def response_cache_slots() -> int:
    return int(setting("RESPONSE_CACHE_SLOTS", 4096))


def response_cache_enabled() -> bool:
    return bool(setting("RESPONSE_CACHE_ENABLED", True))


def rate_limit_burst_share() -> float:
    return float(setting("RATE_LIMIT_BURST_SHARE", 1.0))
