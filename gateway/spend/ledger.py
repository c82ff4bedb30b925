"""The spend ledger: one row per request in the database, written in batches off the request
path.

A request's end puts its row on a bounded queue and returns. On PostgreSQL, one task per process
writes what the queue holds in batches (``[spend] batch`` rows at most, one transaction each,
gathered for up to :data:`LINGER` seconds), through a
:class:`~gateway.core.batches.BatchWriter`. On a SQLite file, the batches go to a process of
their own (:class:`LedgerProcess`, ``writer.py``), which inserts them: bound and inserted by the
worker's own connection, a thread holding the worker's GIL, they cost its event loop the waits
and handoffs of that lock. Either way, rows waiting (queued, or sent and not yet written) are
``[spend] queue`` at most: when the database is slow or down, rows that find the queue full are
dropped and counted (``hookgate_spend_rows_total{outcome="dropped"}``), never held in memory
without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import BatchStats, BatchWriter, sidecar
from gateway.spend.budgets import MICRO

if TYPE_CHECKING:
    from aiohttp import web

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


#: The SQLite writer process's program (see its docstring).
WRITER = Path(__file__).with_name("writer.py")


def ledger(
    db: Database, size: int, batch: int, priority: str = "idle"
) -> BatchWriter[tuple[Any, ...]] | LedgerProcess:
    """The ledger's writer: rows (``COLUMNS`` in order) inserted in batches; by a process of its
    own on a SQLite file (``priority``: its CPU priority, as the span exporter's)."""
    if db.dialect == "sqlite" and (path := db.config.sqlite_path()) != ":memory:":
        return LedgerProcess(path, db.timeout, size, batch, priority)

    async def write(rows: list[tuple[Any, ...]]) -> None:
        async with db.guard("the spend ledger"):
            await db.insert_many("hookgate_spend", COLUMNS, rows)

    return BatchWriter("spend ledger", write, size, batch, LINGER)


class LedgerProcess:
    """Ledger rows on their way to the SQLite writer process (``writer.py``, started and stopped
    with the app by :meth:`run`): kept in a list and written to its standard input in frames
    (``batch`` rows, or what is there after :data:`LINGER` seconds). The process answers each
    frame, written or failed; rows sent and not yet answered count against ``size`` with the
    rows kept here, so a slow or locked database drops rows (counted) rather than letting them
    pile up in the pipe."""

    what = "spend ledger"
    #: Seconds the process has to write what is left, when the app stops.
    STOP_TIMEOUT = 10.0

    def __init__(self, path: str, timeout: float, size: int, batch: int, priority: str) -> None:
        self.path = path
        self.timeout = timeout
        self.size = size
        self.batch = batch
        self.priority = priority
        self.stats = BatchStats()
        #: Rows kept here, and rows kept or sent and not yet answered.
        self._rows: list[tuple[Any, ...]] = []
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._broken = False

    def waiting(self) -> int:
        """Rows not yet written: kept here, or with the writer process."""
        return self._pending

    def add(self, row: tuple[Any, ...]) -> None:
        """Keep one row; dropped and counted when ``size`` rows are waiting already."""
        if self._pending >= self.size:
            self.stats.dropped += 1
            return
        rows = self._rows
        rows.append(row)
        self._pending += 1
        if len(rows) >= self.batch:
            self.flush()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(LINGER, self.flush)

    def flush(self) -> None:
        """Send the rows kept to the writer process (kept while it is not started yet)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stdin, rows = self._stdin, self._rows
        if stdin is None or not rows:
            return
        self._rows = []
        if self._broken or stdin.is_closing():
            self.stats.dropped += len(rows)
            self._pending -= len(rows)
            return
        stdin.write(sidecar.frame(rows, time.monotonic_ns()))

    async def _answers(self, stdout: asyncio.StreamReader) -> None:
        """The writer's answers, one a frame, until it ends (stopped, or gone): then what it
        was sent and did not answer is dropped, counted, and so is what is sent after."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                answer = await stdout.readexactly(5)
                rows = int.from_bytes(answer[1:], "big")
                if answer[0] == 0:
                    self.stats.written += rows
                else:
                    self.stats.failed += rows
                self._pending -= rows
        self._broken = True
        lost = self._pending - len(self._rows)
        if lost:
            self.stats.dropped += lost
            self._pending -= lost
            log.error("%s: %d rows not written (its writer process ended)", self.what, lost)

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: the writer process for the app's lifetime; at the end what is left
        is written, then it stops."""
        self._loop = asyncio.get_running_loop()
        proc = await sidecar.start(
            WRITER, self.path, str(self.timeout), self.priority, "hookgate_spend", *COLUMNS,
            answers=True,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        self._stdin = proc.stdin
        answers = asyncio.create_task(self._answers(proc.stdout))
        if self._rows:
            self._timer = self._loop.call_later(LINGER, self.flush)
        try:
            yield
        finally:
            self.flush()
            await sidecar.stop(proc, self.STOP_TIMEOUT, "the ledger's writer process")
            await answers
            self._loop = None


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
