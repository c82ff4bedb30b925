"""Bounds on what is in progress at once: requests and streams, per key and in all.

A request over its key's bound gets 429 (the key's own doing), one over the gateway's bound
503 (the gateway is busy); both in the client's protocol with ``retry-after``. Requests are
counted by a middleware from the moment they are authenticated (the body is not read yet), so
a caller past its bound costs almost nothing; ``/health`` and ``/metrics`` are never counted
nor refused. Streams (AG-UI runs and A2A tasks included, for as long as they run) are counted
by a filter once the request is decoded, and given back when the stream ends.

The process's own bounds (``max_requests``, ``max_streams``) are counted here, in memory
(:class:`Slots`). The per-key and global bounds are counted in the limits store: in memory for
one process, or in Redis (:class:`SharedSlots`), where every instance on that Redis holds them
together. Redis is asked only when one of those bounds is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from gateway import (
    EXCHANGE,
    ChatRequest,
    Exchange,
    Filter,
    GatewayError,
    Outcome,
    RateLimited,
    Unavailable,
)

if TYPE_CHECKING:
    from gateway import RedisState

log = logging.getLogger(__name__)

#: Routes always served: a load balancer's probe and the scraper must see a busy gateway.
EXEMPT = frozenset({"health", "metrics", "agui_preflight"})


class Slots:
    """How many of one thing are in progress, per owner and in all, against two bounds (0: no
    bound). The event loop makes each method atomic."""

    __slots__ = ("by_owner", "count", "per_key", "total", "what")
    #: Routes whose requests are not counted (see ``gateway.core.middlewares.RequestBound``).
    exempt = EXEMPT

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


# KEYS[1]: the slots (a sorted set: one member per slot, scored by its lease's end in ms on
# Redis's clock). ARGV: the bound, the new slot's member, the lease in ms. Forgets the slots whose
# lease ended (their holder stopped renewing them: it died), then takes one if the bound allows.
# Returns -1 (taken) or how many are held (refused).
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then return held end
local lease = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], 2 * lease)
return -1
"""

