"""The ground floor: machinery every app stands on and that knows none of them.

Prepared statements on the request path (`core.db`), the one door to Redis (`core.redis`),
the worker threads that run blocking calls for async code (`core.threads`), which errors mean
a dependency is away (`core.dependencies`), the graceful shutdown's flag (`core.shutdown`) and
the authenticated websocket consumer base (`core.consumers`). `core` imports no app; the apps
import `core`, never `orchestrator_site` (tests/site/test_layers.py checks both).
"""
