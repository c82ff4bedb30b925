"""Budgets: spend limits per key and per team over a day, a month, or all time.

A request reserves its most likely cost before it is sent (its input estimate and
``max_tokens`` at the model's price) on every budget that applies, all at once or not at all; at
its end the reservation is settled to the real cost. So N instances, or N concurrent requests,
can never spend past a limit together by more than the difference between an estimate and the
real cost. Amounts are kept in whole micro-dollars: Redis adds integers atomically.

In Redis (``<prefix>budget:{tag}:...``) one Lua script checks and reserves on every counter of a
request; the tag is the team (or the key, for a key without a team), so a request's counters
share a cluster slot. In memory (one process) the event loop makes each step atomic.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import attrs

from gateway import Unavailable

if TYPE_CHECKING:
    from gateway import RedisState

#: Micro-dollars per dollar.
MICRO = 1_000_000


@attrs.frozen
class Counter:
    """One budget that applies to a request: its counter's name, its limit and until when it
    is kept."""

    scope: str  # "key" or "team"
    owner: str
    period: str  # "day", "month" or "total"
    limit: int  # micro-dollars
    name: str  # e.g. "key:vk-1:day:2026-11-30"
    ttl: int  # seconds the counter is kept (0: for ever)
    resets: float | None  # epoch seconds when the period ends
    stamp: str = ""  # the period: "2026-11-30", "2026-11" or "all"
    #: The owner as the ledger names it (a key's id without the principal's "vk-"), when not
    #: ``owner``.
    ledger_owner: str | None = None


#: Per period: the counter's stamp, when the period ends (None: never) and how long it is kept.
Period = tuple[str, float | None, int]


def periods(now: float) -> dict[str, Period]:
    """The present day and month (UTC), and all time."""
    when = datetime.fromtimestamp(now, UTC)
    day = when.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    return {
        "day": (when.strftime("%Y-%m-%d"), (day + timedelta(days=1)).timestamp(), 2 * 86400),
        "month": (
            when.strftime("%Y-%m"),
            (month + timedelta(days=32)).replace(day=1).timestamp(),
            32 * 86400,
        ),
        "total": ("all", None, 0),
    }


class Periods:
    """:func:`periods` worked out once a second (it is on every request's path): :meth:`now`
    gives the present periods, a new object each second (callers keep what they derived from
    them while it is the same object)."""

    def __init__(self) -> None:
        self._now: dict[str, Period] = {}
        #: The present day (``YYYY-MM-DD``, UTC), as ``_now`` has it.
        self._day = ""
        #: When ``_now`` is out of date (epoch seconds).
        self._until = 0.0

    def now(self) -> dict[str, Period]:
        """The present periods. (A method: calling the instance, through ``__call__``, costs
        half as much again.)"""
        now = time.time()
        if now >= self._until:
            self._now = found = periods(now)
            self._day = found["day"][0]
            self._until = float(int(now) + 1)
        return self._now

    def day(self) -> str:
        """The present day (``YYYY-MM-DD``, UTC): :meth:`now`'s, without its periods."""
        if time.time() >= self._until:
            self.now()
        return self._day


def counters(
    scope: str,
    owner: str,
    budget: dict[str, float],
    now: dict[str, Period] | None = None,
    ledger_owner: str | None = None,
) -> list[Counter]:
    """The counters of ``owner``'s ``budget`` (``{"day": 5.0, ...}``) for the present periods."""
    present = periods(time.time()) if now is None else now
    out = []
    for period, limit in budget.items():
        stamp, resets, ttl = present[period]
        name = f"{scope}:{owner}:{period}:{stamp}"
        out.append(
            Counter(
                scope, owner, period, round(limit * MICRO), name, ttl, resets, stamp, ledger_owner
            )
        )
    return out


#: What a counter's period has spent so far, in micro-dollars, by the ledger's account.
Spent = Callable[[Counter], Awaitable[int]]


class BudgetStore:
    """Where the counters are kept."""

    async def reserve(self, tag: str, counters: Sequence[Counter], amount: int) -> int | None:
        """Add ``amount`` to every counter if none would pass its limit (and none is spent
        already); else add nothing and return the index of the first that refuses."""
        raise NotImplementedError

    async def settle(self, tag: str, counters: Sequence[Counter], delta: int) -> None:
        """Add ``delta`` (the real cost less the reservation; may be negative)."""
        raise NotImplementedError

    async def spent(self, tag: str, counter: Counter) -> int:
        raise NotImplementedError


class _Used:
    """What one counter of :class:`MemoryBudgets` has used, changed in place by every
    reservation and settlement (no new tuple stored each time)."""

    __slots__ = ("resets", "spent")

    def __init__(self, spent: int, resets: float | None) -> None:
        #: Micro-dollars.
        self.spent = spent
        #: When the counter's period ends (epoch seconds; ``None``: never).
        self.resets = resets


class MemoryBudgets(BudgetStore):
    """Counters of one process. Expired periods are forgotten when more than ``MAX_KEPT``."""

    MAX_KEPT = 100_000

    def __init__(self) -> None:
        #: Counter name -> what it has used.
        self.used: dict[str, _Used] = {}

    async def reserve(self, tag: str, counters: Sequence[Counter], amount: int) -> int | None:
        return self.reserve_now(counters, amount)

    def reserve_now(self, counters: Sequence[Counter], amount: int) -> int | None:
        """:meth:`reserve`, without a coroutine (the spend filter calls it directly)."""
        used = self.used
        for i, c in enumerate(counters):
            kept = used.get(c.name)
            spent = 0 if kept is None else kept.spent
            if spent >= c.limit or spent + amount > c.limit:
                return i
        self.settle_now(counters, amount)  # adds ``amount`` to each
        return None

    async def settle(self, tag: str, counters: Sequence[Counter], delta: int) -> None:
        self.settle_now(counters, delta)

    def settle_now(self, counters: Sequence[Counter], delta: int) -> None:
        """:meth:`settle`, without a coroutine."""
        if not delta:
            return  # nothing to add (the reservation was the cost, or nothing was reserved)
        used = self.used
        for c in counters:
            kept = used.get(c.name)
            if kept is not None:
                kept.spent += delta
                continue
            used[c.name] = _Used(delta, c.resets)
            if len(used) > self.MAX_KEPT:
                self._forget_expired()

    def _forget_expired(self) -> None:
        """Drop the counters whose period is over."""
        now = time.time()
        used = self.used
        for name, kept in list(used.items()):
            if kept.resets is not None and kept.resets < now:
                del used[name]

    async def spent(self, tag: str, counter: Counter) -> int:
        kept = self.used.get(counter.name)
        return 0 if kept is None else kept.spent


# KEYS: the counters. ARGV: amount, then each counter's limit, then each one's ttl (0: none).
# Returns 0 (reserved on all), the 1-based index of the first that refuses, or minus the index
# of the first that is missing (never made, or lost: Redis flushed, or restarted without its
# data): that one is made from the ledger first, then the script is run again.
RESERVE = """
local amount = tonumber(ARGV[1])
local n = #KEYS
for i = 1, n do
  local value = redis.call('GET', KEYS[i])
  if not value then return -i end
  local used = tonumber(value)
  local limit = tonumber(ARGV[1 + i])
  if used >= limit or used + amount > limit then return i end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], amount)
  local ttl = tonumber(ARGV[1 + n + i])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 0
"""

# KEYS: the counters. ARGV: the delta, then each one's ttl. A counter lost since the
# reservation is left missing (made again from the ledger, this request's row with it).
SETTLE = """
local n = #KEYS
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], tonumber(ARGV[1]))
    local ttl = tonumber(ARGV[1 + i])
    if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
return 0
"""


class RedisBudgets(BudgetStore):
    """Counters shared by every instance on one Redis. A counter that is missing when a request
    reserves (its period's first request, or Redis lost it) is made from ``spent`` (the
    ledger's sum for its period; 0 without a ledger) with ``SET NX``: instances that find it
    missing at once make it once, and no request adds to it before it is made."""

    def __init__(self, redis: RedisState, spent: Spent | None = None) -> None:
        self.redis = redis
        self.spent_so_far = spent
        self._reserve, self._settle = redis.script(RESERVE), redis.script(SETTLE)

    def _keys(self, tag: str, counters: Sequence[Counter]) -> list[str]:
        return [self.redis.key("budget", tag, c.name) for c in counters]

    async def reserve(self, tag: str, counters: Sequence[Counter], amount: int) -> int | None:
        args = [amount, *(c.limit for c in counters), *(c.ttl for c in counters)]
        keys = self._keys(tag, counters)
        # Each missing counter is made once; then the reservation is asked again.
        for _ in range(len(counters) + 1):
            refused = int(await self._reserve.batched(keys, args, "budgets"))
            if refused >= 0:
                return None if refused == 0 else refused - 1
            await self._make(keys[-refused - 1], counters[-refused - 1])
        raise Unavailable("budgets: counters kept going missing in Redis", code="budgets")

    async def _make(self, key: str, counter: Counter) -> None:
        """The missing counter ``key``, from what the ledger says its period spent."""
        spent = await self.spent_so_far(counter) if self.spent_so_far is not None else 0
        async with self.redis.guard("budgets"):
            await self.redis.client.set(key, spent, nx=True, ex=counter.ttl or None)

    async def settle(self, tag: str, counters: Sequence[Counter], delta: int) -> None:
        args = [delta, *(c.ttl for c in counters)]
        await self._settle.batched(self._keys(tag, counters), args, "budgets")

    async def spent(self, tag: str, counter: Counter) -> int:
        async with self.redis.guard("budgets"):
            value = await self.redis.client.get(self._keys(tag, [counter])[0])
        return int(value or 0)
