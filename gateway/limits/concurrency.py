"""Bounds on what is in progress at once: requests and streams, per key and in all.

A request over its key's bound gets 429 (the key's own doing), one over the gateway's bound
503 (the gateway is busy); both in the client's protocol with ``retry-after``. Requests are
counted by a middleware from the moment they are authenticated (the body is not read yet), so
a caller past its bound costs almost nothing; ``/health`` and ``/metrics`` are never counted
nor refused. Streams (AG-UI runs and A2A tasks included, for as long as they run) are counted
by a filter once the request is decoded, and given back when the stream ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway import (
    EXCHANGE,
    ChatRequest,
    Exchange,
    Filter,
    Outcome,
    RateLimited,
    Unavailable,
)

#: Routes always served: a load balancer's probe and the scraper must see a busy gateway.
EXEMPT = frozenset({"health", "metrics", "agui_preflight"})


class Slots:
    """How many of one thing are in progress, per owner and in all, against two bounds (0: no
    bound). The event loop makes each method atomic."""

    __slots__ = ("by_owner", "count", "per_key", "total", "what")

    def __init__(self, what: str, per_key: int, total: int) -> None:
        self.what = what
        self.per_key = per_key
        self.total = total
        self.count = 0
        self.by_owner: dict[str, int] = {}

    def take(self, owner: str, name: str) -> None:
        """Count one more for ``owner``; raises the refusal when a bound is reached."""
        if self.total and self.count >= self.total:
            raise Unavailable(
                f"The gateway has {self.total} {self.what} in progress, its limit; retry shortly.",
                code="gateway_busy",
                retry_after=1.0,
            )
        if self.per_key:
            held = self.by_owner.get(owner, 0)
            if held >= self.per_key:
                raise RateLimited(
                    f"'{name}' has {held} {self.what} in progress, its limit; retry when one ends.",
                    code="concurrency_limit_exceeded",
                    retry_after=1.0,
                )
            self.by_owner[owner] = held + 1
        self.count += 1

    def give(self, owner: str) -> None:
        """One of ``owner``'s ended."""
        self.count -= 1
        if self.per_key:
            held = self.by_owner.get(owner, 0) - 1
            if held > 0:
                self.by_owner[owner] = held
            else:
                self.by_owner.pop(owner, None)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: The request slots of an application (when bounded), for inspection.
REQUEST_SLOTS: web.AppKey[Slots] = web.AppKey("hookgate.request_slots", Slots)


def request_bound(slots: Slots) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware that counts requests in progress (installed after authentication)."""

    @web.middleware
    async def bound_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        ex = request[EXCHANGE]
        if ex.route.name in EXEMPT:
            return await handler(request)
        principal = ex.principal
        slots.take(principal.id, principal.name)
        try:
            return await handler(request)
        finally:
            slots.give(principal.id)

    return bound_requests


class StreamBound(Filter):
    """Counts streams in progress (the first filter: a refused stream costs nothing else)."""

    name = "concurrency"
    order = -300

    def __init__(self, slots: Slots) -> None:
        self.slots = slots

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        if request.stream:
            principal = exchange.principal
            self.slots.take(principal.id, principal.name)
            exchange.note(self, principal.id)
        return None

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        notes = exchange.notes
        if notes is not None and self in notes:
            self.slots.give(notes.pop(self))
