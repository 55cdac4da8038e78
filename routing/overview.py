"""What the routing page shows: every policy with its rules, and the latest agent states."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from routing.engine.values import AgentState
from routing.models import RoutingPolicy
from routing.sampling import agents_snapshot_current, background_sampling_ensure


@dataclass(frozen=True, slots=True)
class RuleRow:
    match: str
    models: tuple[str, ...]
    tiers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PolicyRow:
    name: str
    description: str
    is_default: bool
    sticky_sessions: bool
    tier_ladder: tuple[tuple[str, tuple[str, ...]], ...]
    rules: tuple[RuleRow, ...]
    state_rules: tuple[str, ...]
    agents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoutingOverview:
    policies: tuple[PolicyRow, ...]
    agent_states: tuple[AgentState, ...]
    snapshot_taken_at: str | None


def routing_overview(*, now: datetime) -> RoutingOverview:
    # The page is often the first thing opened after `make run`; start sampling for it too.
    background_sampling_ensure()
    policies = RoutingPolicy.objects.prefetch_related(
        "rules__primary__provider", "rules__fallbacks__model__provider", "state_rules"
    )
    rows = []
    for policy in policies:
        rules = []
        for rule in policy.rules.all():
            models = [f"{rule.primary.provider.name}:{rule.primary.name}"] if rule.primary else []
            models += [f"{f.model.provider.name}:{f.model.name}" for f in rule.fallbacks.all()]
            rules.append(
                RuleRow(
                    f"{rule.task_type} / {rule.complexity or 'any'}",
                    tuple(models),
                    tuple(rule.tiers),
                )
            )
        rows.append(
            PolicyRow(
                name=policy.name,
                description=policy.description,
                is_default=policy.is_default,
                sticky_sessions=policy.sticky_sessions,
                tier_ladder=tuple((k, tuple(v)) for k, v in (policy.tier_ladder or {}).items()),
                rules=tuple(rules),
                state_rules=tuple(
                    f"{s.agent} = {s.state} → {s.get_action_display()}"
                    for s in policy.state_rules.all()
                ),
                agents=tuple(policy.agents or ()),
            )
        )
    snapshot = agents_snapshot_current(now=now)
    return RoutingOverview(tuple(rows), snapshot.states, snapshot.taken_at)
