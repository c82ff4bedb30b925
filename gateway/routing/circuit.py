"""Circuit breaking per target: in this process, or shared by every instance through Redis.

A target that fails ``allowed_fails`` times within ``fail_window`` is *open*: skipped for
``cooldown``. Then it is *half-open*: one request (the probe) is let through; its success closes
the circuit, its failure opens it for another ``cooldown``. :class:`MemoryCircuits` keeps that in
the process; :class:`RedisCircuits` keeps it in Redis (``[redis]`` configured), so every gateway
instance skips a target that one of them saw fail. When Redis cannot be reached, targets count as
closed (a request is never refused for the breaker's sake).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.state.redis import RedisState

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@attrs.frozen
class Breaker:
    """A model's circuit settings (from ``[models.<name>]``)."""

    allowed_fails: int
    window: float
    cooldown: float


@attrs.frozen
class Health:
    """A target's circuit as one look saw it: ``state`` and the failures counted."""

    state: str = CLOSED
    fails: int = 0

    @property
    def clean(self) -> bool:
        return self.state == CLOSED and self.fails == 0


_HEALTHY = Health()


@attrs.define
class _Memory:
    fails: list[float] = attrs.Factory(list)
    open_until: float = 0.0
    tripped: bool = False
    probe_until: float = 0.0


class MemoryCircuits:
    """Circuits kept in this process."""

    def __init__(self) -> None:
        self._states: dict[str, _Memory] = {}
        self.clock = time.monotonic

    async def health(self, keys: Sequence[str], breaker: Breaker) -> list[Health]:
        return [self._health(key, breaker) for key in keys]

    def _health(self, key: str, breaker: Breaker) -> Health:
        st = self._states.get(key)
        if st is None:
            return _HEALTHY
        now = self.clock()
        if st.open_until > now:
            return Health(OPEN, len(st.fails))
        fails = [t for t in st.fails if now - t < breaker.window]
        st.fails = fails
        return Health(HALF_OPEN if st.tripped else CLOSED, len(fails))

    async def probe(self, key: str, breaker: Breaker) -> bool:
        """Take the one probe of a half-open target (False: another request has it)."""
        st = self._states.setdefault(key, _Memory())
        now = self.clock()
        if st.probe_until > now:
            return False
        st.probe_until = now + breaker.cooldown
        return True

    async def success(self, key: str, seen: Health, breaker: Breaker) -> None:
        if not seen.clean:
            self._states.pop(key, None)

    async def failure(self, key: str, breaker: Breaker) -> bool:
        """Count a failure; True when it opened the circuit."""
        st = self._states.setdefault(key, _Memory())
        now = self.clock()
        if st.probe_until > now or (st.tripped and st.open_until <= now):
            st.open_until, st.probe_until = now + breaker.cooldown, 0.0
            return True
        st.fails = [t for t in st.fails if now - t < breaker.window]
        st.fails.append(now)
        if breaker.allowed_fails and len(st.fails) >= breaker.allowed_fails:
            st.open_until, st.tripped, st.fails = now + breaker.cooldown, True, []
            return True
        return False


# KEYS: fails, open, tripped, probe. ARGV: allowed_fails, window ms, cooldown ms.
# Returns 1 when this failure opened the circuit.
_FAILURE = """
local half_open = redis.call('EXISTS', KEYS[3]) == 1 and redis.call('EXISTS', KEYS[2]) == 0
if redis.call('EXISTS', KEYS[4]) == 1 or half_open then
  redis.call('SET', KEYS[2], 1, 'PX', ARGV[3])
  redis.call('DEL', KEYS[4])
  return 1
end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local allowed = tonumber(ARGV[1])
if allowed > 0 and n >= allowed then
  redis.call('SET', KEYS[2], 1, 'PX', ARGV[3])
  redis.call('SET', KEYS[3], 1, 'PX', 86400000)
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class RedisCircuits:
    """Circuits kept in Redis, shared by every instance. Keys:
    ``<prefix>circuit:{<key>}:fails|open|tripped|probe``."""

    def __init__(self, state: RedisState) -> None:
        self.state = state
        self._failure = state.script(_FAILURE)

    def _keys(self, key: str) -> list[str]:
        k = self.state.key
        return [k("circuit", key, part) for part in ("fails", "open", "tripped", "probe")]

    async def health(self, keys: Sequence[str], breaker: Breaker) -> list[Health]:
        names = [name for key in keys for name in self._keys(key)[:3]]
        try:
            async with self.state.guard("circuit breaking"):
                values = await self.state.client.mget(names)
        except GatewayError:
            return [_HEALTHY for _ in keys]
        out = []
        for i in range(len(keys)):
            fails, opened, tripped = values[3 * i : 3 * i + 3]
            count = int(fails or 0)
            if opened:
                out.append(Health(OPEN, count))
            elif tripped:
                out.append(Health(HALF_OPEN, count))
            else:
                out.append(Health(CLOSED, count) if count else _HEALTHY)
        return out

    async def probe(self, key: str, breaker: Breaker) -> bool:
        try:
            async with self.state.guard("circuit breaking"):
                got = await self.state.client.set(
                    self._keys(key)[3], 1, nx=True, px=max(1, int(breaker.cooldown * 1000))
                )
        except GatewayError:
            return True
        return bool(got)

    async def success(self, key: str, seen: Health, breaker: Breaker) -> None:
        if seen.clean:
            return
        try:
            async with self.state.guard("circuit breaking"):
                await self.state.client.delete(*self._keys(key))
        except GatewayError:
            pass

    async def failure(self, key: str, breaker: Breaker) -> bool:
        args = [
            breaker.allowed_fails,
            max(1, int(breaker.window * 1000)),
            max(1, int(breaker.cooldown * 1000)),
        ]
        try:
            async with self.state.guard("circuit breaking"):
                opened = await self._failure(self._keys(key), args)
        except GatewayError:
            return False
        return bool(opened)


Circuits = MemoryCircuits | RedisCircuits
