"""What triggers keep that every instance must agree on: seen delivery ids, leases, poller ticks.

Two implementations with one behaviour: :class:`MemoryTriggerState` for a gateway that runs
alone, and :class:`RedisTriggerState`, where every check-and-set is one atomic Redis command or
Lua script, so several instances agree without talking to each other:

- **delivery ids** (``first_seen``): ``SET NX`` with a TTL; the first instance to see an id wins;
- **leases** (``acquire`` / ``extend`` / ``release``): a key holding the holder's random token,
  with a TTL the holder keeps extending; extending and releasing compare the token first, so an
  instance whose lease expired can never extend or delete the next holder's;
- **poller ticks** (``claim_tick`` / ``end_tick``): tick ``n`` of a poller is claimed by exactly
  one instance, never while the previous tick still runs (its lease is held), and not during a
  backoff after failures.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gateway import RedisState

Claim = Literal["ok", "done", "busy", "backoff"]
"""``ok``: this instance runs the tick; ``done``: another instance claimed it; ``busy``: the
previous tick still runs, so this one is skipped; ``backoff``: skipped after failures."""

WHAT = "triggers"


def resume_after(tick: int, failures: int, max_skip: int) -> int:
    """The first tick to run after ``failures`` consecutive failures ending at ``tick``: the
    gap doubles with each failure (none after the first), up to ``max_skip`` ticks."""
    gap: int = 2 ** (failures - 1)  # an int: failures >= 1
    return tick + min(gap, max_skip + 1)


class TriggerState:
    """The operations; see the module docstring. Times are in seconds."""

    async def first_seen(self, space: str, item: str, ttl: float) -> bool:
        """Record ``item``; ``False`` when it was recorded less than ``ttl`` seconds ago."""
        raise NotImplementedError

    async def forget(self, space: str, item: str) -> None:
        """Undo :meth:`first_seen` (the item was not processed after all)."""
        raise NotImplementedError

    async def acquire(self, name: str, token: str, ttl: float) -> bool:
        raise NotImplementedError

    async def extend(self, name: str, token: str, ttl: float) -> bool:
        """Keep the lease ``ttl`` seconds longer; ``False`` when ``token`` no longer holds it."""
        raise NotImplementedError

    async def release(self, name: str, token: str) -> None:
        raise NotImplementedError

    async def claim_tick(self, poller: str, tick: int, token: str, lease: float) -> Claim:
        """Claim tick ``tick``; on ``ok`` this instance holds the poller's lease ``poller``."""
        raise NotImplementedError

    async def end_tick(self, poller: str, tick: int, token: str, ok: bool, max_skip: int) -> int:
        """Release the lease and record the outcome; returns the consecutive failures."""
        raise NotImplementedError

    async def get(self, name: str) -> str | None:
        raise NotImplementedError

    async def put(self, name: str, value: str, ttl: float) -> None:
        raise NotImplementedError


class MemoryTriggerState(TriggerState):
    """Everything in this process. Seen ids are bounded (the oldest are forgotten first)."""

    def __init__(self, max_seen: int = 100_000) -> None:
        self.max_seen = max_seen
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._leases: dict[str, tuple[str, float]] = {}
        #: poller -> [last claimed tick, consecutive failures, first tick to run again]
        self._ticks: dict[str, list[int]] = {}
        self._values: dict[str, tuple[str, float]] = {}

    async def first_seen(self, space: str, item: str, ttl: float) -> bool:
        now = time.monotonic()
        seen = self._seen
        while seen and (len(seen) >= self.max_seen or next(iter(seen.values())) <= now):
            seen.popitem(last=False)
        key = (space, item)
        expires = seen.get(key)
        if expires is not None and expires > now:
            return False
        seen[key] = now + ttl
        seen.move_to_end(key)
        return True

    async def forget(self, space: str, item: str) -> None:
        self._seen.pop((space, item), None)

    def _holder(self, name: str) -> str | None:
        held = self._leases.get(name)
        if held is None or held[1] <= time.monotonic():
            return None
        return held[0]

    async def acquire(self, name: str, token: str, ttl: float) -> bool:
        if self._holder(name) is not None:
            return False
        self._leases[name] = (token, time.monotonic() + ttl)
        return True

    async def extend(self, name: str, token: str, ttl: float) -> bool:
        if self._holder(name) != token:
            return False
        self._leases[name] = (token, time.monotonic() + ttl)
        return True

    async def release(self, name: str, token: str) -> None:
        if self._holder(name) == token:
            del self._leases[name]

    async def claim_tick(self, poller: str, tick: int, token: str, lease: float) -> Claim:
        state = self._ticks.setdefault(poller, [-1, 0, 0])
        if state[0] >= tick:
            return "done"
        state[0] = tick
        if tick < state[2]:
            return "backoff"
        if not await self.acquire(poller, token, lease):
            return "busy"
        return "ok"

    async def end_tick(self, poller: str, tick: int, token: str, ok: bool, max_skip: int) -> int:
        await self.release(poller, token)
        state = self._ticks.setdefault(poller, [tick, 0, 0])
        if ok:
            state[1] = state[2] = 0
        else:
            state[1] += 1
            state[2] = resume_after(tick, state[1], max_skip)
        return state[1]

    async def get(self, name: str) -> str | None:
        found = self._values.get(name)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    async def put(self, name: str, value: str, ttl: float) -> None:
        self._values[name] = (value, time.monotonic() + ttl)


