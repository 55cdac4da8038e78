"""Shipped policy presets and the default policy: YAML files in routing/config/presets/, loaded
like any configuration file (`manage.py config_import --preset NAME`). `default_policy_ensure`
loads the balanced preset when no policy exists yet (`bootstrap_local`, so `make run` routes by
a real policy rather than the built-in one of `routing.config.cache`).
"""

from __future__ import annotations

from pathlib import Path

from routing.config.base import ApplyReport
from routing.config.document import config_apply
from routing.models import RoutingPolicy

PRESET_DIR = Path(__file__).resolve().parent / "presets"
PRESETS = ("balanced", "offline-first", "cost-first", "quality-first")


def preset_text(name: str) -> str:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    return (PRESET_DIR / f"{name}.yaml").read_text()


def preset_load(*, name: str) -> ApplyReport:
    return config_apply(text=preset_text(name))


def default_policy_ensure() -> bool:
    """Load the balanced preset when no policy exists yet; True when it was loaded."""
    if RoutingPolicy.objects.exists():
        return False
    preset_load(name="balanced")
    return True
