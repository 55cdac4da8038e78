"""Kept so that settings naming `orchestrator_site.cache.SharedPoolRedisCache` as a cache
backend keep working; the backend lives in `core.redis`."""

from core.redis.pool import SharedPoolRedisCache

__all__ = ["SharedPoolRedisCache"]
