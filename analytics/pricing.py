"""What a request cost, from its tokens and its model's prices. Pure: no ORM, no clock.

Prices are USD per 1M tokens. `Usage.input` counts the *uncached* input tokens and
`Usage.cached` the cached ones, so the three terms never overlap:

    cost = (input * input price + output * output price + cached * cached price) / 1M

All arithmetic is `Decimal` and exact (dividing by 1M only moves the decimal point); callers
round only where they store. An unknown price gives `cost_usd=None` with state
`unknown_price`, never 0; a price of 0 is a genuinely free model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from providers.adapters.types import Usage

TOKENS_PER_PRICE_UNIT = 1_000_000


class CostState(StrEnum):
    """Same values as `analytics.models.RequestLog.CostState` (a test keeps them equal)."""

    REPORTED = "reported"
    ESTIMATED = "estimated"
    UNKNOWN_PRICE = "unknown_price"
    NONE = "none"


@dataclass(frozen=True)
class Prices:
    """USD per 1M tokens; `None` is an unknown price. A missing cached price means cached
    input is billed like ordinary input."""

    input_per_mtok_usd: Decimal | None
    output_per_mtok_usd: Decimal | None
    cached_per_mtok_usd: Decimal | None = None

    @property
    def effective_cached_per_mtok_usd(self) -> Decimal | None:
        if self.cached_per_mtok_usd is not None:
            return self.cached_per_mtok_usd
        return self.input_per_mtok_usd


@dataclass(frozen=True)
class CostResult:
    cost_usd: Decimal | None
    state: CostState
    usage: Usage
    """The tokens the cost was computed from: the provider's, or the local estimate."""


# A word run, a digit run, or one other non-space character. Runs are split every
# CHARS_PER_TOKEN characters, which approximates BPE tokenizers on English prose and code
# (about 4 characters per token) while never counting fewer tokens than visible symbols.
_TOKEN_PIECE = re.compile(r"[^\W\d_]+|\d+|\S")
CHARS_PER_TOKEN = 4


# A regex call holds the GIL until it returns, so a worker thread counting a large text in one
# call stalls the event loop as long as the call runs. Large texts are counted in slices of
# about this many characters, cut at whitespace (which no piece spans): the same count.
SLICE_CHARS = 64 * 1024
_SPACE = re.compile(r"\s")


def tokens_estimate(text: str) -> int:
    """Deterministic local token count for providers that report no usage.

    Each run of letters or digits counts ceil(len / 4) tokens; every other non-space
    character (punctuation, symbols, `_`) counts one. Whitespace is free.
    """
    total, start, size = 0, 0, len(text)
    while start < size:
        end = size
        if size - start > SLICE_CHARS:
            space = _SPACE.search(text, start + SLICE_CHARS)
            end = space.end() if space else size
        pieces = _TOKEN_PIECE.findall(text, start, end)
        total += sum(math.ceil(len(piece) / CHARS_PER_TOKEN) for piece in pieces)
        start = end
    return total


def usage_estimate(*, prompt: str, completion: str) -> Usage:
    return Usage(input=tokens_estimate(prompt), output=tokens_estimate(completion), cached=0)


def cost_usd(usage: Usage, prices: Prices) -> Decimal | None:
    """Exact cost of `usage` at `prices`, or None when a price needed for a non-zero token
    count is unknown. Also the baseline cost, given the baseline model's prices."""
    terms = (
        (usage.input, prices.input_per_mtok_usd),
        (usage.output, prices.output_per_mtok_usd),
        (usage.cached, prices.effective_cached_per_mtok_usd),
    )
    total = Decimal(0)
    for tokens, price in terms:
        if tokens == 0:
            continue
        if price is None:
            return None
        total += Decimal(tokens) * price
    return total.scaleb(-6)


def cost_for(
    usage: Usage | None, prices: Prices, *, prompt: str = "", completion: str = ""
) -> CostResult:
    """Cost of one request. `usage=None` means the provider reported none: the tokens of
    `prompt` and `completion` are then counted locally and the state is `estimated`."""
    if usage is None:
        counted = usage_estimate(prompt=prompt, completion=completion)
        state = CostState.ESTIMATED
    else:
        counted = usage
        state = CostState.REPORTED
    cost = cost_usd(counted, prices)
    if cost is None:
        return CostResult(cost_usd=None, state=CostState.UNKNOWN_PRICE, usage=counted)
    return CostResult(cost_usd=cost, state=state, usage=counted)


def baseline_cost_for(usage: Usage, baseline: Prices | None) -> Decimal | None:
    """The same tokens at the baseline model's prices; None without a (fully priced) baseline."""
    if baseline is None:
        return None
    return cost_usd(usage, baseline)


def prices_ceiling(known: Iterable[Prices]) -> Prices:
    """The highest known price of each kind across `known`; `None` where none is known."""
    listed = list(known)
    inputs = [p.input_per_mtok_usd for p in listed if p.input_per_mtok_usd is not None]
    outputs = [p.output_per_mtok_usd for p in listed if p.output_per_mtok_usd is not None]
    return Prices(
        input_per_mtok_usd=max(inputs, default=None),
        output_per_mtok_usd=max(outputs, default=None),
    )


def max_cost_for(
    prompt_tokens: int, max_output_tokens: int, prices: Prices, fallback_prices: Prices
) -> Decimal | None:
    """Upper bound of a request's cost, for reserving budget before it runs.

    Every prompt token is priced as uncached input (the dearest way to bill it) and the
    answer as `max_output_tokens` long. A price the model lacks is taken from
    `fallback_prices` — meant to be `prices_ceiling` of every known model — so an unpriced
    model reserves as much as the most expensive known one rather than nothing. Returns None
    only when no price at all is known for a needed kind: the cost then cannot be bounded.
    """
    bounded = Prices(
        input_per_mtok_usd=_first_known(
            prices.input_per_mtok_usd, fallback_prices.input_per_mtok_usd
        ),
        output_per_mtok_usd=_first_known(
            prices.output_per_mtok_usd, fallback_prices.output_per_mtok_usd
        ),
    )
    return cost_usd(Usage(input=prompt_tokens, output=max_output_tokens, cached=0), bounded)


def _first_known(price: Decimal | None, fallback: Decimal | None) -> Decimal | None:
    return price if price is not None else fallback
