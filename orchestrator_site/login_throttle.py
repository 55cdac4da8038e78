"""Login throttling: after `ORCHESTRATOR_LOGIN_MAX_FAILURES` wrong passwords for one username
from one address within `ORCHESTRATOR_LOGIN_LOCKOUT_S`, that pair is locked out for
`ORCHESTRATOR_LOGIN_LOCKOUT_S`; a successful login clears its count.

State lives in the shared cache (Redis in production) through the same atomic counter as the
gateway's guards (`core.redis.exchange.counter_add`), so every web process sees one count and
no table or dependency is added. If Redis cannot be reached the throttle fails open: logins
still need the right password, and an outage of the cache does not lock staff out.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redis import counter_add

logger = logging.getLogger(__name__)
# Redis down or too slow: the throttle fails open. Any other error is a fault and is raised.
REDIS_AWAY = (RedisConnectionError, RedisTimeoutError)


def _pair_key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{username.casefold()}\x00{address}".encode()).hexdigest()
    return digest[:32]


def login_lock_remaining_s(*, username: str, address: str) -> int | None:
    """Whole seconds until the pair may try again, or None when it is not locked out."""
    try:
        until = cache.get(f"login-lock:{_pair_key(username, address)}")
    except REDIS_AWAY:
        logger.warning("login throttle unavailable (cache down): not checked", exc_info=True)
        return None
    if until is None:
        return None
    remaining = math.ceil(float(until) - time.time())
    return remaining if remaining > 0 else None


def login_failure_record(*, username: str, address: str) -> int | None:
    """Count one failed login; the lockout's length in seconds when this failure starts one."""
    key = _pair_key(username, address)
    lockout_s = settings.ORCHESTRATOR_LOGIN_LOCKOUT_S
    try:
        failures = counter_add(cache, f"login-failures:{key}", 1, lockout_s)
        if failures < settings.ORCHESTRATOR_LOGIN_MAX_FAILURES:
            return None
        cache.set(f"login-lock:{key}", time.time() + lockout_s, timeout=lockout_s)
        cache.delete(f"login-failures:{key}")
    except REDIS_AWAY:
        logger.warning("login throttle unavailable (cache down): not counted", exc_info=True)
        return None
    logger.warning("login locked out after %s failures", failures, extra={"address": address})
    return int(lockout_s)


def login_failures_clear(*, username: str, address: str) -> None:
    try:
        cache.delete(f"login-failures:{_pair_key(username, address)}")
    except REDIS_AWAY:
        logger.warning("login throttle unavailable (cache down): not cleared", exc_info=True)


def lockout_message(remaining_s: int) -> str:
    count, unit = (
        (remaining_s, "second") if remaining_s < 60 else (math.ceil(remaining_s / 60), "minute")
    )
    return f"Too many failed logins. Try again in {count} {unit}{'' if count == 1 else 's'}."
