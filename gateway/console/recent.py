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
    only ``on_end``: one small dict appended per request."""

    name: ClassVar[str] = "console.recent"
    order: ClassVar[int] = 1_000_000
    reads_relayed: ClassVar[bool] = False

    def __init__(self, size: int) -> None:
        self.records: deque[dict[str, Any]] = deque(maxlen=size)

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        usage = outcome.usage
        err = outcome.error
        self.records.append(
            {
                "time": time.time(),
                "request_id": exchange.request_id,
                "key": exchange.principal.name,
                "route": exchange.route.name,
                "model": exchange.model or request.model,
                "backend": exchange.backend or None,
                "stream": outcome.stream,
                "status": outcome.status,
                "error": None if err is None else {"status": err.status, "message": err.message},
                "input_tokens": usage.input_tokens if usage else None,
                "output_tokens": usage.output_tokens if usage else outcome.output_tokens,
                # The spend plugin prices requests where it runs; absent: not priced here.
                "cost": getattr(exchange, "cost", None),
                "latency_ms": round((time.perf_counter() - exchange.started) * 1000, 1),
            }
        )

    def newest_first(self) -> list[dict[str, Any]]:
        return list(reversed(self.records))
