"""Configuration as code: providers, models, prices, policies and budgets to and from YAML.

`config_apply` validates the whole file first and reports every problem with its line; it then
applies everything in one transaction, so a bad file changes nothing. Applying the same file twice
changes nothing the second time. Credentials never leave the database: only the name of the
environment variable that holds a key is exported. This module reads, applies and writes the
file as a whole; each part is in `providers`, `policies` and `budgets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from django.db import transaction

from providers.models import Provider
from routing.config.base import (
    FORMAT_VERSION,
    ApplyFailed,
    ApplyReport,
    ConfigFileError,
    Located,
    Reader,
)
from routing.config.budgets import budget_export, budget_parse, budgets_apply, budgets_check
from routing.config.cache import routing_config_changed
from routing.config.policies import policies_apply, policies_check, policy_export, policy_parse
from routing.config.providers import (
    provider_export,
    provider_parse,
    providers_apply,
    providers_check,
)
from routing.models import Budget, RoutingPolicy


@dataclass
class _Parsed:
    providers: list[Located]
    policies: list[Located]
    budgets: list[Located]


def _parse(text: str) -> _Parsed:
    reader = Reader()
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
    providers = [
        provider_parse(reader, n) for n in reader.sequence(top.get("providers"), "providers")
    ]
    policies = [policy_parse(reader, n) for n in reader.sequence(top.get("policies"), "policies")]
    budgets = [budget_parse(reader, n) for n in reader.sequence(top.get("budgets"), "budgets")]
    providers_check(reader, [p for p in providers if p])
    policies_check(reader, [p for p in policies if p])
    budgets_check(reader, [b for b in budgets if b])
    if reader.errors:
        raise ConfigFileError(reader.errors)
    return _Parsed(
        [p for p in providers if p], [p for p in policies if p], [b for b in budgets if b]
    )


def config_apply(*, text: str, dry_run: bool = False) -> ApplyReport:
    """Validate and apply a configuration file; raises ConfigFileError listing every problem."""
    parsed = _parse(text)
    report = ApplyReport()
    try:
        with transaction.atomic():
            models_by_ref = providers_apply(parsed.providers, report)
            policies_apply(parsed.policies, models_by_ref, report)
            budgets_apply(parsed.budgets, models_by_ref, report)
            if dry_run:
                transaction.set_rollback(True)
            elif report.created or report.updated:
                # Some of its writes send no signal (queryset.update, bulk_create): every
                # process is told here, once the whole file is committed.
                transaction.on_commit(routing_config_changed)
    except ApplyFailed as failed:
        raise ConfigFileError(failed.errors) from None
    return report


def config_export(*, include_providers: bool = True) -> str:
    data: dict[str, Any] = {"version": FORMAT_VERSION}
    if include_providers:
        data["providers"] = [
            provider_export(p) for p in Provider.objects.prefetch_related("models").order_by("name")
        ]
    data["policies"] = [policy_export(p) for p in RoutingPolicy.objects.order_by("name")]
    budgets = [budget_export(b) for b in Budget.objects.select_related("user", "model__provider")]
    if budgets:
        data["budgets"] = budgets
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
