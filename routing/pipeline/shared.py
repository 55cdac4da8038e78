"""The guards' objects shared by every request of the process: one cache backend, built once,
and the rate limiter, circuit breakers, response cache and request closer built on it. Django's
`cache` proxy builds a backend object for every async context it is used in, which under ASGI is
every request (the connection pool is shared, the object and its setup are not). The backends
are safe to share across threads."""

from __future__ import annotations

from django.core.cache import caches

from routing.guards.admission import Guards
from routing.guards.breaker import CircuitBreakers
from routing.guards.ratelimit import RateLimiter
from routing.guards.response_cache import ResponseCache
from routing.pipeline.closing import RequestCloser

store = caches.create_connection("default")
limiter = RateLimiter(store)
breakers = CircuitBreakers(store)
response_cache = ResponseCache(store)
guards = Guards(limiter, breakers, response_cache)
closer = RequestCloser(limiter)
