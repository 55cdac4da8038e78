"""Configuration as code: providers, models, prices, policies and budgets to and from YAML.

`config_apply` validates the whole file first and reports every problem with its line; it then
applies everything in one transaction, so a bad file changes nothing. Applying the same file twice
changes nothing the second time. Credentials never leave the database: only the name of the
environment variable that holds a key is exported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction

from providers.models import LLMModel, Provider
from routing import policy_rules
from routing.budgets import budget_limit_apply
from routing.config_cache import routing_config_changed
from routing.guards.response_cache import CACHE_DETERMINISTIC, CACHE_MODES
from routing.models import Budget, RoutingPolicy, RoutingRule, RuleFallback, StateRule
from routing.taxonomy import COMPLEXITIES, TASK_TYPES, TIERS

FORMAT_VERSION = 1
PRICE_KEYS = {
    "input": "input_price_per_mtok_usd",
    "output": "output_price_per_mtok_usd",
    "cached_input": "cached_input_price_per_mtok_usd",
}


class ConfigFileError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


class _Reader:
    """Walks YAML nodes, turning them into values and every problem into 'line N: ...'."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._loader = yaml.SafeLoader("")

    def error(self, node: yaml.Node, message: str) -> None:
        self.errors.append(f"line {node.start_mark.line + 1}: {message}")

    def mapping(
        self, node: yaml.Node, where: str, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{where} must be a mapping")
            return None
        items: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in items:
                self.error(key_node, f"{where}: {key!r} given twice")
            elif key not in required and key not in optional:
                allowed = ", ".join((*required, *optional))
                self.error(key_node, f"{where}: unknown key {key!r}; expected one of {allowed}")
            items[key] = value_node
        for key in required:
            if key not in items:
                self.error(node, f"{where}: {key!r} is required")
        return items

    def sequence(self, node: yaml.Node | None, where: str) -> list[yaml.Node]:
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{where} must be a list")
            return []
        return list(node.value)

    def value(self, node: yaml.Node) -> Any:
        return self._loader.construct_object(node, deep=True)

    def typed(
        self, node: yaml.Node | None, where: str, kind: type | tuple[type, ...], default: Any = None
    ) -> Any:
        if node is None:
            return default
        value = self.value(node)
        if isinstance(value, bool) and kind is not bool:
            value = None
        if not isinstance(value, kind):
            self.error(node, f"{where} must be {_kind_name(kind)}; got {node.value!r}")
            return default
        return value

    def choice(
        self,
        node: yaml.Node | None,
        where: str,
        choices: tuple[str, ...],
        default: str | None = None,
    ) -> Any:
        value = self.typed(node, where, str, default)
        if node is not None and isinstance(value, str) and value not in choices:
            self.error(node, f"{where}: {value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def price(self, node: yaml.Node | None, where: str, *, nullable: bool = True) -> Decimal | None:
        expected = "a number or null" if nullable else "a number"
        if node is None:
            return None
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            if not nullable:
                self.error(node, f"{where} must be {expected}")
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, f"{where} must be {expected}")
            return None
        try:
            # From the text as written, so 0.1 stays exactly 0.1.
            price = Decimal(str(node.value))
        except InvalidOperation:
            self.error(node, f"{where} must be {expected}; got {node.value!r}")
            return None
        if price < 0 or not price.is_finite():
            self.error(node, f"{where} must be >= 0")
            return None
        return price

    def json_field(
        self, node: yaml.Node | None, where: str, check: Callable[[Any], list[str]], default: Any
    ) -> Any:
        if node is None:
            return default
        value = self.value(node)
        for message in check(value):
            self.error(node, f"{where}: {message}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        bool: "true or false",
        list: "a list",
        dict: "a mapping",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


@dataclass
class _Located:
    node: yaml.Node
    data: dict[str, Any]


@dataclass
class _Parsed:
    providers: list[_Located]
    policies: list[_Located]
    budgets: list[_Located]


def _parse(text: str) -> _Parsed:
    reader = _Reader()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = f"line {mark.line + 1}: " if mark else ""
        raise ConfigFileError([f"{line}invalid YAML: {error.problem}"]) from error
    if root is None:
        raise ConfigFileError(["line 1: the file is empty"])
    top = reader.mapping(root, "the file", ("version",), ("providers", "policies", "budgets"))
    if top is None:
        raise ConfigFileError(reader.errors)
    if "version" in top and reader.value(top["version"]) != FORMAT_VERSION:
        reader.error(top["version"], f"version must be {FORMAT_VERSION}")
    providers = [_provider(reader, n) for n in reader.sequence(top.get("providers"), "providers")]
    policies = [_policy(reader, n) for n in reader.sequence(top.get("policies"), "policies")]
    budgets = [_budget(reader, n) for n in reader.sequence(top.get("budgets"), "budgets")]
    _cross_checks(reader, [p for p in providers if p], [p for p in policies if p])
    _budget_cross_checks(reader, [b for b in budgets if b])
    if reader.errors:
        raise ConfigFileError(reader.errors)
    return _Parsed(
        [p for p in providers if p], [p for p in policies if p], [b for b in budgets if b]
    )


def _provider(r: _Reader, node: yaml.Node) -> _Located | None:
    items = r.mapping(
        node,
        "provider",
        ("name", "kind", "base_url", "locality"),
        ("credential_env", "enabled", "models"),
    )
    if items is None:
        return None
    name = r.typed(items.get("name"), "provider name", str, "")
    where = f"provider {name!r}"
    data = {
        "name": name,
        "kind": r.choice(items.get("kind"), f"{where} kind", tuple(Provider.Kind.values)),
        "base_url": r.typed(items.get("base_url"), f"{where} base_url", str),
        "locality": r.choice(
            items.get("locality"), f"{where} locality", tuple(Provider.Locality.values)
        ),
        "credential_env": r.typed(items.get("credential_env"), f"{where} credential_env", str, ""),
        "enabled": r.typed(items.get("enabled"), f"{where} enabled", bool, True),
        "models": [
            m
            for m in (
                _model(r, n, name) for n in r.sequence(items.get("models"), f"{where} models")
            )
            if m
        ],
    }
    return _Located(node, data)


def _model(r: _Reader, node: yaml.Node, provider: str) -> _Located | None:
    items = r.mapping(
        node,
        "model",
        ("name", "tier"),
        (
            "display_name",
            "context_window",
            "max_output_tokens",
            "prices",
            "task_strengths",
            "enabled",
            "is_baseline",
        ),
    )
    if items is None:
        return None
    name = r.typed(items.get("name"), "model name", str, "")
    where = f"model {provider}:{name}"
    data: dict[str, Any] = {
        "name": name,
        "display_name": r.typed(items.get("display_name"), f"{where} display_name", str, ""),
        "tier": r.choice(items.get("tier"), f"{where} tier", TIERS),
        "context_window": r.typed(
            items.get("context_window"), f"{where} context_window", int, 8192
        ),
        "max_output_tokens": r.typed(
            items.get("max_output_tokens"), f"{where} max_output_tokens", int, 4096
        ),
        "enabled": r.typed(items.get("enabled"), f"{where} enabled", bool, True),
        "is_baseline": r.typed(items.get("is_baseline"), f"{where} is_baseline", bool, False),
        "task_strengths": [],
    }
    for key in ("context_window", "max_output_tokens"):
        if data[key] < 1 and key in items:
            r.error(items[key], f"{where} {key} must be >= 1")
    for strength_node in r.sequence(items.get("task_strengths"), f"{where} task_strengths"):
        strength = r.choice(strength_node, f"{where} task_strengths", TASK_TYPES)
        if strength:
            data["task_strengths"].append(strength)
    prices: dict[str, yaml.Node] = {}
    if "prices" in items:
        prices = r.mapping(items["prices"], f"{where} prices", (), tuple(PRICE_KEYS)) or {}
    for key, field_name in PRICE_KEYS.items():
        data[field_name] = r.price(prices.get(key), f"{where} price {key}")
    return _Located(node, data)


def _policy(r: _Reader, node: yaml.Node) -> _Located | None:
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
            _Located(
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
    seen_states: set[tuple[str, str]] = set()
    for state_node in r.sequence(items.get("state_rules"), f"{where} state_rules"):
        rule = r.mapping(state_node, f"{where} state rule", ("agent", "state", "action"), ())
        if rule is None:
            continue
        agent = r.typed(rule.get("agent"), f"{where} state rule agent", str, "")
        state = r.typed(rule.get("state"), f"{where} state rule state", str, "")
        action = r.choice(
            rule.get("action"), f"{where} state rule action", tuple(StateRule.Action.values)
        )
        for message in policy_rules.state_errors(agent, state):
            r.error(rule.get("state", state_node), f"{where}: {message}")
        if (agent, state) in seen_states:
            r.error(state_node, f"{where}: a second state rule for {agent}={state}")
        seen_states.add((agent, state))
        data["state_rules"].append({"agent": agent, "state": state, "action": action})
    return _Located(node, data)


def _cross_checks(r: _Reader, providers: list[_Located], policies: list[_Located]) -> None:
    names: set[str] = set()
    baselines = []
    for provider in providers:
        if provider.data["name"] in names:
            r.error(provider.node, f"provider {provider.data['name']!r} is listed twice")
        names.add(provider.data["name"])
        seen: set[str] = set()
        for model in provider.data["models"]:
            if model.data["name"] in seen:
                r.error(
                    model.node,
                    f"model {provider.data['name']}:{model.data['name']} is listed twice",
                )
            seen.add(model.data["name"])
            if model.data["is_baseline"]:
                baselines.append(model)
    for extra in baselines[1:]:
        r.error(extra.node, "only one model can be the baseline")
    defaults = [p for p in policies if p.data["is_default"]]
    for extra in defaults[1:]:
        r.error(extra.node, "only one policy can be the default")
    seen_policies: set[str] = set()
    for policy in policies:
        if policy.data["name"] in seen_policies:
            r.error(policy.node, f"policy {policy.data['name']!r} is listed twice")
        seen_policies.add(policy.data["name"])


def config_apply(*, text: str, dry_run: bool = False) -> ApplyReport:
    """Validate and apply a configuration file; raises ConfigFileError listing every problem."""
    parsed = _parse(text)
    report = ApplyReport()
    try:
        with transaction.atomic():
            models_by_ref = _apply_providers(parsed.providers, report)
            _apply_policies(parsed.policies, models_by_ref, report)
            _apply_budgets(parsed.budgets, models_by_ref, report)
            if dry_run:
                transaction.set_rollback(True)
            elif report.created or report.updated:
                # Some of its writes send no signal (queryset.update, bulk_create): every
                # process is told here, once the whole file is committed.
                transaction.on_commit(routing_config_changed)
    except _ApplyFailed as failed:
        raise ConfigFileError(failed.errors) from None
    return report


class _ApplyFailed(Exception):
    def __init__(self, errors: list[str]) -> None:
        self.errors = errors


def _line(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}"


def _save(instance: Any, node: yaml.Node, label: str) -> None:
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())
        raise _ApplyFailed([f"{_line(node)}: {label}: {problems}"]) from error
    instance.save()


def _sync(instance: Any, values: dict[str, Any]) -> bool:
    changed = False
    for key, value in values.items():
        if getattr(instance, key) != value:
            setattr(instance, key, value)
            changed = True
    return changed


def _apply_providers(providers: list[_Located], report: ApplyReport) -> dict[str, LLMModel]:
    if any(m.data["is_baseline"] for p in providers for m in p.data["models"]):
        names = {
            (p.data["name"], m.data["name"])
            for p in providers
            for m in p.data["models"]
            if m.data["is_baseline"]
        }
        for other in LLMModel.objects.filter(is_baseline=True).select_related("provider"):
            if (other.provider.name, other.name) not in names:
                other.is_baseline = False
                other.save(update_fields=["is_baseline"])
    for located in providers:
        data = located.data
        fields = {k: data[k] for k in ("kind", "base_url", "locality", "credential_env", "enabled")}
        provider = Provider.objects.filter(name=data["name"]).first()
        label = f"provider {data['name']}"
        if provider is not None and provider.enabled != fields["enabled"]:
            # A configuration that turns it on or off is an explicit choice, as in the admin.
            fields["follows_credential_env"] = False
        if provider is None:
            provider = Provider(name=data["name"], **fields)
            _save(provider, located.node, label)
            report.created.append(label)
        elif _sync(provider, fields):
            _save(provider, located.node, label)
            report.updated.append(label)
        else:
            report.unchanged.append(label)
        for model_located in data["models"]:
            values = {k: v for k, v in model_located.data.items() if k != "name"}
            model = LLMModel.objects.filter(
                provider=provider, name=model_located.data["name"]
            ).first()
            label = f"model {provider.name}:{model_located.data['name']}"
            if model is None:
                model = LLMModel(provider=provider, name=model_located.data["name"], **values)
                _save(model, model_located.node, label)
                report.created.append(label)
            elif _sync(model, values):
                _save(model, model_located.node, label)
                report.updated.append(label)
            else:
                report.unchanged.append(label)
    return {f"{m.provider.name}:{m.name}": m for m in LLMModel.objects.select_related("provider")}


def _apply_policies(
    policies: list[_Located], models: dict[str, LLMModel], report: ApplyReport
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
                        f"{_line(node)}: unknown model {ref!r} (not in this file nor the database)"
                    )
    if errors:
        raise _ApplyFailed(errors)
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
            _sync(policy, fields)
            policy.rules.all().delete()
            policy.state_rules.all().delete()
            report.updated.append(label)
        _save(policy, located.node, label)
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
            _save(row, rule_located.node, f"{label} rule")
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


def _price_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return text


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
        {"agent": s.agent, "state": s.state, "action": s.action} for s in policy.state_rules.all()
    ]
    if states:
        out["state_rules"] = states
    return out


def config_export(*, include_providers: bool = True) -> str:
    data: dict[str, Any] = {"version": FORMAT_VERSION}
    if include_providers:
        providers = []
        for provider in Provider.objects.prefetch_related("models").order_by("name"):
            entry: dict[str, Any] = {
                "name": provider.name,
                "kind": provider.kind,
                "base_url": provider.base_url,
                "locality": provider.locality,
            }
            if provider.credential_env:
                entry["credential_env"] = provider.credential_env
            entry["enabled"] = provider.enabled
            models = []
            for model in sorted(provider.models.all(), key=lambda m: m.name):
                item: dict[str, Any] = {"name": model.name, "tier": model.tier}
                if model.display_name:
                    item["display_name"] = model.display_name
                item["context_window"] = model.context_window
                item["max_output_tokens"] = model.max_output_tokens
                item["prices"] = {
                    key: _price_text(getattr(model, f)) for key, f in PRICE_KEYS.items()
                }
                if model.task_strengths:
                    item["task_strengths"] = list(model.task_strengths)
                item["enabled"] = model.enabled
                if model.is_baseline:
                    item["is_baseline"] = True
                models.append(item)
            if models:
                entry["models"] = models
            providers.append(entry)
        data["providers"] = providers
    data["policies"] = [policy_export(p) for p in RoutingPolicy.objects.order_by("name")]
    budgets = [budget_export(b) for b in Budget.objects.select_related("user", "model__provider")]
    if budgets:
        data["budgets"] = budgets
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


# --- budgets ------------------------------------------------------------------------------

# The key that names a budget's target, for each scope; a global budget names none.
BUDGET_TARGETS = {"api_key": "api_key_id", "user": "user", "model": "model"}
BUDGET_FIELDS = (
    "scope",
    "period",
    "limit_usd",
    "soft_alert_share",
    "hard_stop",
    "max_cost_per_request_usd",
    "enabled",
)


def _budget(r: _Reader, node: yaml.Node) -> _Located | None:
    items = r.mapping(
        node,
        "budget",
        ("name", "limit_usd"),
        (
            "scope",
            *BUDGET_TARGETS.values(),
            "period",
            "soft_alert_share",
            "hard_stop",
            "max_cost_per_request_usd",
            "enabled",
        ),
    )
    if items is None:
        return None
    name = r.typed(items.get("name"), "budget name", str, "")
    where = f"budget {name!r}"
    if name:
        try:
            validate_slug(name)
        except ValidationError:
            r.error(items["name"], f"{where}: a name is letters, digits, '-' and '_' only")
    scope = r.choice(items.get("scope"), f"{where} scope", tuple(Budget.Scope.values), "global")
    data: dict[str, Any] = {
        "name": name,
        "scope": scope,
        "period": r.choice(
            items.get("period"), f"{where} period", tuple(Budget.Period.values), "month"
        ),
        "limit_usd": r.price(items.get("limit_usd"), f"{where} limit_usd", nullable=False),
        "soft_alert_share": Decimal("0.8"),
        "hard_stop": r.typed(items.get("hard_stop"), f"{where} hard_stop", bool, True),
        "max_cost_per_request_usd": r.price(
            items.get("max_cost_per_request_usd"), f"{where} max_cost_per_request_usd"
        ),
        "enabled": r.typed(items.get("enabled"), f"{where} enabled", bool, True),
        "api_key_id": r.typed(items.get("api_key_id"), f"{where} api_key_id", int),
        "user": r.typed(items.get("user"), f"{where} user", str),
        "model": r.typed(items.get("model"), f"{where} model", str),
    }
    share = r.price(items.get("soft_alert_share"), f"{where} soft_alert_share", nullable=False)
    if share is not None:
        if share > 1 or share.as_tuple().exponent < -3:  # type: ignore[operator]
            r.error(
                items["soft_alert_share"],
                f"{where} soft_alert_share must be between 0 and 1 with at most 3 decimals",
            )
        data["soft_alert_share"] = share
    wanted = BUDGET_TARGETS.get(scope)
    # Unknown users and models are found only when applying; their errors point here.
    data["target_node"] = items.get(wanted) if wanted else None
    for key in BUDGET_TARGETS.values():
        if key == wanted and key not in items:
            r.error(node, f"{where}: a {scope} budget needs {key!r}")
        elif key != wanted and key in items:
            r.error(items[key], f"{where}: {key!r} does not belong to a {scope} budget")
    if isinstance(data["model"], str) and ":" not in data["model"]:
        r.error(items["model"], f"{where}: model {data['model']!r} must be written provider:model")
    return _Located(node, data)


def _budget_cross_checks(r: _Reader, budgets: list[_Located]) -> None:
    seen: set[str] = set()
    for located in budgets:
        if located.data["name"] in seen:
            r.error(located.node, f"budget {located.data['name']!r} is listed twice")
        seen.add(located.data["name"])


def _apply_budgets(
    budgets: list[_Located], models: dict[str, LLMModel], report: ApplyReport
) -> None:
    usernames = {b.data["user"] for b in budgets if b.data["scope"] == "user"}
    users = {u.get_username(): u for u in get_user_model().objects.filter(username__in=usernames)}
    errors = []
    for located in budgets:
        data = located.data
        if data["scope"] == "user" and data["user"] not in users:
            errors.append(f"{_line(data['target_node'])}: unknown user {data['user']!r}")
        if data["scope"] == "model" and data["model"] not in models:
            errors.append(
                f"{_line(data['target_node'])}: unknown model {data['model']!r} "
                "(not in this file nor the database)"
            )
    if errors:
        raise _ApplyFailed(errors)
    for located in budgets:
        data = located.data
        values = {k: data[k] for k in BUDGET_FIELDS}
        values["api_key_id"] = data["api_key_id"] if data["scope"] == "api_key" else None
        values["user"] = users[data["user"]] if data["scope"] == "user" else None
        values["model"] = models[data["model"]] if data["scope"] == "model" else None
        label = f"budget {data['name']}"
        budget = Budget.objects.filter(name=data["name"]).first()
        if budget is None:
            budget = Budget(name=data["name"], **values)
            _save(budget, located.node, label)
            report.created.append(label)
        elif _sync(budget, values):
            _save(budget, located.node, label)
            # A new limit holds in the open period at once; a new period length starts when
            # the open period ends (its row keeps its bounds).
            budget_limit_apply(budget=budget)
            report.updated.append(label)
        else:
            report.unchanged.append(label)


def budget_export(budget: Budget) -> dict[str, Any]:
    out: dict[str, Any] = {"name": budget.name, "scope": budget.scope}
    if budget.scope == Budget.Scope.API_KEY:
        out["api_key_id"] = budget.api_key_id
    elif budget.scope == Budget.Scope.USER and budget.user is not None:
        out["user"] = budget.user.get_username()
    elif budget.scope == Budget.Scope.MODEL and budget.model is not None:
        out["model"] = f"{budget.model.provider.name}:{budget.model.name}"
    out["period"] = budget.period
    out["limit_usd"] = _price_text(budget.limit_usd)
    out["soft_alert_share"] = _price_text(budget.soft_alert_share)
    out["hard_stop"] = budget.hard_stop
    out["max_cost_per_request_usd"] = _price_text(budget.max_cost_per_request_usd)
    out["enabled"] = budget.enabled
    return out
