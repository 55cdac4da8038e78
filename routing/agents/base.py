from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Protocol

UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class AgentCheck:
    """One result of an agent's check; `target` is "" for the agent's overall state."""

    state: str
    target: str = ""
    proceed: bool = True
    reason: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    ok: bool = True  # False when the probe itself failed: the state is then unknown


class Agent(Protocol):
    """What any agent implements. `check` receives `previous` (target -> last state) and may
    return an `AgentCheck`, a list of them, or a mapping with the keys proceed, state, target,
    reason, metrics."""

    name: str

    def initialize(self) -> None: ...

    def check(self, **context: Any) -> Any: ...

    def shutdown(self) -> None: ...


def checks_from(result: Any) -> list[AgentCheck]:
    """Normalise what an agent returned; anything malformed is a failed check, never a crash."""
    items = result if isinstance(result, list | tuple) else [result]
    checks = []
    for item in items:
        if isinstance(item, AgentCheck):
            checks.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("state"), str):
            metrics = item.get("metrics") or {}
            checks.append(
                AgentCheck(
                    state=item["state"],
                    target=str(item.get("target") or ""),
                    proceed=bool(item.get("proceed", True)),
                    reason=str(item.get("reason") or ""),
                    metrics=dict(metrics) if isinstance(metrics, Mapping) else {},
                )
            )
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
