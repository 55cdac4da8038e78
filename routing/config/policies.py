"""The routing policies in a configuration file: read with their rules and state rules (the
JSON parts checked by `routing.engine.policy_rules`), checked (one default, no policy twice),
applied (a policy whose export would not change is left alone, so applying a file twice
changes nothing) and exported in the same shape, which is how a no-op is detected.
"""

from __future__ import annotations

from typing import Any

import yaml

from providers.models import LLMModel
from routing.agents.base import agent_canonical
from routing.config.base import (
    ApplyFailed,
    ApplyReport,
    Located,
    Reader,
    node_line,
    row_save,
    row_sync,
)
from routing.engine import policy_rules
from routing.engine.taxonomy import COMPLEXITIES, TASK_TYPES
from routing.guards.response_cache import CACHE_DETERMINISTIC, CACHE_MODES
from routing.models import RoutingPolicy, RoutingRule, RuleFallback, StateRule


def policy_parse(r: Reader, node: yaml.Node) -> Located | None:
    items = r.mapping(
        node,
        "policy",
        ("name",),
        (
            "description",
            "default",
            "sticky_sessions",
            "tier_ladder",
            "thresholds",
            "agents",
            "router",
            "response_cache",
            "rules",
            "state_rules",
        ),
    )
    if items is None:
        return None
    name = r.typed(items.get("name"), "policy name", str, "")
    where = f"policy {name!r}"
    data: dict[str, Any] = {
        "name": name,
        "description": r.typed(items.get("description"), f"{where} description", str, ""),
        "is_default": r.typed(items.get("default"), f"{where} default", bool, False),
        "sticky_sessions": r.typed(
            items.get("sticky_sessions"), f"{where} sticky_sessions", bool, True
        ),
        "tier_ladder": r.json_field(
            items.get("tier_ladder"), f"{where} tier_ladder", policy_rules.tier_ladder_errors, {}
        ),
        "thresholds": r.json_field(
            items.get("thresholds"), f"{where} thresholds", policy_rules.thresholds_errors, {}
        ),
        "agents": r.json_field(
            items.get("agents"), f"{where} agents", policy_rules.agents_errors, []
        ),
        "router": r.json_field(
            items.get("router"), f"{where} router", policy_rules.router_errors, {}
        ),
        "response_cache": r.choice(
            items.get("response_cache"), f"{where} response_cache", CACHE_MODES, CACHE_DETERMINISTIC
        ),
        "rules": [],
        "state_rules": [],
    }
    seen_rules: set[tuple[str, str]] = set()
    for rule_node in r.sequence(items.get("rules"), f"{where} rules"):
        rule = r.mapping(
            rule_node,
            f"{where} rule",
            ("task_type",),
            ("complexity", "primary", "fallbacks", "tiers"),
        )
        if rule is None:
            continue
        task_type = r.choice(rule.get("task_type"), f"{where} rule task_type", TASK_TYPES)
        complexity = r.choice(rule.get("complexity"), f"{where} rule complexity", COMPLEXITIES, "")
        if (task_type, complexity) in seen_rules:
            r.error(rule_node, f"{where}: a second rule for {task_type}/{complexity or '*'}")
        seen_rules.add((task_type, complexity))
        refs = (
            [(rule["primary"], r.typed(rule["primary"], f"{where} rule primary", str))]
            if "primary" in rule
            else []
        )
        fallbacks = [
            (n, r.typed(n, f"{where} rule fallback", str))
            for n in r.sequence(rule.get("fallbacks"), "fallbacks")
        ]
        for ref_node, ref in [*refs, *fallbacks]:
            if isinstance(ref, str) and ref.count(":") < 1:
                r.error(ref_node, f"{where}: model {ref!r} must be written provider:model")
        data["rules"].append(
            Located(
                rule_node,
                {
                    "task_type": task_type,
                    "complexity": complexity,
                    "primary": refs[0] if refs else None,
                    "fallbacks": fallbacks,
                    "tiers": r.json_field(
                        rule.get("tiers"), f"{where} rule tiers", policy_rules.tiers_errors, []
                    ),
                },
            )
        )
    seen_states: set[tuple[str, str, str]] = set()
    for state_node in r.sequence(items.get("state_rules"), f"{where} state_rules"):
        rule = r.mapping(
            state_node, f"{where} state rule", ("agent", "action"), ("state", "target")
        )
        if rule is None:
            continue
        agent = agent_canonical(r.typed(rule.get("agent"), f"{where} state rule agent", str, ""))
        state = r.typed(rule.get("state"), f"{where} state rule state", str, "")
        target = r.choice(
            rule.get("target"),
            f"{where} state rule target",
            tuple(StateRule.Target.values),
            "",
        )
        action = r.choice(
            rule.get("action"), f"{where} state rule action", tuple(StateRule.Action.values)
        )
        if not state and not target:
            r.error(state_node, f"{where}: a state rule needs a state, a target, or both")
        for message in policy_rules.state_errors(agent, state) if state else []:
            r.error(rule.get("state", state_node), f"{where}: {message}")
        if (agent, state, target) in seen_states:
            r.error(state_node, f"{where}: a second state rule for {agent}={state} {target}")
        seen_states.add((agent, state, target))
        entry = {"agent": agent, "state": state, "action": action}
        if target:
            entry["target"] = target
        data["state_rules"].append(entry)
    return Located(node, data)


