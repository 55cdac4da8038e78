"""Budget amounts, rounded to the decimal places the budget columns store, on every database.

Every USD amount a budget holds or spends is rounded here before it is compared or stored, and
every sum the database forms of stored amounts is rounded there to the same places, so what is
compared against a limit is what is stored. Postgres adds `numeric` exactly, and rounding its
sums changes nothing. SQLite keeps these columns as binary floating point: there 0.1 + 0.2 - 0.3
is not 0, so a period whose holds were all given back could end a hair below zero (and fail its
not-negative check, leaving the hold held) and a request that exactly fills a budget could be
refused. Rounded to the stored places, a sum is the same number on both.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from django.db import models
from django.db.models.functions import Round

from routing.models import BudgetPeriod


def _stored_places() -> int:
    field = BudgetPeriod._meta.get_field("spent_usd")
    assert isinstance(field, models.DecimalField) and field.decimal_places is not None
    return int(field.decimal_places)


USD_PLACES = _stored_places()
USD_STEP = Decimal(1).scaleb(-USD_PLACES)


def usd_quantize(value: Decimal, *, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """`value` to the stored places: a hold rounds up (`ROUND_CEILING`, never less than the
    request may cost), a cost to the nearest (as the request log stores it)."""
    return value.quantize(USD_STEP, rounding=rounding)


def usd_rounded(expression: models.Expression | models.F) -> Round:
    """A sum of stored amounts, rounded by the database to the stored places."""
    return Round(expression, USD_PLACES)
