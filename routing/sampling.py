"""Agent sampling: run every agent, keep the samples, publish the latest snapshot to the cache.

Runs in the background only (Celery beat, or a loop in the web process in the zero-setup mode);
a decision reads the published snapshot and never waits for a probe.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.utils import timezone

from providers.services import local_health_refresh
from routing import conf
from routing.agents.base import UNKNOWN, Agent, AgentCheck, agent_load, checks_from
from routing.agents.budget import BudgetAgent, BudgetReader, no_budget
from routing.agents.connectivity import ConnectivityAgent
from routing.agents.resources import ResourceMonitor
from routing.config.cache import SNAPSHOT_KEY, routing_config_get, shared_forget
from routing.engine import policy_rules
from routing.engine.values import AgentSnapshot, AgentState
from routing.models import AgentSample

logger = logging.getLogger(__name__)
BUILTIN_AGENTS = ("resources", "connectivity", "budget")

_custom: dict[str, Agent] = {}
_resource_monitor = ResourceMonitor()
_resource_monitor_ready = False


def _budget_reader() -> BudgetReader:
    path = conf.budget_reader_path()
    if not path:
        return no_budget
    module_name, _, attr = path.rpartition(".")
    reader: BudgetReader = getattr(import_module(module_name), attr)
    return reader


def _agents() -> list[Agent]:
    global _resource_monitor_ready
    config = routing_config_get()
    thresholds = config.thresholds
    if not _resource_monitor_ready:
        _resource_monitor.initialize()
        _resource_monitor_ready = True
    _resource_monitor.thresholds = policy_rules.thresholds_for(thresholds, "resources")
    agents: list[Agent] = [
        _resource_monitor,
        ConnectivityAgent(
            list(config.cloud_targets), policy_rules.thresholds_for(thresholds, "connectivity")
        ),
        BudgetAgent(_budget_reader()),
    ]
    for path in [*conf.custom_agents(), *config.policy_agents]:
        if path not in _custom:
            agent = agent_load(path)
            agent.initialize()
            _custom[path] = agent
        agents.append(_custom[path])
    # Switched off at runtime (`AgentSwitch`, read with the configuration): not sampled.
    return [a for a in agents if _name_of(a) not in config.disabled_agents]


def _name_of(agent: Agent) -> str:
    return getattr(agent, "name", type(agent).__name__)


@dataclass(frozen=True, slots=True)
class ConfiguredAgent:
    """An agent that sampling runs: built in, named in settings `ORCHESTRATOR_AGENTS`, or
    named by the default policy (`path` is the dotted path of the last two)."""

    name: str
    source: str
    path: str = ""


def agents_configured() -> list[ConfiguredAgent]:
    """Every agent sampling knows of, switched off or not, each name once; a custom agent's
    name is read from its class without starting it."""
    found = [ConfiguredAgent(name, "builtin") for name in BUILTIN_AGENTS]
    names = set(BUILTIN_AGENTS)
    sources = (("settings", conf.custom_agents()), ("policy", routing_config_get().policy_agents))
    for source, paths in sources:
        for path in paths:
            name = _custom_name(path)
            if name not in names:
                names.add(name)
                found.append(ConfiguredAgent(name, source, path))
    return found


def _custom_name(path: str) -> str:
    if path in _custom:
        return _name_of(_custom[path])
    module_name, _, attr = path.rpartition(".")
    try:
        agent_class = getattr(import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return attr
    return str(getattr(agent_class, "name", "") or attr)


def _previous(snapshot: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    previous: dict[str, dict[str, str]] = {}
    for entry in (snapshot or {}).get("agents", []):
        if entry.get("ok", True):
            previous.setdefault(entry["agent"], {})[entry["target"]] = entry["state"]
    return previous


def agents_sample(*, now: datetime | None = None) -> list[AgentSample]:
    """Check every agent once, store the samples, publish the snapshot, drop expired samples."""
    now = now or timezone.now()
    previous = _previous(cache.get(SNAPSHOT_KEY))
    rows: list[AgentSample] = []
    for agent in _agents():
        name = _name_of(agent)
        try:
            checks = checks_from(agent.check(previous=previous.get(name, {})))
        except Exception as error:
            logger.warning("agent %s check failed", name, exc_info=True)
            checks = [AgentCheck(UNKNOWN, ok=False, reason=f"check failed: {error}"[:500])]
        for check in checks:
            metrics = {**check.metrics, "proceed": check.proceed}
            rows.append(
                AgentSample(
                    agent=name,
                    target=check.target,
                    state=check.state,
                    ok=check.ok,
                    reason=check.reason[:500],
                    metrics=metrics,
                    sampled_at=now,
                )
            )
    AgentSample.objects.bulk_create(rows)
    snapshot = {
        "taken_at": now.isoformat(),
        "agents": [
            {
                "agent": r.agent,
                "target": r.target,
                "state": r.state,
                "ok": r.ok,
                "reason": r.reason,
                "metrics": r.metrics,
                "sampled_at": now.isoformat(),
            }
            for r in rows
        ],
    }
    cache.set(SNAPSHOT_KEY, snapshot, timeout=None)
    shared_forget()
    AgentSample.objects.filter(sampled_at__lt=now - timedelta(hours=conf.retention_h())).delete()
    return rows


def agents_snapshot_current(
    *,
    now: datetime,
    published: dict[str, Any] | bool | None = False,
    disabled: frozenset[str] | None = None,
) -> AgentSnapshot:
    """The published snapshot; a stale or failed sample reads as an explicit unknown state,
    and so does an agent switched off at runtime (reason "disabled").

    `published` is the snapshot already read from the cache (None: nothing was published);
    left out, it is read here. `disabled` is the configuration's `disabled_agents`; left out,
    it is read from the (memoized) configuration.
    """
    if published is False:
        published = cache.get(SNAPSHOT_KEY)
    if disabled is None:
        disabled = routing_config_get().disabled_agents
    off = tuple(AgentState(a, UNKNOWN, reason="disabled") for a in sorted(disabled))
    if not isinstance(published, dict):
        return AgentSnapshot(
            tuple(
                AgentState(a, UNKNOWN, reason="no sample yet")
                for a in BUILTIN_AGENTS
                if a not in disabled
            )
            + off
        )
    stale_after = timedelta(seconds=conf.stale_after_s())
    states = list(off)
    for entry in published["agents"]:
        if entry["agent"] in disabled:
            continue  # sampled before it was switched off
        sampled_at = datetime.fromisoformat(entry["sampled_at"])
        age = now - sampled_at
        if age > stale_after:
            state = UNKNOWN
            reason = f"stale: sampled {int(age.total_seconds())} s ago (was {entry['state']})"
        elif not entry["ok"]:
            state, reason = UNKNOWN, entry["reason"]
        else:
            state, reason = entry["state"], entry["reason"]
        states.append(AgentState(entry["agent"], state, entry["target"], reason, entry["metrics"]))
    return AgentSnapshot(tuple(states), taken_at=published["taken_at"])


_loop_started = False
_loop_lock = threading.Lock()


def background_sampling_ensure() -> bool:
    """Start the in-process sampling loop once, in the mode that wants it. True when started now."""
    global _loop_started
    if _loop_started or conf.sampling_mode() != "web":
        return False
    with _loop_lock:
        if _loop_started:
            return False
        _loop_started = True
    # A thread of its own keeps the loop alive whether or not the caller runs an event loop.
    threading.Thread(
        target=asyncio.run, args=(_sampling_loop(),), name="routing-agents", daemon=True
    ).start()
    return True


def _local_health_refresh() -> None:
    local_health_refresh(now=timezone.now())


async def _sampling_loop() -> None:
    sample = sync_to_async(agents_sample, thread_sensitive=False)
    # With no beat process the local model would otherwise never be probed.
    probe_local = sync_to_async(_local_health_refresh, thread_sensitive=False)
    while True:
        try:
            await sample()
        except Exception:
            logger.exception("agent sampling failed")
        try:
            await probe_local()
        except Exception:
            logger.exception("local provider probe failed")
        await asyncio.sleep(conf.interval_s())
