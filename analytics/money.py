"""Money as the APIs show it.

Every amount of money in a JSON answer (the native API, the `/v1` extensions, `/metrics`, the
reports' JSON, the websockets) is a string in plain decimal notation with the decimal places the
amount carries: never a JSON number (a float would round it), never exponent form
(`str(Decimal("0E-12"))` is `"0E-12"`; here it is `"0.000000000000"`). `Decimal(text)` reads
it back exactly.
"""

from __future__ import annotations

from decimal import Decimal


def usd_json(amount: Decimal | None) -> str | None:
    """`amount` as a plain decimal string (`None` stays `None`: an unknown price, never 0)."""
    return None if amount is None else format(amount, "f")
