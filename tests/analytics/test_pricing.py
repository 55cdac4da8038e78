from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from analytics.models import RequestLog
from analytics.pricing import (
    CostResult,
    CostState,
    Prices,
    baseline_cost_for,
    cost_for,
    cost_usd,
    max_cost_for,
    prices_ceiling,
    tokens_estimate,
)
from providers.adapters.types import Usage
from tests.conftest import ROOT

GPT_4O = Prices(Decimal("2.50"), Decimal("10.00"), Decimal("1.25"))
MINI = Prices(Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))
SONNET = Prices(Decimal("3.00"), Decimal("15.00"), Decimal("0.30"))


def test_reported_usage_costs_each_kind_of_token_at_its_own_price() -> None:
    result = cost_for(Usage(input=1234, output=567, cached=100), GPT_4O)

    # 1234 * 2.50 + 567 * 10.00 + 100 * 1.25 = 8880 USD per 1M tokens
    assert result == CostResult(
        cost_usd=Decimal("0.00888"),
        state=CostState.REPORTED,
        usage=Usage(input=1234, output=567, cached=100),
    )


def test_cost_is_exact_far_below_the_cent() -> None:
    cost = cost_usd(Usage(input=1, output=1, cached=1), MINI)

    # 0.15 + 0.60 + 0.075 = 0.825 per 1M tokens; a float would give 8.249999999999999e-07
    assert cost == Decimal("0.000000825")
    assert str(cost) == "8.25E-7"


def test_cost_is_exact_at_large_volumes() -> None:
    cost = cost_usd(Usage(input=123_456_789, output=987_654_321, cached=0), SONNET)

    assert cost == Decimal("15185.185182")


def test_cached_tokens_use_the_input_price_when_no_cached_price_is_set() -> None:
    prices = Prices(Decimal("2.50"), Decimal("10.00"), None)

    assert cost_usd(Usage(input=0, output=0, cached=1000), prices) == Decimal("0.0025")
    assert cost_usd(Usage(input=0, output=0, cached=1000), GPT_4O) == Decimal("0.00125")


def test_price_zero_is_genuinely_free_not_unknown() -> None:
    free = Prices(Decimal(0), Decimal(0), Decimal(0))

    result = cost_for(Usage(input=1000, output=500, cached=0), free)

    assert result.cost_usd == Decimal(0)
    assert result.state is CostState.REPORTED


def test_missing_price_gives_no_cost_and_unknown_price_state() -> None:
    prices = Prices(None, Decimal("10.00"))

    result = cost_for(Usage(input=10, output=10, cached=0), prices)

    assert result.cost_usd is None
    assert result.state is CostState.UNKNOWN_PRICE
    assert result.usage == Usage(input=10, output=10, cached=0)


def test_missing_cached_and_input_price_is_unknown_when_cached_tokens_were_used() -> None:
    prices = Prices(None, Decimal("10.00"), None)

    assert cost_for(Usage(input=0, output=5, cached=3), prices).state is CostState.UNKNOWN_PRICE


def test_a_price_is_only_needed_for_tokens_that_were_used() -> None:
    prices = Prices(Decimal("2.00"), None)

    result = cost_for(Usage(input=500, output=0, cached=0), prices)

    assert result.cost_usd == Decimal("0.001")
    assert result.state is CostState.REPORTED


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("   \n\t", 0),
        ("Hello, world!", 6),  # Hello(2) ,(1) world(2) !(1)
        ("The answer is 42.", 6),  # The(1) answer(2) is(1) 42(1) .(1)
        ("internationalization", 5),  # 20 letters / 4
        ("snake_case_name", 6),  # snake(2) _(1) case(1) _(1) name(1)
        ("12345678901", 3),  # 11 digits / 4, rounded up
        ("déjà vu", 2),
    ],
)
def test_local_token_estimate_is_deterministic(text: str, tokens: int) -> None:
    assert tokens_estimate(text) == tokens


def test_no_reported_usage_counts_tokens_locally_and_marks_the_cost_estimated() -> None:
    result = cost_for(None, GPT_4O, prompt="Hello, world!", completion="The answer is 42.")

    # 6 * 2.50 + 6 * 10.00 = 75 USD per 1M tokens
    assert result == CostResult(
        cost_usd=Decimal("0.000075"),
        state=CostState.ESTIMATED,
        usage=Usage(input=6, output=6, cached=0),
    )


def test_estimated_usage_on_an_unpriced_model_is_unknown_price() -> None:
    result = cost_for(None, Prices(None, None), prompt="Hi there", completion="Hello")  # 1+2, 2

    assert result == CostResult(
        cost_usd=None, state=CostState.UNKNOWN_PRICE, usage=Usage(input=3, output=2, cached=0)
    )


def test_baseline_cost_is_the_same_tokens_at_the_baseline_prices() -> None:
    usage = Usage(input=2000, output=1000, cached=0)
    local = cost_for(usage, Prices(Decimal(0), Decimal(0)))

    baseline = baseline_cost_for(local.usage, GPT_4O)

    assert local.cost_usd == Decimal(0)
    assert baseline == Decimal("0.015")  # 2000 * 2.50 + 1000 * 10.00 = 15000 per 1M
    assert baseline_cost_for(usage, None) is None
    assert baseline_cost_for(usage, Prices(None, Decimal(1))) is None


def test_max_cost_prices_every_prompt_token_as_input_and_the_full_output_allowance() -> None:
    ceiling = prices_ceiling([GPT_4O, MINI, SONNET])

    assert max_cost_for(1000, 500, MINI, ceiling) == Decimal("0.00045")


def test_max_cost_takes_the_most_expensive_known_price_for_an_unknown_one() -> None:
    ceiling = prices_ceiling([GPT_4O, MINI, SONNET, Prices(None, None)])
    unpriced_input = Prices(None, Decimal("0.60"))

    assert ceiling == Prices(Decimal("3.00"), Decimal("15.00"), None)
    # 1000 * 3.00 (dearest known input) + 500 * 0.60 = 3300 per 1M
    assert max_cost_for(1000, 500, unpriced_input, ceiling) == Decimal("0.0033")
    # 1000 * 3.00 + 500 * 15.00 = 10500 per 1M
    assert max_cost_for(1000, 500, Prices(None, None), ceiling) == Decimal("0.0105")


def test_max_cost_is_unbounded_when_no_price_is_known_anywhere() -> None:
    ceiling = prices_ceiling([Prices(None, None)])

    assert ceiling == Prices(None, None, None)
    assert max_cost_for(1000, 500, Prices(None, None), ceiling) is None
    assert max_cost_for(0, 0, Prices(None, None), ceiling) == Decimal(0)


def test_cost_states_match_the_request_log_choices() -> None:
    assert {state.value for state in CostState} == set(RequestLog.CostState.values)


def test_pricing_imports_no_django() -> None:
    code = (
        "import sys, analytics.pricing; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'time'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert "django" not in out.stdout
