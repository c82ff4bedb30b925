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
from gateway.spend.budgets import MICRO, BudgetStore, Counter, MemoryBudgets, Periods, counters
from gateway.spend.prices import Price, PriceBook, reasoning_tokens

if TYPE_CHECKING:
    from gateway import BatchWriter, Database, Gateway
    from gateway.spend.ledger import LedgerProcess

log = logging.getLogger(__name__)

#: Model names whose price is remembered at most.
_KEPT = 4096
#: Callers whose budget counters are remembered at most (for the present second).
_KEPT_CALLERS = 10_000
#: What a request without usage counts in its ledger row (read only).
_NO_USAGE = Usage()


#: What a request reserved: its price, its budgets' tag and counters, and the amount (a plain
#: tuple: made on every request's path).
Reservation = tuple["Price | None", str, tuple[Counter, ...], int]


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
        ledger: BatchWriter[tuple[Any, ...]] | LedgerProcess | None,
        db: Database | None,
        default_max_tokens: int,
    ) -> None:
        self.router = gateway.router
        self.prices = prices
        self.budgets = budgets
        #: Budgets in this process: reserved and settled without a coroutine.
        self._memory = budgets if isinstance(budgets, MemoryBudgets) else None
        self.ledger = ledger
        #: Where the ledger writes (for ``/admin/spend``).
        self.db = db
        self.default_max_tokens = default_max_tokens
        self.stats = SpendStats()
        self.periods = Periods()
        self._by_model: dict[str, Price | None] = {}
        #: principal id -> (its attributes, the periods, (tag, counters)): see _counters.
        self._budgets: dict[str, tuple[Any, Any, tuple[str, tuple[Counter, ...]]]] = {}

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

    def _counters(
        self, attributes: dict[str, Any], principal_id: str
    ) -> tuple[str, tuple[Counter, ...]]:
        """The budgets of a caller, worked out once per caller and second: kept while its
        attributes (the key cache's) and the periods (:class:`Periods`) are the same objects."""
        now = self.periods.now()
        kept = self._budgets.get(principal_id)
        if kept is not None and kept[0] is attributes and kept[1] is now:
            return kept[2]
        budget = attributes.get("budget") or {}
        team = attributes.get("team_id")
        team_budget = attributes.get("team_budget") or {}
        found = counters("key", principal_id, budget, now, attributes.get("key_id"))
        if team is not None:
            found += counters("team", team, team_budget, now)
        budgets = (team or principal_id, tuple(found))
        if len(self._budgets) >= _KEPT_CALLERS:
            self._budgets.clear()
        self._budgets[principal_id] = (attributes, now, budgets)
        return budgets

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        price = self.price(request.model)
        principal = exchange.principal
        attributes = principal.attributes
        if self.budgets is None or not attributes:
            reservation: Reservation = (price, "", (), 0)
        else:
            tag, budgets = self._counters(attributes, principal.id)
            if not budgets:
                reservation = (price, "", (), 0)
            else:
                amount = 0
                if price is not None:
                    max_tokens = request.max_tokens or self.default_max_tokens
                    amount = round(price.estimate(request_tokens(request), max_tokens) * MICRO)
                memory = self._memory
                if memory is not None:
                    refused = memory.reserve_now(budgets, amount)
                else:
                    refused = await self.budgets.reserve(tag, budgets, amount)
                if refused is not None:
                    self._refuse(budgets[refused])
                reservation = (price, tag, budgets, amount)
        exchange.note(self, reservation)
        return None

    def _refuse(self, c: Counter) -> None:
        """Refuse the request: ``c`` cannot take its reservation."""
        key = (c.scope, c.period)
        self.stats.refused[key] = self.stats.refused.get(key, 0) + 1
        whose = "this key's" if c.scope == "key" else f"team '{c.owner}''s"
        period = {"day": "daily", "month": "monthly"}.get(c.period, c.period)
        raise RateLimited(
            f"Budget exceeded: {whose} {period} budget of ${c.limit / MICRO:.6g} is spent.",
            code="budget_exceeded",
            retry_after=None if c.resets is None else max(1.0, c.resets - time.time()),
        )

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        notes = exchange.notes
        reservation: Reservation | None = notes.get(self) if notes is not None else None
        usage = outcome.usage
        if usage is None and (outcome.status != "error" or outcome.output_tokens):
            # No usage reported (a stream cut short): what was asked and sent, estimated.
            usage = Usage(request_tokens(request), outcome.output_tokens)
        price: Price | None = None
        tag = ""
        counters: tuple[Counter, ...] = ()
        amount = 0
        if reservation is not None:
            price, tag, counters, amount = reservation
        cost = 0.0
        if price is not None and usage is not None:
            cost = price.cost(usage)
            exchange.cost = cost
            model = exchange.model or request.model
            cost_by_model = self.stats.cost
            cost_by_model[model] = cost_by_model.get(model, 0.0) + cost
        if counters:
            memory = self._memory
            if memory is not None:
                memory.settle_now(counters, round(cost * MICRO) - amount)
            elif self.budgets is not None:
                try:
                    await self.budgets.settle(tag, counters, round(cost * MICRO) - amount)
                except GatewayError as err:
                    log.warning("budget of request %s not settled: %s", exchange.request_id, err)
        ledger = self.ledger
        if ledger is not None:
            # The row (ledger.COLUMNS), made here rather than by a function of its own: this
            # runs at the end of every request.
            principal = exchange.principal
            attributes = principal.attributes
            u = usage or _NO_USAGE
            ledger.add(
                (
                    time.time(),
                    self.periods.day(),
                    exchange.request_id,
                    attributes.get("key_id") or principal.id,
                    attributes.get("team_id"),
                    exchange.model or request.model,
                    # The target that answered (a routed request's last), as the pipeline and
                    # the routing policy name it; none for a request refused before routing.
                    exchange.served,
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_read_tokens,
                    u.cache_write_tokens,
                    reasoning_tokens(u) if u.details else 0,
                    cost,
                    outcome.status,
                    (time.perf_counter() - exchange.started) * 1000,
                )
            )
