"""Shipped policy presets: YAML files in routing/presets/, loaded like any configuration file."""

from __future__ import annotations

from pathlib import Path

from routing.config_io import ApplyReport, config_apply
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
