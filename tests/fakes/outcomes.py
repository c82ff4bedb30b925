"""Test filters that watch requests end: ``Ends`` records every :class:`Outcome` it is given."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import ChatRequest, Exchange, Filter, Outcome, hookimpl


class Ends(Filter):
    """Records ``(request id, outcome)`` of every request's end; :meth:`next` awaits one."""

    name = "ends"

    def __init__(self) -> None:
        self.seen: list[tuple[str, Outcome]] = []
        self._queue: asyncio.Queue[Outcome] = asyncio.Queue()

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        self.seen.append((exchange.request_id, outcome))
        self._queue.put_nowait(outcome)

    async def next(self) -> Outcome:
        """The next request's outcome (waiting for it to end, at most ten seconds)."""
        async with asyncio.timeout(10):
            return await self._queue.get()


def filters_plugin(**filters: Filter) -> tuple[str, Any]:
    """A plugin registering each of ``filters`` under its keyword."""

    class Plugin:
        @hookimpl
        def gateway_register_filters(self, register: Any) -> None:
            for name, flt in filters.items():
                register(name, lambda gw, flt=flt: flt)

    return ("test-filters", Plugin())
