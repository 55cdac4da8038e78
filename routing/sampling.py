"""Agent sampling: run every agent, keep the samples, publish the latest snapshot to the cache.

Runs in the background only (Celery beat, or a loop in the web process in the zero-setup mode);
a decision reads the published snapshot and never waits for a probe.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.utils import timezone

from providers.services import local_health_refresh
from routing import conf
from routing.agents.base import (
    UNKNOWN,
    Agent,
    AgentCheck,
    agent_load,
    checks_from,
    per_request,
    takes_context,
)
from routing.agents.budget import BudgetAgent, BudgetReader, no_budget
from routing.agents.connectivity import ConnectivityAgent
from routing.agents.resources import ResourceMonitor
from routing.agents.runner import AgentTimeout, agent_call, agent_start
from routing.config.cache import (
    SNAPSHOT_KEY,
    ConfigSnapshot,
    routing_config_get,
    shared_forget,
)
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


def _custom_agents(config: ConfigSnapshot) -> list[Agent]:
    """The custom agents of settings and the default policy, each started once per process."""
    agents = []
    for path in [*conf.custom_agents(), *config.policy_agents]:
        if path not in _custom:
            _custom[path] = agent_start(agent_load(path))
        agents.append(_custom[path])
    return agents


def _agents() -> list[Agent]:
    """The agents sampled in the background, switched-off ones left out."""
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
    agents += [a for a in _custom_agents(config) if not _checks_requests(a)]
    # Switched off at runtime (`AgentSwitch`, read with the configuration): not sampled.
    return [a for a in agents if _name_of(a) not in config.disabled_agents]


_per_request: dict[int, bool] = {}


def _checks_requests(agent: Agent) -> bool:
    flag = _per_request.get(id(agent))
    if flag is None:
        flag = _per_request[id(agent)] = per_request(agent)
    return flag


def request_agents(config: ConfigSnapshot) -> list[Agent]:
    """The agents that check every request (routing.agents.context), switched-off ones left
    out."""
    return [
        a
        for a in _custom_agents(config)
        if _checks_requests(a) and _name_of(a) not in config.disabled_agents
    ]


def _name_of(agent: Agent) -> str:
    return getattr(agent, "name", type(agent).__name__)


def interval_of(agent: Agent) -> float:
    """Seconds between two checks of a sampled agent: its own `check_interval`, else
    `ORCHESTRATOR_AGENT_INTERVAL_S`."""
    own = getattr(agent, "check_interval", None)
    if isinstance(own, int | float) and not isinstance(own, bool) and own > 0:
        return float(own)
    return float(conf.interval_s())


@dataclass(frozen=True, slots=True)
class ConfiguredAgent:
    """An agent that sampling runs: built in, named in settings `ORCHESTRATOR_AGENTS`, or
    named by the default policy (`path` is the dotted path of the last two)."""

    name: str
    source: str
    path: str = ""
    per_request: bool = False
    """It checks each request (routing.agents.context) instead of being sampled."""


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
                found.append(ConfiguredAgent(name, source, path, _custom_per_request(path)))
    return found


def _custom_per_request(path: str) -> bool:
    """Whether the agent of `path` checks requests, read from its class when not started."""
    if path in _custom:
        return _checks_requests(_custom[path])
    module_name, _, attr = path.rpartition(".")
    try:
        agent_class = getattr(import_module(module_name), attr)
        flag = getattr(agent_class, "per_request", None)
        if isinstance(flag, bool):
            return flag
        # The unbound `check(self, request_context)`: a positional argument after self.
        parameters = list(inspect.signature(agent_class.check).parameters.values())[1:]
    except (ImportError, AttributeError, ValueError, TypeError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )


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


# A sampled agent is due when this share of its interval has passed since its last check, so
# a tick that comes a little early does not skip a whole interval.
DUE_SHARE = 0.9


def _last_checked(snapshot: dict[str, Any] | None) -> dict[str, datetime]:
    return {
        entry["agent"]: datetime.fromisoformat(entry["sampled_at"])
        for entry in (snapshot or {}).get("agents", [])
    }


def _check(agent: Agent, previous: dict[str, str]) -> list[AgentCheck]:
    """One agent's checks; a check that raises, times out or returns junk is an unknown one."""
    try:
        if takes_context(agent):
            result = agent.check({"previous": previous})
        else:
            result = agent.check(previous=previous)
        return checks_from(agent_call(result, timeout_s=conf.check_timeout_s()))
    except AgentTimeout as error:
        return [AgentCheck(UNKNOWN, ok=False, reason=str(error))]
    except Exception as error:
        logger.warning("agent %s check failed", _name_of(agent), exc_info=True)
        return [AgentCheck(UNKNOWN, ok=False, reason=f"check failed: {error}"[:500])]


