"""Prices: each kind of token at its own price, tiers, and reservations."""

from __future__ import annotations

import pytest

from gateway import Usage
from gateway.config.sections import ModelPrice
from gateway.spend.prices import Price, from_config


def test_cached_and_reasoning_tokens_are_priced_apart():
    price = from_config(ModelPrice(input=1.0, output=4.0, cached_input=0.1, reasoning=8.0))
    usage = Usage(
        input_tokens=1000,
        output_tokens=500,
        cache_read_tokens=600,
        details={"completion_tokens_details": {"reasoning_tokens": 200}},
    )
    assert price.cost(usage) == pytest.approx((400 * 1 + 600 * 0.1 + 300 * 4 + 200 * 8) / 1e6)


def test_tiers_follow_the_prompt_size_and_estimates_take_the_dearest_output():
    price = Price(input=(1.0, ((1000, 2.0),)), output=3.0, reasoning=5.0, request=0.5)
    assert price.cost(Usage(input_tokens=1000)) == pytest.approx(1000 / 1e6 + 0.5)
    assert price.cost(Usage(input_tokens=2000)) == pytest.approx(4000 / 1e6 + 0.5)
    assert price.estimate(100, 10) == pytest.approx((100 * 1 + 10 * 5) / 1e6 + 0.5)


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=1234, output_tokens=567),
        Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=600),
        Usage(input_tokens=10, output_tokens=50, cache_write_tokens=5),
        Usage(
            input_tokens=1000,
            output_tokens=500,
            details={"completion_tokens_details": {"reasoning_tokens": 200}},
        ),
        Usage(input_tokens=7, output_tokens=3, details={"prompt_tokens_details": {}}),
    ],
)
def test_flat_prices_cost_what_the_same_prices_as_tiers_cost(usage):
    """Flat prices take a shorter way (a couple of multiplications): to the same figure."""
    rates = {"input": 1.5, "output": 4.0, "cached_input": 0.1, "cache_write": 2.0, "reasoning": 8.0}
    flat = Price(**rates, request=0.25)
    tiered = Price(**{k: (v, ()) for k, v in rates.items()}, request=0.25)
    assert flat.flat is not None and tiered.flat is None
    assert flat.cost(usage) == tiered.cost(usage)
    assert flat.estimate(usage.input_tokens, 4096) == tiered.estimate(usage.input_tokens, 4096)
