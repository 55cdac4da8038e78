"""Moved to `routing.budgets.amounts`; kept so that imports of this module keep working."""

from routing.budgets.amounts import USD_PLACES, USD_STEP, usd_quantize, usd_rounded

__all__ = ["USD_PLACES", "USD_STEP", "usd_quantize", "usd_rounded"]