def agents_sample(*, now: datetime | None = None, every: bool = False) -> list[AgentSample]:
    """Check every agent that is due (each after its own `check_interval`; `every`: all of
    them), store the samples, publish the snapshot (the agents not due keep their last
    entries), drop expired samples."""
    now = now or timezone.now()
    published = cache.get(SNAPSHOT_KEY)
    previous = _previous(published)
    last = _last_checked(published)
    rows: list[AgentSample] = []
    entries: list[dict[str, Any]] = []
    checked: set[str] = set()
    agents = _agents()
    for agent in agents:
        name = _name_of(agent)
        interval = interval_of(agent)
        if not every and name in last and (now - last[name]).total_seconds() < DUE_SHARE * interval:
            continue
        checked.add(name)
        for check in _check(agent, previous.get(name, {})):
            metrics = {**check.metrics, "proceed": check.proceed}
            row = AgentSample(
                agent=name,
                target=check.target,
                state=check.state,
                ok=check.ok,
                reason=check.reason[:500],
                metrics=metrics,
                sampled_at=now,
            )
            rows.append(row)
            entries.append(
                {
                    "agent": name,
                    "target": check.target,
                    "state": check.state,
                    "ok": check.ok,
                    "reason": row.reason,
                    "metrics": metrics,
                    "proceed": check.proceed,
                    "recommend": check.recommend,
                    "interval_s": interval,
                    "sampled_at": now.isoformat(),
                }
            )
    sampled = {_name_of(a) for a in agents}
    kept = [
        entry
        for entry in (published or {}).get("agents", [])
        if entry["agent"] not in checked and entry["agent"] in sampled
    ]
    AgentSample.objects.bulk_create(rows)
    snapshot = {"taken_at": now.isoformat(), "agents": kept + entries}
    cache.set(SNAPSHOT_KEY, snapshot, timeout=None)
    shared_forget()
    AgentSample.objects.filter(sampled_at__lt=now - timedelta(hours=conf.retention_h())).delete()
    return rows


def sampling_tick_s() -> float:
    """How often the in-process loop looks for due agents: the shortest interval of any
    sampled agent, never under a second."""
    return max(1.0, min([interval_of(a) for a in _agents()] or [float(conf.interval_s())]))


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
    states = list(off)
    for entry in published["agents"]:
        if entry["agent"] in disabled:
            continue  # sampled before it was switched off
        sampled_at = datetime.fromisoformat(entry["sampled_at"])
        age = now - sampled_at
        if age > timedelta(seconds=conf.stale_after_s(entry.get("interval_s"))):
            state = UNKNOWN
            reason = f"stale: sampled {int(age.total_seconds())} s ago (was {entry['state']})"
        elif not entry["ok"]:
            state, reason = UNKNOWN, entry["reason"]
        else:
            state, reason = entry["state"], entry["reason"]
        fresh = state == entry["state"]
        states.append(
            AgentState(
                entry["agent"],
                state,
                entry["target"],
                reason,
                entry["metrics"],
                # A stale or failed sample neither blocks nor recommends.
                proceed=entry.get("proceed", True) if fresh else True,
                recommend=entry.get("recommend", "") if fresh else "",
            )
        )
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
    probe_due = 0.0
    while True:
        try:
            await sample()
        except Exception:
            logger.exception("agent sampling failed")
        if time.monotonic() >= probe_due:
            probe_due = time.monotonic() + conf.interval_s()
            try:
                await probe_local()
            except Exception:
                logger.exception("local provider probe failed")
        try:
            tick = await sync_to_async(sampling_tick_s, thread_sensitive=False)()
        except Exception:
            tick = float(conf.interval_s())
        await asyncio.sleep(tick)
