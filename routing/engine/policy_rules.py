"""Validation of the JSON parts of a policy, shared by the admin and `config_import`.

Each function returns error messages; an empty list means valid.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from routing.agents.base import agent_canonical
from routing.agents.connectivity import ConnectivityThresholds
from routing.agents.resources import ResourceThresholds
from routing.engine.taxonomy import COMPLEXITIES, TIERS
from routing.engine.values import BALANCE_STRATEGIES
from routing.privacy import privacy_errors

THRESHOLD_GROUPS: dict[str, type[Any]] = {
    "resources": ResourceThresholds,
    "connectivity": ConnectivityThresholds,
}
KNOWN_STATES = {
    "resources": ("AVAILABLE", "CONSTRAINED", "CRITICAL", "unknown"),
    "connectivity": ("OPTIMAL", "DEGRADED", "DISCONNECTED", "no_targets", "unknown"),
    "budget": ("no_budget", "budget_available", "budget_constrained", "budget_critical", "unknown"),
}


def tier_ladder_errors(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return ["must be a mapping of complexity to a list of tiers"]
    errors = []
    for complexity, tiers in value.items():
        if complexity not in COMPLEXITIES:
            errors.append(
                f"unknown complexity {complexity!r}; expected one of {', '.join(COMPLEXITIES)}"
            )
        errors += [f"{complexity}: {e}" for e in tiers_errors(tiers)]
    return errors


def tiers_errors(value: Any) -> list[str]:
    if not isinstance(value, list):
        return ["must be a list of tiers"]
    errors = [
        f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}"
        for tier in value
        if tier not in TIERS
    ]
    if len(set(map(str, value))) != len(value):
        errors.append("a tier is listed twice")
    return errors


ROUTER_MODES = ("learned", "heuristic")


def router_errors(value: Any) -> list[str]:
    """The cost-quality knob: {"mode", "quality_target_pct", "threshold", "ladder"}, and how
    a rung's models share the load, {"balance"}, and the privacy agent, {"privacy"} (routing/
    privacy.py); all optional (routing/router/ladder.py,
    docs/guards.md)."""
    if not isinstance(value, dict):
        return [
            "must be a mapping with mode, quality_target_pct, threshold, ladder, balance and "
            "privacy"
        ]
    errors = [
        f"unknown key {key!r}; expected mode, quality_target_pct, threshold, ladder, balance "
        "or privacy"
        for key in value
        if key not in ("mode", "quality_target_pct", "threshold", "ladder", "balance", "privacy")
    ]
    if "balance" in value:
        errors += [f"balance: {e}" for e in balance_errors(value["balance"])]
    if "privacy" in value:
        errors += [f"privacy: {e}" for e in privacy_errors(value["privacy"])]
    mode = value.get("mode", "learned")
    if mode not in ROUTER_MODES:
        errors.append(f"mode {mode!r} is not one of {', '.join(ROUTER_MODES)}")
    target = value.get("quality_target_pct")
    if target is not None and (
        isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 100
    ):
        errors.append("quality_target_pct must be a number above 0 and at most 100")
    threshold = value.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0 <= threshold <= 1
    ):
        errors.append("threshold must be a probability between 0 and 1")
    if "ladder" in value:
        ladder = value["ladder"]
        errors += [f"ladder: {e}" for e in tiers_errors(ladder)]
        if isinstance(ladder, list) and not ladder:
            errors.append("ladder: must name at least one tier")
    return errors


def balance_errors(value: Any) -> list[str]:
    """{"strategy": one of BALANCE_STRATEGIES, "weights": {"provider:model": n}}."""
    if not isinstance(value, dict):
        return ["must be a mapping with strategy and weights"]
    errors = [
        f"unknown key {key!r}; expected strategy or weights"
        for key in value
        if key not in ("strategy", "weights")
    ]
    strategy = value.get("strategy", "none")
    if strategy not in BALANCE_STRATEGIES:
        errors.append(f"strategy {strategy!r} is not one of {', '.join(BALANCE_STRATEGIES)}")
    weights = value.get("weights", {})
    if not isinstance(weights, dict):
        return [*errors, "weights must be a mapping of provider:model to a whole number"]
    for ref, weight in weights.items():
        if ":" not in str(ref):
            errors.append(f"weights: {ref!r} is not provider:model")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 1000:
            errors.append(f"weights: {ref}: must be a whole number from 1 to 1000")
    return errors


def thresholds_errors(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return ["must be a mapping of agent to thresholds"]
    errors = []
    for group, overrides in value.items():
        cls = THRESHOLD_GROUPS.get(agent_canonical(group))
        if cls is None:
            errors.append(f"unknown agent {group!r}; expected one of {', '.join(THRESHOLD_GROUPS)}")
            continue
        if not isinstance(overrides, dict):
            errors.append(f"{group}: must be a mapping of threshold names to numbers")
            continue
        names = {f.name for f in fields(cls)}
        for key, number in overrides.items():
            if key not in names:
                errors.append(
                    f"{group}: unknown threshold {key!r}; "
                    f"expected one of {', '.join(sorted(names))}"
                )
            elif isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                errors.append(f"{group}.{key}: must be a number >= 0")
    return errors


def agents_errors(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return ["must be a list of dotted paths"]
    return [f"{path!r} is not a dotted path" for path in value if "." not in path.strip(".")]


def state_errors(agent: str, state: str) -> list[str]:
    known = KNOWN_STATES.get(agent_canonical(agent))
    if known is not None and state not in known:
        return [f"unknown state {state!r} for agent {agent!r}; expected one of {', '.join(known)}"]
    return []


def thresholds_for(value: dict[str, Any], group: str) -> Any:
    """The thresholds dataclass of one agent, with a policy's overrides applied."""
    overrides: dict[str, Any] = {}
    for name, given in (value or {}).items():  # a seed alias names the same agent
        if agent_canonical(name) == group:
            overrides.update(given)
    return THRESHOLD_GROUPS[group](**overrides)
