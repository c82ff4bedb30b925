"""The spend plugin: ``[spend]``, the ``spend`` filter, the ledger writer, ``/admin/spend`` and
the spend metrics."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import attrs
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway import BadRequest, Count, NonNegative, hookimpl, json_response
from gateway.admin import add_admin_route
from gateway.spend.budgets import BudgetStore, MemoryBudgets, RedisBudgets
from gateway.spend.filter import SpendFilter
from gateway.spend.ledger import GROUPS, ledger, period_spend, summary
from gateway.spend.prices import PriceBook, from_config

if TYPE_CHECKING:
    from gateway import Gateway


@attrs.frozen
class SpendConfig:
    """``[spend]``: costs, budgets and the ledger."""

    #: Price every request (``x-hookgate-cost``, ``hookgate_cost_usd``) from ``[models.<name>]
    #: price`` and, when installed, genai-prices: "auto" (when a model has a price, or database
    #: keys are on), "true" or "false". Off, nothing of this plugin is on the request path.
    costs: str = "auto"
    #: Look prices up in genai-prices (``pip install 'hookgate[prices]'``).
    price_library: bool = True
    #: Where budget counters live: "auto" (redis when [redis] url is set), "memory" or "redis".
    store: str = "auto"
    #: The output reserved for a request that sets no ``max_tokens``.
    default_max_tokens: NonNegative = NonNegative(4096)
    #: Write one row per request to the database (``GET /admin/spend``). Unset: when database
    #: keys are on (``[admin] keys``).
    ledger: bool | None = None
    #: Ledger rows waiting to be written at most; past it rows are dropped and counted.
    queue: Count = Count(10_000)
    #: Rows written in one transaction at most.
    batch: Count = Count(500)
    #: The CPU priority of the process that writes the ledger to a SQLite file: "idle" (Linux's
    #: idle scheduling class while it keeps up, ordinary priority for a batch that waited more
    #: than a quarter of a second), or "normal".
    writer_priority: Literal["idle", "normal"] = "idle"


def _virtual_keys(gateway: Gateway) -> bool:
    on: bool = gateway.config.section("admin").virtual_keys_on()
    return on


def _ledger_on(gateway: Gateway) -> bool:
    cfg: SpendConfig = gateway.config.section("spend")
    return _virtual_keys(gateway) if cfg.ledger is None else cfg.ledger


class _Collector:
    def __init__(self, flt: SpendFilter) -> None:
        self.flt = flt

    def collect(self) -> Iterator[Metric]:
        stats = self.flt.stats
        cost = CounterMetricFamily(
            "hookgate_cost_usd", "What requests cost, in USD, by model.", labels=["model"]
        )
        for model, value in list(stats.cost.items()):
            cost.add_metric([model], value)
        yield cost
        refused = CounterMetricFamily(
            "hookgate_budget_refusals",
            "Requests refused by a spent budget, by scope and period.",
            labels=["scope", "period"],
        )
        for (scope, period), count in list(stats.refused.items()):
            refused.add_metric([scope, period], count)
        yield refused
        ledger = self.flt.ledger
        if ledger is not None:
            rows = CounterMetricFamily(
                "hookgate_spend_rows",
                "Spend ledger rows: written, dropped (the queue was full) or failed.",
                labels=["outcome"],
            )
            rows.add_metric(["written"], ledger.stats.written)
            rows.add_metric(["dropped"], ledger.stats.dropped)
            rows.add_metric(["failed"], ledger.stats.failed)
            yield rows
            yield GaugeMetricFamily(
                "hookgate_spend_queue", "Ledger rows waiting to be written.", ledger.waiting()
            )


@hookimpl
def gateway_config_sections(register: Any) -> None:
    register("spend", SpendConfig)


@hookimpl
def gateway_register_filters(register: Any) -> None:
    def factory(gateway: Gateway) -> SpendFilter | None:
        cfg: SpendConfig = gateway.config.section("spend")
        configured = {
            name: from_config(m.price) for name, m in gateway.config.models.items() if m.price
        }
        budgets_on = _virtual_keys(gateway)
        ledger_on = _ledger_on(gateway)
        if cfg.costs not in ("auto", "true", "false"):
            raise ValueError(f"costs: expected 'auto', 'true' or 'false', not {cfg.costs!r}")
        costs = cfg.costs == "true" or (
            cfg.costs == "auto" and bool(configured or budgets_on or ledger_on)
        )
        if not (costs or budgets_on or ledger_on):
            return None
        writer = None
        db = None
        if ledger_on:
            db = gateway.state.database("spend.ledger")
            writer = ledger(db, int(cfg.queue), int(cfg.batch), cfg.writer_priority)
        budgets: BudgetStore | None = None
        if budgets_on:
            store = gateway.state.choose("spend.store", cfg.store)
            # A counter Redis lost (flushed, restarted empty) is made again from the ledger.
            spent = functools.partial(period_spend, db) if db is not None else None
            budgets = (
                RedisBudgets(gateway.state.redis("spend.store"), spent)
                if store == "redis"
                else MemoryBudgets()
            )
        prices = PriceBook(configured if costs else {}, costs and cfg.price_library)
        return SpendFilter(gateway, prices, budgets, writer, db, int(cfg.default_max_tokens))

    register("spend", factory)


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Gateway) -> None:
    flt = next((f for f in gateway.filters if isinstance(f, SpendFilter)), None)
    if flt is None:
        return
    gateway.metrics.registry.register(_Collector(flt))
    writer, db = flt.ledger, flt.db
    if writer is None or db is None:
        return
    app.cleanup_ctx.append(writer.run)

    async def spend(request: web.Request) -> web.Response:
        query = request.query
        group_by = query.get("group_by", "key")
        if group_by not in GROUPS:
            raise BadRequest(
                f"'group_by' must be one of {', '.join(GROUPS)}, not {group_by!r}.",
                param="group_by",
            )
        filters = {
            column: query[name]
            for name, column in (("key", "key_id"), ("team", "team_id"), ("model", "model"))
            if query.get(name)
        }
        rows = await summary(db, group_by, filters, _day(query, "since"), _day(query, "until"))
        return json_response({"object": "list", "group_by": group_by, "data": rows})

    add_admin_route(gateway, "GET", "/admin/spend", spend, name="admin.spend")


def _day(query: Mapping[str, str], name: str) -> str | None:
    """The day ``query[name]`` names (``YYYY-MM-DD``), or ``None`` when not given. Anything
    else is refused: compared as text with the ledger's days, it would match nothing, or
    everything, without a word."""
    value = query.get(name)
    if not value:
        return None
    try:
        day = date.fromisoformat(value).isoformat()
    except ValueError:
        day = None
    if day != value:  # fromisoformat also reads 20261101 and 2026-W44-1
        raise BadRequest(f"'{name}' must be a day, YYYY-MM-DD, not {value!r}.", param=name)
    return value
