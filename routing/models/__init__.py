"""Routing tables, one module per concept; other modules of this package add their own."""

from routing.models.agents import AgentSample, AgentSwitch
from routing.models.apikey import ApiKey  # noqa: F401
from routing.models.audit import AuditEvent
from routing.models.batch import Batch, BatchItem, DeadLetter  # noqa: F401
from routing.models.budget import Budget, BudgetAlert, BudgetPeriod, BudgetReservation  # noqa: F401
from routing.models.budget_alert import BudgetAlertDelivery  # noqa: F401
from routing.models.policy import RoutingPolicy, RoutingRule, RuleFallback, StateRule

__all__ = [
    "AgentSample",
    "AgentSwitch",
    "AuditEvent",
    "RoutingPolicy",
    "RoutingRule",
    "RuleFallback",
    "StateRule",
]
