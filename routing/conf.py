"""Routing settings with their defaults, read from Django settings at call time (tests override)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings


def sampling_mode() -> str:
    return str(getattr(settings, "ORCHESTRATOR_AGENT_SAMPLING", "off"))


def interval_s() -> int:
    return int(getattr(settings, "ORCHESTRATOR_AGENT_INTERVAL_S", 15))


def stale_after_s(agent_interval_s: float | None = None) -> float:
    """A sample older than three intervals (the agent's own `check_interval` when longer than
    the sampling interval) means sampling stopped: its state becomes unknown."""
    return 3 * max(float(agent_interval_s or 0), float(interval_s()))


def check_timeout_s() -> float:
    """How long a sampled agent's async check may run before it is cancelled (unknown)."""
    return float(getattr(settings, "ORCHESTRATOR_AGENT_CHECK_TIMEOUT_S", 30))


def request_agent_timeout_s() -> float:
    """How long a request agent's async check may hold a request before it is cancelled."""
    return float(getattr(settings, "ORCHESTRATOR_REQUEST_AGENT_TIMEOUT_MS", 200)) / 1000


def retention_h() -> int:
    return int(getattr(settings, "ORCHESTRATOR_AGENT_RETENTION_H", 24))


def custom_agents() -> list[str]:
    return list(getattr(settings, "ORCHESTRATOR_AGENTS", []))


def debug_routing() -> bool:
    return bool(getattr(settings, "ORCHESTRATOR_DEBUG_ROUTING", False))


def classifier_path() -> str:
    return str(getattr(settings, "ORCHESTRATOR_CLASSIFIER", ""))


def budget_reader_path() -> str:
    return str(getattr(settings, "ORCHESTRATOR_BUDGET_READER", ""))


def budget_critical_share() -> Decimal:
    """Share of a budget's limit, spent and held together, at which it is critical."""
    return Decimal(str(getattr(settings, "ORCHESTRATOR_BUDGET_CRITICAL_SHARE", "0.95")))


def budget_hold_max_s() -> int:
    """A budget hold older than this belonged to a process that died; the sweep releases it."""
    return int(getattr(settings, "ORCHESTRATOR_BUDGET_HOLD_MAX_S", 900))
