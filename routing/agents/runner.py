"""Calling agents: a sync method is called where it is; an async one (a coroutine) runs on one
event loop thread of the process's own, so an agent's `initialize`, `check` and `shutdown` share
the loop that holds its connections, whichever thread (the sampler, a request's worker thread)
asks. A call that takes longer than its time limit is cancelled and reported as such."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import logging
import threading
from typing import Any

from routing.agents.base import Agent

logger = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
_started: dict[int, Agent] = {}
_started_lock = threading.Lock()


class AgentTimeout(Exception):
    """An agent's async call ran past its time limit and was cancelled."""


def _agent_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="routing-agents-async", daemon=True
            ).start()
            _loop = loop
        return _loop


def agent_call(result: Any, *, timeout_s: float | None = None) -> Any:
    """The value of what an agent's method returned: itself, or, for a coroutine, what it
    returns once run on the agents' loop (cancelled after `timeout_s`: AgentTimeout)."""
    if not inspect.isawaitable(result):
        return result

    async def awaited() -> Any:
        return await result

    future = asyncio.run_coroutine_threadsafe(awaited(), _agent_loop())
    try:
        return future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise AgentTimeout(f"check timed out after {int((timeout_s or 0) * 1000)} ms") from None


def agent_start(agent: Agent) -> Agent:
    """Initialize `agent` once per process (sync or async); it is shut down at exit."""
    with _started_lock:
        if id(agent) not in _started:
            agent_call(agent.initialize(), timeout_s=30.0)
            _started[id(agent)] = agent
    return agent


def agents_shutdown() -> None:
    """Shut every started agent down (at process exit); one that fails is logged, not fatal."""
    with _started_lock:
        agents = list(_started.values())
        _started.clear()
    for agent in agents:
        try:
            agent_call(agent.shutdown(), timeout_s=5.0)
        except Exception:
            logger.warning("agent %s shutdown failed", getattr(agent, "name", agent), exc_info=True)


atexit.register(agents_shutdown)
