"""The learned router's cost-quality curve, read through the callable the
`ORCHESTRATOR_ROUTER_CURVE` setting names (routing's `router_curve_read` by default): the router
belongs to routing, and analytics never imports routing."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


def router_curve() -> dict[str, Any] | None:
    """{"version", "data_sha256", "points": [{"premium_share_pct", "quality_kept_pct",
    "threshold"}], "operating_point": {...} or None, ...}; None when no reader is set or the
    router cannot be read (a page shows that instead of failing)."""
    path = str(getattr(settings, "ORCHESTRATOR_ROUTER_CURVE", "") or "")
    if not path:
        return None
    try:
        read = import_string(path)
        curve = read()
    except (ImportError, OSError, ValueError) as error:
        logger.warning("router curve unavailable from %s: %s", path, error)
        return None
    return dict(curve) if curve else None
