"""Guards around a model call: circuit breakers, balancing, the response cache, rate limits.

Their state lives in the Django cache (Redis in production) so every web process sees the same
breakers, counters and cached answers. Budgets live in Postgres (`routing.budgets`).
"""
