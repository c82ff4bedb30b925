"""What a request costs: prices per model, from ``[models.<name>] price`` or from genai-prices.

genai-prices (the maintained price list of the Pydantic team, ``pip install 'hookgate[prices]'``)
knows the public models by their upstream name; a price it gives is read once per model and kept
as plain numbers, so costing a request is a few multiplications. Tiered prices (more per token
past a prompt size) are kept with their tiers. A model neither knows costs nothing (``None``:
no cost header, and budgets count it at zero).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from gateway import Usage

log = logging.getLogger(__name__)

#: A price in USD per million tokens: flat, or (base, ((from input tokens, price), ...)).
Rate = float | tuple[float, tuple[tuple[int, float], ...]]


def _at(rate: Rate, input_tokens: int) -> float:
    if isinstance(rate, float):
        return rate
    base, tiers = rate
    for start, price in reversed(tiers):
        if input_tokens > start:
            return price
    return base


@attrs.frozen
class Price:
    """USD per million tokens of each kind, and per request."""

    input: Rate = 0.0
    output: Rate = 0.0
    cached_input: Rate = 0.0
    cache_write: Rate = 0.0
    reasoning: Rate = 0.0
    request: float = 0.0
    #: Flat rates (no tiers): (input, output, the dearer of output and reasoning, request),
    #: for the common case's couple of multiplications; ``None`` with tiers.
    flat: tuple[float, float, float, float] | None = attrs.field(init=False, eq=False, repr=False)

    @flat.default
    def _flat(self) -> tuple[float, float, float, float] | None:
        inp, out, reasoning = self.input, self.output, self.reasoning
        if not (
            isinstance(inp, float)
            and isinstance(out, float)
            and isinstance(reasoning, float)
            and isinstance(self.cached_input, float)
            and isinstance(self.cache_write, float)
        ):
            return None
        return inp, out, max(out, reasoning), self.request

    def cost(self, usage: Usage) -> float:
        """The cost of ``usage`` in USD. ``input_tokens`` counts cached ones too; reasoning
        tokens are among the output tokens (``completion_tokens_details.reasoning_tokens``)."""
        flat = self.flat
        cached, written = usage.cache_read_tokens, usage.cache_write_tokens
        if flat is not None and not (cached or written) and usage.input_tokens >= 0:
            reasoning = reasoning_tokens(usage) if usage.details else 0
            if not reasoning:
                # Nothing cached, no reasoning: the sum below without its zero terms.
                per_input, per_output, _, per_request = flat
                tokens = usage.input_tokens * per_input + usage.output_tokens * per_output
                return tokens / 1e6 + per_request
        total_in = usage.input_tokens
        fresh = max(0, total_in - cached - written)
        reasoning = min(reasoning_tokens(usage), usage.output_tokens)
        return (
            fresh * _at(self.input, total_in)
            + cached * _at(self.cached_input, total_in)
            + written * _at(self.cache_write, total_in)
            + (usage.output_tokens - reasoning) * _at(self.output, total_in)
            + reasoning * _at(self.reasoning, total_in)
        ) / 1e6 + self.request

    def estimate(self, input_tokens: int, output_tokens: int) -> float:
        """The most a request of ``input_tokens`` answering up to ``output_tokens`` costs."""
        flat = self.flat
        if flat is not None:
            return (input_tokens * flat[0] + output_tokens * flat[2]) / 1e6 + flat[3]
        per_output = max(_at(self.output, input_tokens), _at(self.reasoning, input_tokens))
        return (
            input_tokens * _at(self.input, input_tokens) + output_tokens * per_output
        ) / 1e6 + self.request


def reasoning_tokens(usage: Usage) -> int:
    """Reasoning tokens, as OpenAI reports them (none elsewhere)."""
    details = usage.details
    if not details:
        return 0
    inner = details.get("completion_tokens_details") or details.get("output_tokens_details")
    if isinstance(inner, dict):
        value = inner.get("reasoning_tokens")
        if isinstance(value, int):
            return value
    return 0


def from_config(cfg: Any) -> Price:
    """A :class:`~gateway.config.sections.ModelPrice` of the configuration as a :class:`Price`."""
    inp, out = float(cfg.input), float(cfg.output)
    return Price(
        input=inp,
        output=out,
        cached_input=inp if cfg.cached_input is None else float(cfg.cached_input),
        cache_write=inp if cfg.cache_write is None else float(cfg.cache_write),
        reasoning=out if cfg.reasoning is None else float(cfg.reasoning),
        request=float(cfg.request),
    )


def _rate(value: Any) -> Rate | None:
    if value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return float(value)
    base = getattr(value, "base", None)
    tiers = getattr(value, "tiers", None)
    if base is None or tiers is None:
        return None
    return (float(base), tuple((int(t.start), float(t.price)) for t in tiers))


def from_library(model: str) -> Price | None:
    """The price genai-prices gives ``model`` (an upstream model name), or ``None``."""
    try:
        from genai_prices import Usage as LibraryUsage
        from genai_prices import calc_price
    except ImportError:
        return None
    try:
        found = calc_price(LibraryUsage(input_tokens=0, output_tokens=0), model_ref=model)
    except LookupError:
        return None
    except Exception as exc:  # a library fault must not fail the request
        log.warning("no price for %r: %s", model, exc)
        return None
    mp = found.model_price
    fields = vars(mp)
    inp = _rate(fields.get("input_mtok")) or 0.0
    out = _rate(fields.get("output_mtok")) or 0.0
    requests = fields.get("requests_kcount")
    return Price(
        input=inp,
        output=out,
        cached_input=_rate(fields.get("cache_read_mtok")) or inp,
        cache_write=_rate(fields.get("cache_write_mtok")) or inp,
        reasoning=out,
        request=float(requests) / 1000 if requests is not None else 0.0,
    )


#: Models whose price lookup is remembered at most (arbitrary names must not grow memory).
_KEPT = 4096


class PriceBook:
    """Prices by model: the configuration's first (by ``[models.<name>]`` key), then the
    library's (by upstream model name), each looked up once."""

    def __init__(self, configured: Mapping[str, Price], library: bool = True) -> None:
        self.configured = dict(configured)
        self.library = library
        self._found: dict[str, Price | None] = {}

    def price(self, route_name: str, upstream_model: str) -> Price | None:
        configured = self.configured.get(route_name)
        if configured is not None:
            return configured
        if not self.library:
            return None
        if upstream_model in self._found:
            return self._found[upstream_model]
        found = from_library(upstream_model)
        if len(self._found) < _KEPT:
            self._found[upstream_model] = found
        return found
