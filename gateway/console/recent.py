"""The console's list of recent requests: a filter that keeps the last few chat requests of this
process (time, key, model, status, tokens, cost, latency) in a bounded deque, for the Requests
view. Nothing is written anywhere; the spend ledger and request logs are the durable record."""

from __future__ import annotations

import time
from collections import deque
from typing import Any, ClassVar

from gateway import ChatRequest, Exchange, Filter, Outcome


class RecentRequests(Filter):
    """Keeps the last ``size`` requests. Runs late (after the plugins that price a request), and
    only ``on_end``: one small tuple appended per request."""

    name: ClassVar[str] = "console.recent"
    order: ClassVar[int] = 1_000_000
    reads_relayed: ClassVar[bool] = False

    def __init__(self, size: int) -> None:
        # A tuple a request (cheaper to make than the dict it becomes when the view asks).
        self.records: deque[tuple[Any, ...]] = deque(maxlen=size)

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        usage = outcome.usage
        err = outcome.error
        self.records.append(
            (
                time.time(),
                exchange.request_id,
                exchange.principal.name,
                exchange.route.name,
                exchange.model or request.model,
                exchange.backend or None,
                outcome.stream,
                outcome.status,
                None if err is None else (err.status, err.message),
                usage.input_tokens if usage else None,
                usage.output_tokens if usage else outcome.output_tokens,
                # The spend plugin prices requests where it runs; absent: not priced here.
                exchange.cost,
                time.perf_counter() - exchange.started,
            )
        )

    def newest_first(self) -> list[dict[str, Any]]:
        return [_as_dict(r) for r in reversed(self.records)]


def _as_dict(record: tuple[Any, ...]) -> dict[str, Any]:
    (when, rid, key, route, model, backend, stream, status, err, tin, tout, cost, took) = record
    return {
        "time": when,
        "request_id": rid,
        "key": key,
        "route": route,
        "model": model,
        "backend": backend,
        "stream": stream,
        "status": status,
        "error": None if err is None else {"status": err[0], "message": err[1]},
        "input_tokens": tin,
        "output_tokens": tout,
        "cost": cost,
        "latency_ms": round(took * 1000, 1),
    }
