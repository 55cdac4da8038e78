"""The routing configuration: `document` (with `base`, `providers`, `policies` and `budgets`)
reads, applies and writes it as a YAML file (`manage.py config_import` / `config_export`);
`cache` holds what the engine reads, the registry and every policy frozen in process memory per
configuration version; `presets` are the shipped policy files and the default policy loaded when
there is none. The names below (the file API, formerly `routing.config`) load on first use:
the decision path imports `cache` alone, without the YAML code and the budget tables it applies.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routing.config.base import FORMAT_VERSION, ApplyReport, ConfigFileError
    from routing.config.budgets import BUDGET_FIELDS, BUDGET_TARGETS, budget_export
    from routing.config.document import config_apply, config_export
    from routing.config.policies import policy_export
    from routing.config.providers import PRICE_KEYS

__all__ = [
    "BUDGET_FIELDS",
    "BUDGET_TARGETS",
    "FORMAT_VERSION",
    "PRICE_KEYS",
    "ApplyReport",
    "ConfigFileError",
    "budget_export",
    "config_apply",
    "config_export",
    "policy_export",
]

_HOMES = {
    "BUDGET_FIELDS": "budgets",
    "BUDGET_TARGETS": "budgets",
    "FORMAT_VERSION": "base",
    "PRICE_KEYS": "providers",
    "ApplyReport": "base",
    "ConfigFileError": "base",
    "budget_export": "budgets",
    "config_apply": "document",
    "config_export": "document",
    "policy_export": "policies",
}


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(import_module(f"{__name__}.{home}"), name)
        globals()[name] = value
        return value
