from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Protocol

UNKNOWN = "unknown"

# What an agent may recommend in its result's `target`: where the request should run. "edge" is
# the seed designs' word for the local machine.
RECOMMENDATIONS = {"local": "local", "edge": "local", "cloud": "cloud"}

# The built-in agents' names in the seed designs, accepted wherever an agent is named (a
# policy's state rules and thresholds, the management API).
AGENT_ALIASES = {
    "resource_monitor": "resources",
    "resource": "resources",
    "resource_agent": "resources",
    "connectivity_agent": "connectivity",
    "network": "connectivity",
    "budget_agent": "budget",
}


def agent_canonical(name: str) -> str:
    """An agent's own name for `name`, a seed alias resolved."""
    return AGENT_ALIASES.get(name, name)


@dataclass(frozen=True, slots=True)
class AgentCheck:
    """One result of an agent's check. `target` is "" for the agent's overall state, or the
    thing a per-target check is about (a provider, a budget); `recommend` is where the agent
    would run the request ("local", "cloud", "" for no opinion)."""

    state: str
    target: str = ""
    proceed: bool = True
    reason: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    ok: bool = True  # False when the probe itself failed: the state is then unknown
    recommend: str = ""


class Agent(Protocol):
    """What any agent implements: `initialize`, `check`, `shutdown`, each sync or async.

    A **sampled** agent's `check(**context)` receives `previous` (target -> last state) and
    runs in the background every `check_interval` seconds. A **request** agent's
    `check(request_context)` takes one positional argument and runs for every request, with
    the request's context (routing.agents.context). Either returns an `AgentCheck`, a list of
    them, or a mapping with the keys proceed, state, target, reason, metrics."""

    name: str

    def initialize(self) -> Any: ...

    def check(self, *args: Any, **context: Any) -> Any: ...

    def shutdown(self) -> Any: ...


class BaseAgent:
    """A base for agents written the seed designs' way: a name, a `check_interval`, and
    async `initialize` / `check(request_context)` / `shutdown` to override."""

    name: str = ""
    check_interval: float | None = None

    def __init__(self, name: str | None = None, check_interval: float | None = None) -> None:
        if name:
            self.name = name
        if check_interval is not None:
            self.check_interval = check_interval

    async def initialize(self) -> None:
        return None

    async def check(self, request_context: Mapping[str, Any]) -> Mapping[str, Any]:
        raise NotImplementedError

    async def shutdown(self) -> None:
        return None


def per_request(agent: Agent) -> bool:
    """Whether `agent` checks each request: its `per_request` attribute when it sets one, else
    whether its `check` takes a positional argument (the request's context)."""
    flag = getattr(agent, "per_request", None)
    if isinstance(flag, bool):
        return flag
    return takes_context(agent)


def takes_context(agent: Agent) -> bool:
    """Whether `agent.check` takes the context as one positional argument (the seed designs'
    `check(request_context)`) rather than keywords (`check(**context)`)."""
    try:
        parameters = inspect.signature(agent.check).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )


def check_of(item: Mapping[str, Any]) -> AgentCheck:
    """A check from a result mapping. A `target` of local, edge or cloud is a recommendation
    for the agent's overall state; any other target names what a per-target check is about."""
    metrics = item.get("metrics") or {}
    target = str(item.get("target") or "")
    recommend = RECOMMENDATIONS.get(target.lower(), "")
    return AgentCheck(
        state=item["state"],
        target="" if recommend else target,
        proceed=bool(item.get("proceed", True)),
        reason=str(item.get("reason") or ""),
        metrics=dict(metrics) if isinstance(metrics, Mapping) else {},
        recommend=recommend,
    )


def checks_from(result: Any) -> list[AgentCheck]:
    """Normalise what an agent returned; anything malformed is a failed check, never a crash."""
    items = result if isinstance(result, list | tuple) else [result]
    checks = []
    for item in items:
        if isinstance(item, AgentCheck):
            checks.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("state"), str):
            checks.append(check_of(item))
        else:
            checks.append(
                AgentCheck(UNKNOWN, ok=False, reason=f"malformed check result: {item!r:.200}")
            )
    return checks


def agent_load(dotted_path: str) -> Agent:
    """Instantiate an agent class named by dotted path (`package.module.ClassName`)."""
    module_name, _, attr = dotted_path.rpartition(".")
    if not module_name:
        raise ImportError(f"{dotted_path!r} is not a dotted path")
    agent_class = getattr(import_module(module_name), attr)
    agent: Agent = agent_class()
    if not getattr(agent, "name", ""):
        agent.name = attr
    return agent
