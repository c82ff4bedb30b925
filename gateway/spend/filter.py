"""The ``spend`` filter: prices each request, holds budgets, and records the ledger row.

Before the call (``on_request``): the request's most likely cost (its input estimate plus
``max_tokens``, or ``[spend] default_max_tokens``, at the model's price) is reserved on every
budget of the caller's key and team; a budget that cannot take it refuses the request with 429
``budget_exceeded`` in the client's protocol. At the end (``on_end``, whatever the outcome): the
real cost from the usage the upstream reported (or, when a stream was cut short without any, an
estimate of what was sent), which settles the reservation, goes in ``x-hookgate-cost`` (answers
that are not streamed: a stream's headers leave before its cost is known), in the metrics, and
in the ledger.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import attrs

from gateway import (
    ANONYMOUS,
    ChatRequest,
    Exchange,
    Filter,
    GatewayError,
    Outcome,
    RateLimited,
    Usage,
    request_tokens,
)
from gateway.spend.budgets import MICRO, BudgetStore, Counter, Periods, counters
from gateway.spend.prices import Price, PriceBook, reasoning_tokens

if TYPE_CHECKING:
    from gateway import BatchWriter, Database, Gateway

log = logging.getLogger(__name__)

#: Model names whose price is remembered at most.
_KEPT = 4096


@attrs.frozen
class Reservation:
    price: Price | None
    tag: str = ""
    counters: tuple[Counter, ...] = ()
    amount: int = 0


@attrs.define
class SpendStats:
    #: model -> USD
    cost: dict[str, float] = attrs.Factory(dict)
    #: (scope, period) -> requests refused
    refused: dict[tuple[str, str], int] = attrs.Factory(dict)


class SpendFilter(Filter):
    name = "spend"
    #: After the rate limits (-200): a request they refuse reserves nothing.
    order = -150
    #: Only usage is read; a relayed stream cut short is estimated from its frames.
    reads_relayed = False

    def __init__(
        self,
        gateway: Gateway,
        prices: PriceBook,
        budgets: BudgetStore | None,
        ledger: BatchWriter[tuple[Any, ...]] | None,
        db: Database | None,
        default_max_tokens: int,
    ) -> None:
        self.router = gateway.router
        self.prices = prices
        self.budgets = budgets
        self.ledger = ledger
        #: Where the ledger writes (for ``/admin/spend``).
        self.db = db
        self.default_max_tokens = default_max_tokens
        self.stats = SpendStats()
        self.periods = Periods()
        self._by_model: dict[str, Price | None] = {}

    def price(self, model: str) -> Price | None:
        """The price of the public model name ``model`` (remembered)."""
        if model in self._by_model:
            return self._by_model[model]
        try:
            route = self.router.resolve(model, ANONYMOUS)
        except GatewayError:
            return None  # routing reports it, in the pipeline
        found = self.prices.price(route.name, route.upstream_for(model))
        if len(self._by_model) < _KEPT:
            self._by_model[model] = found
        return found

    def _counters(self, attributes: dict[str, Any], principal_id: str) -> tuple[str, list[Counter]]:
        budget = attributes.get("budget") or {}
        team = attributes.get("team_id")
        team_budget = attributes.get("team_budget") or {}
        now = self.periods()
        found = counters("key", principal_id, budget, now)
        if team is not None:
            found += counters("team", team, team_budget, now)
        return (team or principal_id), found

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        price = self.price(request.model)
        principal = exchange.principal
        if self.budgets is None or not principal.attributes:
            exchange.note(self, Reservation(price))
            return None
        tag, budgets = self._counters(principal.attributes, principal.id)
        if not budgets:
            exchange.note(self, Reservation(price))
            return None
        amount = 0
        if price is not None:
            max_tokens = request.max_tokens or self.default_max_tokens
            amount = round(price.estimate(request_tokens(request), max_tokens) * MICRO)
        refused = await self.budgets.reserve(tag, budgets, amount)
        if refused is not None:
            c = budgets[refused]
            key = (c.scope, c.period)
            self.stats.refused[key] = self.stats.refused.get(key, 0) + 1
            whose = "this key's" if c.scope == "key" else f"team '{c.owner}''s"
            period = {"day": "daily", "month": "monthly"}.get(c.period, c.period)
            raise RateLimited(
                f"Budget exceeded: {whose} {period} budget of ${c.limit / MICRO:.6g} is spent.",
                code="budget_exceeded",
                retry_after=None if c.resets is None else max(1.0, c.resets - time.time()),
            )
        exchange.note(self, Reservation(price, tag, tuple(budgets), amount))
        return None

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        notes = exchange.notes
        reservation: Reservation | None = notes.get(self) if notes is not None else None
        price = reservation.price if reservation is not None else None
        usage = outcome.usage
        if usage is None and (outcome.status != "error" or outcome.output_tokens):
            # No usage reported (a stream cut short): what was asked and sent, estimated.
            usage = Usage(request_tokens(request), outcome.output_tokens)
        cost = 0.0
        if price is not None and usage is not None and reservation is not None:
            cost = price.cost(usage)
            exchange.cost = cost
            model = exchange.model or request.model
            self.stats.cost[model] = self.stats.cost.get(model, 0.0) + cost
        if reservation is not None and reservation.counters and self.budgets is not None:
            try:
                await self.budgets.settle(
                    reservation.tag, reservation.counters, round(cost * MICRO) - reservation.amount
                )
            except GatewayError as err:
                log.warning("budget of request %s not settled: %s", exchange.request_id, err)
        if self.ledger is not None:
            day = self.periods()["day"][0]
            self.ledger.add(_row(request, exchange, outcome, usage, cost, day))


def _row(
    request: ChatRequest,
    ex: Exchange,
    outcome: Outcome,
    usage: Usage | None,
    cost: float,
    day: str,
) -> tuple[Any, ...]:
    attributes = ex.principal.attributes
    u = usage or Usage()
    return (
        time.time(),
        day,
        ex.request_id,
        attributes.get("key_id") or ex.principal.id,
        attributes.get("team_id"),
        ex.model or request.model,
        f"{ex.backend}/{request.upstream_model or request.model}",
        u.input_tokens,
        u.output_tokens,
        u.cache_read_tokens,
        u.cache_write_tokens,
        reasoning_tokens(u),
        cost,
        outcome.status,
        (time.perf_counter() - ex.started) * 1000,
    )