def policies_check(r: Reader, policies: list[Located]) -> None:
    defaults = [p for p in policies if p.data["is_default"]]
    for extra in defaults[1:]:
        r.error(extra.node, "only one policy can be the default")
    seen_policies: set[str] = set()
    for policy in policies:
        if policy.data["name"] in seen_policies:
            r.error(policy.node, f"policy {policy.data['name']!r} is listed twice")
        seen_policies.add(policy.data["name"])


def policies_apply(
    policies: list[Located], models: dict[str, LLMModel], report: ApplyReport
) -> None:
    errors = []
    for located in policies:
        for rule in located.data["rules"]:
            for node, ref in [
                *([rule.data["primary"]] if rule.data["primary"] else []),
                *rule.data["fallbacks"],
            ]:
                if ref not in models:
                    errors.append(
                        f"{node_line(node)}: unknown model {ref!r} "
                        "(not in this file nor the database)"
                    )
    if errors:
        raise ApplyFailed(errors)
    if any(p.data["is_default"] for p in policies):
        names = [p.data["name"] for p in policies if p.data["is_default"]]
        RoutingPolicy.objects.filter(is_default=True).exclude(name__in=names).update(
            is_default=False
        )
    for located in policies:
        data = located.data
        label = f"policy {data['name']}"
        policy = RoutingPolicy.objects.filter(name=data["name"]).first()
        wanted = _policy_as_data(data)
        if policy is not None and policy_export(policy) == wanted:
            report.unchanged.append(label)
            continue
        fields = {
            k: data[k]
            for k in (
                "description",
                "is_default",
                "sticky_sessions",
                "tier_ladder",
                "thresholds",
                "agents",
                "router",
                "response_cache",
            )
        }
        if policy is None:
            policy = RoutingPolicy(name=data["name"], **fields)
            report.created.append(label)
        else:
            row_sync(policy, fields)
            policy.rules.all().delete()
            policy.state_rules.all().delete()
            report.updated.append(label)
        row_save(policy, located.node, label)
        for position, rule_located in enumerate(data["rules"]):
            rule = rule_located.data
            primary = models[rule["primary"][1]] if rule["primary"] else None
            row = RoutingRule(
                policy=policy,
                position=position,
                task_type=rule["task_type"],
                complexity=rule["complexity"],
                primary=primary,
                tiers=rule["tiers"],
            )
            row_save(row, rule_located.node, f"{label} rule")
            RuleFallback.objects.bulk_create(
                RuleFallback(rule=row, position=i, model=models[ref])
                for i, (_, ref) in enumerate(rule["fallbacks"])
            )
        StateRule.objects.bulk_create(
            StateRule(policy=policy, position=i, **s) for i, s in enumerate(data["state_rules"])
        )


def _policy_as_data(data: dict[str, Any]) -> dict[str, Any]:
    """The parsed form of a policy in the shape `policy_export` produces, to detect no-ops."""
    out: dict[str, Any] = {"name": data["name"]}
    if data["description"]:
        out["description"] = data["description"]
    out["default"] = data["is_default"]
    out["sticky_sessions"] = data["sticky_sessions"]
    for key in ("tier_ladder", "thresholds", "agents", "router"):
        if data[key]:
            out[key] = data[key]
    if data["response_cache"] != CACHE_DETERMINISTIC:
        out["response_cache"] = data["response_cache"]
    rules = []
    for located in data["rules"]:
        rule = located.data
        entry: dict[str, Any] = {"task_type": rule["task_type"]}
        if rule["complexity"]:
            entry["complexity"] = rule["complexity"]
        if rule["primary"]:
            entry["primary"] = rule["primary"][1]
        if rule["fallbacks"]:
            entry["fallbacks"] = [ref for _, ref in rule["fallbacks"]]
        if rule["tiers"]:
            entry["tiers"] = rule["tiers"]
        rules.append(entry)
    if rules:
        out["rules"] = rules
    if data["state_rules"]:
        out["state_rules"] = data["state_rules"]
    return out


def policy_export(policy: RoutingPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {"name": policy.name}
    if policy.description:
        out["description"] = policy.description
    out["default"] = policy.is_default
    out["sticky_sessions"] = policy.sticky_sessions
    for key in ("tier_ladder", "thresholds", "agents", "router"):
        if getattr(policy, key):
            out[key] = getattr(policy, key)
    if policy.response_cache != CACHE_DETERMINISTIC:
        out["response_cache"] = policy.response_cache
    rules = []
    for rule in policy.rules.select_related("primary__provider").prefetch_related(
        "fallbacks__model__provider"
    ):
        entry: dict[str, Any] = {"task_type": rule.task_type}
        if rule.complexity:
            entry["complexity"] = rule.complexity
        if rule.primary:
            entry["primary"] = f"{rule.primary.provider.name}:{rule.primary.name}"
        fallbacks = [f"{f.model.provider.name}:{f.model.name}" for f in rule.fallbacks.all()]
        if fallbacks:
            entry["fallbacks"] = fallbacks
        if rule.tiers:
            entry["tiers"] = rule.tiers
        rules.append(entry)
    if rules:
        out["rules"] = rules
    states = [
        {"agent": s.agent, "state": s.state, "action": s.action}
        | ({"target": s.target} if s.target else {})
        for s in policy.state_rules.all()
    ]
    if states:
        out["state_rules"] = states
    return out