_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: the poller's lease, its state hash. ARGV: token, tick, lease ms, state ttl ms.
_CLAIM = """
local tick = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[2], 'tick') or '-1')
if last >= tick then return 'done' end
redis.call('HSET', KEYS[2], 'tick', tick)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if tick < tonumber(redis.call('HGET', KEYS[2], 'resume') or '0') then return 'backoff' end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then return 'ok' end
return 'busy'
"""

# KEYS: lease, state. ARGV: token, tick, ok (1/0), max skip, state ttl ms.
_END = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local failures = 0
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], 'failures', 0, 'resume', 0)
else
  failures = redis.call('HINCRBY', KEYS[2], 'failures', 1)
  local gap = math.min(2 ^ (failures - 1), tonumber(ARGV[4]) + 1)
  redis.call('HSET', KEYS[2], 'resume', tonumber(ARGV[2]) + gap)
end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return failures
"""

#: The claim script's replies.
_CLAIMS: dict[str, Claim] = {"ok": "ok", "done": "done", "busy": "busy", "backoff": "backoff"}

#: How long a poller's tick record outlives its last use.
_STATE_TTL_MS = 7 * 24 * 3600 * 1000


class RedisTriggerState(TriggerState):
    """The same in Redis. Keys: ``<prefix>triggers:{<name>}:...``; a poller's lease and state
    share the tag ``{poller/<name>}`` so one script may touch both."""

    def __init__(self, redis: RedisState) -> None:
        self.redis = redis
        self._extend = redis.script(_EXTEND)
        self._release = redis.script(_RELEASE)
        self._claim = redis.script(_CLAIM)
        self._end = redis.script(_END)

    def _lease(self, name: str) -> str:
        return self.redis.key("triggers", name, "lease")

    async def first_seen(self, space: str, item: str, ttl: float) -> bool:
        key = self.redis.key("triggers", f"{space}/{item}", "seen")
        async with self.redis.guard(WHAT):
            return bool(await self.redis.client.set(key, 1, nx=True, px=_ms(ttl)))

    async def forget(self, space: str, item: str) -> None:
        async with self.redis.guard(WHAT):
            await self.redis.client.delete(self.redis.key("triggers", f"{space}/{item}", "seen"))

    async def acquire(self, name: str, token: str, ttl: float) -> bool:
        async with self.redis.guard(WHAT):
            return bool(await self.redis.client.set(self._lease(name), token, nx=True, px=_ms(ttl)))

    async def extend(self, name: str, token: str, ttl: float) -> bool:
        async with self.redis.guard(WHAT):
            return bool(await self._extend([self._lease(name)], [token, _ms(ttl)]))

    async def release(self, name: str, token: str) -> None:
        async with self.redis.guard(WHAT):
            await self._release([self._lease(name)], [token])

    async def claim_tick(self, poller: str, tick: int, token: str, lease: float) -> Claim:
        keys = [self._lease(poller), self.redis.key("triggers", poller, "ticks")]
        async with self.redis.guard(WHAT):
            found = await self._claim(keys, [token, tick, _ms(lease), _STATE_TTL_MS])
        return _CLAIMS[found.decode() if isinstance(found, bytes) else found]

    async def end_tick(self, poller: str, tick: int, token: str, ok: bool, max_skip: int) -> int:
        keys = [self._lease(poller), self.redis.key("triggers", poller, "ticks")]
        async with self.redis.guard(WHAT):
            failures = await self._end(keys, [token, tick, 1 if ok else 0, max_skip, _STATE_TTL_MS])
        return int(failures)

    async def get(self, name: str) -> str | None:
        async with self.redis.guard(WHAT):
            found = await self.redis.client.get(self.redis.key("triggers", name, "value"))
        return found.decode() if isinstance(found, bytes) else found

    async def put(self, name: str, value: str, ttl: float) -> None:
        key = self.redis.key("triggers", name, "value")
        async with self.redis.guard(WHAT):
            await self.redis.client.set(key, value, px=_ms(ttl))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