#: A slot given back: removed from one sorted set (a script of one key, so that it is sent with
#: the scripts' batches; the key's set and the global one are in two cluster slots).
GIVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
return 0
"""

#: A slot counted in Redis: its member and the sorted sets it is in (the key's, the global one).
Slot = tuple[str, tuple[str, ...]]


class SharedSlots:
    """Slots counted in Redis, so that every instance on one Redis holds the bounds together.

    ``<prefix>slots:{<owner>}:<what>`` holds one owner's slots and ``<prefix>slots:{*}:<what>``
    everyone's (when that is bounded): sorted sets whose members are the slots, scored by when
    their lease ends. A slot is taken by one Lua script (expired slots are dropped first, then
    the bound checked and the slot added); its instance renews the leases of every slot it holds
    every third of ``lease`` while the request or stream lasts, and removes the slot when it
    ends (cancelled included). The slots of an instance that was killed are forgotten once
    their lease ends.
    """

    def __init__(
        self, redis: RedisState, what: str, per_key: int, total: int, lease: float
    ) -> None:
        self.redis = redis
        self.what = what
        self.per_key = per_key
        self.total = total
        self.lease_ms = max(1, int(lease * 1000))
        self._take = redis.script(TAKE)
        self._give = redis.script(GIVE)
        self._instance = uuid.uuid4().hex[:12]
        self._serial = itertools.count(1)
        self._all = redis.key("slots", "*", what)
        #: What a client is told cannot be used while Redis is unreachable.
        self._guarded = f"the bounds on {what} in progress"
        #: The slots this instance holds, by sorted set.
        self.held: dict[str, set[str]] = {}
        self._renewer: asyncio.Task[None] | None = None

    async def take(self, owner: str, name: str) -> Slot:
        """Take a slot for ``owner``; raises the refusal when a bound is reached (503 for the
        gateway's, 429 for the key's) or Redis cannot be reached (503)."""
        member = f"{self._instance}:{next(self._serial)}"
        keys: list[str] = []
        try:
            if self.total:
                held = await self._claim(self._all, self.total, member)
                if held >= 0:
                    raise Unavailable(
                        f"The gateway has {held} {self.what} in progress, its limit; "
                        "retry shortly.",
                        code="gateway_busy",
                        retry_after=1.0,
                    )
                keys.append(self._all)
            if self.per_key:
                mine = self.redis.key("slots", owner, self.what)
                held = await self._claim(mine, self.per_key, member)
                if held >= 0:
                    raise RateLimited(
                        f"'{name}' has {held} {self.what} in progress, its limit; "
                        "retry when one ends.",
                        code="concurrency_limit_exceeded",
                        retry_after=1.0,
                    )
                keys.append(mine)
        except BaseException:
            if keys:
                await self.give((member, tuple(keys)))
            raise
        return member, tuple(keys)

    async def _claim(self, key: str, bound: int, member: str) -> int:
        held = int(await self._take.batched([key], [bound, member, self.lease_ms], self._guarded))
        if held < 0:
            self.held.setdefault(key, set()).add(member)
            if self._renewer is None:
                self._renewer = asyncio.create_task(self._renew())
        return held

    async def give(self, slot: Slot) -> None:
        """The slot's request or stream ended: stop renewing it and remove it (a failure is
        logged; its lease then ends by itself)."""
        member, keys = slot
        for key in keys:
            members = self.held.get(key)
            if members is not None:
                members.discard(member)
                if not members:
                    del self.held[key]
        if keys:
            # Shielded: a cancelled request gives its slot back all the same.
            await asyncio.shield(self._remove(member, keys))

    async def _remove(self, member: str, keys: tuple[str, ...]) -> None:
        try:
            await asyncio.gather(
                *(self._give.batched([key], [member], self._guarded) for key in keys)
            )
        except GatewayError as err:
            log.warning("a slot of %s not given back (its lease will end): %s", self.what, err)

    async def _renew(self) -> None:
        """Extend the leases of every slot held here, every third of a lease, until none is."""
        period = self.lease_ms / 3000
        while True:
            await asyncio.sleep(period)
            if not self.held:
                self._renewer = None
                return
            try:
                async with self.redis.guard(self._guarded):
                    ends = int((await self.redis.redis_time()) * 1000) + self.lease_ms
                    async with self.redis.client.pipeline(transaction=False) as pipe:
                        for key, members in list(self.held.items()):
                            pipe.zadd(key, dict.fromkeys(members, ends), xx=True)
                            pipe.pexpire(key, 2 * self.lease_ms)
                        await pipe.execute()
            except GatewayError as err:
                log.warning("leases of %s in progress not renewed: %s", self.what, err)

    async def close(self) -> None:
        """Stop renewing (application shutdown)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: The request slots of an application (when bounded), for inspection.
REQUEST_SLOTS: web.AppKey[Slots] = web.AppKey("hookgate.request_slots", Slots)


def shared_request_bound(
    slots: Slots | None, shared: SharedSlots
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware that counts requests in progress in Redis (``shared``), and in this
    process too when ``slots`` bounds them here."""

    @web.middleware
    async def bound_shared_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        ex = request[EXCHANGE]
        if ex.route.name in EXEMPT:
            return await handler(request)
        principal = ex.principal
        if slots is not None:
            slots.take(principal.id, principal.name)
        try:
            slot = await shared.take(principal.id, principal.name)
            try:
                return await handler(request)
            finally:
                await shared.give(slot)
        finally:
            if slots is not None:
                slots.give(principal.id)

    return bound_shared_requests


class StreamBound(Filter):
    """Counts streams in progress (the first filter: a refused stream costs nothing else): in
    this process (``slots``), in Redis (``shared``), or both."""

    name = "concurrency"
    order = -300
    #: Its end only gives the slot back.
    reads_relayed = False

    def __init__(self, slots: Slots | None, shared: SharedSlots | None = None) -> None:
        self.slots = slots
        self.shared = shared

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        if request.stream:
            principal = exchange.principal
            slots, shared = self.slots, self.shared
            if slots is not None:
                slots.take(principal.id, principal.name)
            slot: Slot | None = None
            if shared is not None:
                try:
                    slot = await shared.take(principal.id, principal.name)
                except BaseException:
                    if slots is not None:
                        slots.give(principal.id)
                    raise
            exchange.note(self, (principal.id, slot))
        return None

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        notes = exchange.notes
        if notes is not None and self in notes:
            owner, slot = notes.pop(self)
            if self.slots is not None:
                self.slots.give(owner)
            if slot is not None and self.shared is not None:
                await self.shared.give(slot)
