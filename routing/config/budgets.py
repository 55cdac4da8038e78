"""The budgets in a configuration file: read (scope and its target, period, limit, alert share,
hard stop, per-request ceiling), checked (no budget twice; users and models must exist when the
file is applied), applied (a new limit holds in the open period at once, through
`routing.budgets.budget_limit_apply`) and exported.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import yaml
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug

from providers.models import LLMModel
from routing.budgets import budget_limit_apply
from routing.config.base import (
    ApplyFailed,
    ApplyReport,
    Located,
    Reader,
    node_line,
    price_text,
    row_save,
    row_sync,
)
from routing.models import Budget

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


def budget_parse(r: Reader, node: yaml.Node) -> Located | None:
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
    return Located(node, data)


def budgets_check(r: Reader, budgets: list[Located]) -> None:
    seen: set[str] = set()
    for located in budgets:
        if located.data["name"] in seen:
            r.error(located.node, f"budget {located.data['name']!r} is listed twice")
        seen.add(located.data["name"])


def budgets_apply(budgets: list[Located], models: dict[str, LLMModel], report: ApplyReport) -> None:
    usernames = {b.data["user"] for b in budgets if b.data["scope"] == "user"}
    users = {u.get_username(): u for u in get_user_model().objects.filter(username__in=usernames)}
    errors = []
    for located in budgets:
        data = located.data
        if data["scope"] == "user" and data["user"] not in users:
            errors.append(f"{node_line(data['target_node'])}: unknown user {data['user']!r}")
        if data["scope"] == "model" and data["model"] not in models:
            errors.append(
                f"{node_line(data['target_node'])}: unknown model {data['model']!r} "
                "(not in this file nor the database)"
            )
    if errors:
        raise ApplyFailed(errors)
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
            row_save(budget, located.node, label)
            report.created.append(label)
        elif row_sync(budget, values):
            row_save(budget, located.node, label)
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
    out["limit_usd"] = price_text(budget.limit_usd)
    out["soft_alert_share"] = price_text(budget.soft_alert_share)
    out["hard_stop"] = budget.hard_stop
    out["max_cost_per_request_usd"] = price_text(budget.max_cost_per_request_usd)
    out["enabled"] = budget.enabled
    return out
