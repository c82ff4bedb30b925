"""The spend ledger: one row per request in the database, written in batches off the request
path.

A request's end puts its row on a bounded queue and returns; one task per process writes what
the queue holds in batches (``[spend] batch`` rows at most, one transaction each, gathered for
up to :data:`LINGER` seconds), through a
:class:`~gateway.core.batches.BatchWriter`. When the database is slow or down the queue fills,
and rows that find it full are dropped and counted (``hookgate_spend_rows_total{outcome=
"dropped"}``), never held in memory without bound.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gateway import BatchWriter
from gateway.spend.budgets import MICRO

if TYPE_CHECKING:
    from gateway import Database
    from gateway.spend.budgets import Counter

log = logging.getLogger(__name__)

#: Seconds the writer waits for more rows once it has one: under load a transaction holds
#: hundreds of rows instead of a few (each costs the database thread, and the event loop its
#: round trips to it); a row reaches the database this much later at most.
LINGER = 0.05

COLUMNS = (
    "ts",
    "day",
    "request_id",
    "key_id",
    "team_id",
    "model",
    "target",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "status",
    "latency_ms",
)


def ledger(db: Database, size: int, batch: int) -> BatchWriter[tuple[Any, ...]]:
    """The ledger's writer: rows (``COLUMNS`` in order) inserted in batches."""

    async def write(rows: list[tuple[Any, ...]]) -> None:
        async with db.guard("the spend ledger"):
            await db.insert_many("hookgate_spend", COLUMNS, rows)

    return BatchWriter("spend ledger", write, size, batch, LINGER)


async def period_spend(db: Database, counter: Counter) -> int:
    """What the ledger says ``counter``'s owner spent in its period, in micro-dollars (for a
    budget counter Redis lost; rows still queued in an instance are not counted yet)."""
    column = "key_id" if counter.scope == "key" else "team_id"
    where, args = [f"{column} = $1"], [counter.ledger_owner or counter.owner]
    if counter.period == "day":
        args.append(counter.stamp)
        where.append("day = $2")
    elif counter.period == "month":
        # Days are "YYYY-MM-DD": the month's are from "-01" to below "-32".
        args += [counter.stamp + "-01", counter.stamp + "-32"]
        where.append("day >= $2 AND day < $3")
    sql = f"SELECT SUM(cost) AS cost FROM hookgate_spend WHERE {' AND '.join(where)}"
    async with db.guard("the spend ledger"):
        row = await db.fetchrow(sql, *args)
    return round(float((row or {}).get("cost") or 0.0) * MICRO)


#: ``GET /admin/spend?group_by=``: what rows are grouped by.
GROUPS = {"key": "key_id", "team": "team_id", "model": "model", "day": "day"}


async def summary(
    db: Database, group_by: str, filters: dict[str, str], since: str | None, until: str | None
) -> list[dict[str, Any]]:
    """Requests, tokens and cost per ``group_by`` value, within ``[since, until]`` (days,
    ``YYYY-MM-DD``) and ``filters`` (``{"key_id": ..., "team_id": ..., "model": ...}``)."""
    column = GROUPS[group_by]
    where, args = [], []
    for name, value in filters.items():
        args.append(value)
        where.append(f"{name} = ${len(args)}")
    if since:
        args.append(since)
        where.append(f"day >= ${len(args)}")
    if until:
        args.append(until)
        where.append(f"day <= ${len(args)}")
    sql = (
        f"SELECT {column} AS grp, COUNT(*) AS requests, SUM(input_tokens) AS input_tokens, "
        "SUM(output_tokens) AS output_tokens, SUM(cached_tokens) AS cached_tokens, "
        "SUM(reasoning_tokens) AS reasoning_tokens, SUM(cost) AS cost, "
        "SUM(CASE WHEN status = 'success' THEN 0 ELSE 1 END) AS failed "
        "FROM hookgate_spend"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" GROUP BY {column} ORDER BY {column}"
    )
    async with db.guard("the spend ledger"):
        rows = await db.fetch(sql, *args)
    return [
        {
            group_by: r["grp"],
            "requests": int(r["requests"]),
            "failed": int(r["failed"] or 0),
            "input_tokens": int(r["input_tokens"] or 0),
            "output_tokens": int(r["output_tokens"] or 0),
            "cached_tokens": int(r["cached_tokens"] or 0),
            "reasoning_tokens": int(r["reasoning_tokens"] or 0),
            "cost": float(r["cost"] or 0.0),
        }
        for r in rows
    ]
