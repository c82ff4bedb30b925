"""Token buckets: how much of a key's per-minute allowance is left, in memory or in Redis.

Each key has two buckets, requests and tokens. A bucket holds at most the per-minute limit and
refills continuously at the limit per minute, so a key may burst up to its whole allowance and
then goes on at the limit's pace; over any minute it gets at most twice the limit, and over a long
run exactly the limit. A request takes one from the request bucket and needs at least one token
left in the token bucket. Tokens are only known once the answer is in: they are taken then, and
may leave the bucket below zero, which holds the key's next requests back until it has refilled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gateway import RedisState

Limit = Literal["requests", "tokens"]
#: What :meth:`Buckets.acquire` says: seconds to wait and which limit holds the request back
#: (``(0, None)``: it may go), and the requests and tokens left after it.
Verdict = tuple[float, Limit | None, float, float]


class Buckets:
    """Where the buckets are kept."""

    async def acquire(self, owner: str, rpm: int, tpm: int) -> Verdict:
        """Take one request from ``owner``'s allowance: ``(0, None, ...)`` when it may go, else
        the seconds to wait and which limit holds it back (nothing is taken then); then the
        requests and tokens left (for ``x-ratelimit-remaining-*``). 0 is no limit."""
        raise NotImplementedError

    async def spend(self, owner: str, tpm: int, tokens: int) -> None:
        """Take ``tokens`` from ``owner``'s token bucket (after an answer)."""
        raise NotImplementedError


def _refilled(level: float, since: float, now: float, cap: int) -> float:
    return min(float(cap), level + (now - since) * cap / 60.0)


class MemoryBuckets(Buckets):
    """Buckets of one process (the event loop makes every method atomic)."""

    #: Idle full buckets are forgotten when more than this many are kept.
    MAX_KEPT = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._levels: dict[tuple[str, str], tuple[float, float, int]] = {}

    def _level(self, key: tuple[str, str], cap: int, now: float) -> float:
        kept = self._levels.get(key)
        return float(cap) if kept is None else _refilled(kept[0], kept[1], now, cap)

    def _keep(self, key: tuple[str, str], level: float, now: float, cap: int) -> None:
        levels = self._levels
        levels[key] = (level, now, cap)
        if len(levels) > self.MAX_KEPT:
            for k, (lvl, since, c) in list(levels.items()):
                if _refilled(lvl, since, now, c) >= c:
                    del levels[k]

    async def acquire(self, owner: str, rpm: int, tpm: int) -> Verdict:
        now = self.clock()
        wait = 0.0
        limit: Limit | None = None
        requests = self._level((owner, "r"), rpm, now) if rpm else 0.0
        tokens = self._level((owner, "t"), tpm, now) if tpm else 0.0
        if rpm and requests < 1:
            wait, limit = (1 - requests) * 60.0 / rpm, "requests"
        if tpm and tokens < 1 and (1 - tokens) * 60.0 / tpm > wait:
            wait, limit = (1 - tokens) * 60.0 / tpm, "tokens"
        if limit is not None:
            return wait, limit, requests, tokens
        if rpm:
            requests -= 1
            self._keep((owner, "r"), requests, now, rpm)
        return 0.0, None, requests, tokens

    async def spend(self, owner: str, tpm: int, tokens: int) -> None:
        now = self.clock()
        key = (owner, "t")
        self._keep(key, self._level(key, tpm, now) - tokens, now, tpm)


# KEYS: request bucket, token bucket. ARGV: rpm, tpm, tokens to spend (-1: acquire a request).
# Returns "0:0:<requests left>:<tokens left>" (go ahead) or "<r|t>:<seconds to wait>:<left>:<left>".
# A bucket is a hash {l: level, t: time}.
BUCKETS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, cap)
  local v = redis.call('HMGET', key, 'l', 't')
  local l = tonumber(v[1])
  if not l then return cap end
  return math.min(cap, l + (now - tonumber(v[2])) * cap / 60)
end
local function keep(key, cap, l)
  redis.call('HSET', key, 'l', string.format('%.6f', l), 't', string.format('%.6f', now))
  redis.call('PEXPIRE', key, math.ceil((cap - l) * 60000 / cap) + 1000)
end
local rpm, tpm, spend = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if spend >= 0 then
  if tpm > 0 then keep(KEYS[2], tpm, level(KEYS[2], tpm) - spend) end
  return '0'
end
local wait, which, r, k = 0, '', 0, 0
if rpm > 0 then
  r = level(KEYS[1], rpm)
  if r < 1 then wait, which = (1 - r) * 60 / rpm, 'r' end
end
if tpm > 0 then
  k = level(KEYS[2], tpm)
  if k < 1 and (1 - k) * 60 / tpm > wait then wait, which = (1 - k) * 60 / tpm, 't' end
end
local left = string.format(':%.3f:%.3f', r, k)
if which ~= '' then return which .. ':' .. string.format('%.3f', wait) .. left end
if rpm > 0 then
  r = r - 1
  keep(KEYS[1], rpm, r)
end
return '0:0' .. string.format(':%.3f:%.3f', r, k)
"""


class RedisBuckets(Buckets):
    """Buckets shared by every gateway process on one Redis (``<prefix>limits:{owner}:r|t``),
    updated by one Lua script on Redis's clock, so N instances together allow the limit once."""

    def __init__(self, redis: RedisState) -> None:
        self.redis = redis
        self._script = redis.script(BUCKETS)

    def _keys(self, owner: str) -> list[str]:
        return [self.redis.key("limits", owner, "r"), self.redis.key("limits", owner, "t")]

    async def acquire(self, owner: str, rpm: int, tpm: int) -> Verdict:
        answer = await self._script.batched(self._keys(owner), [rpm, tpm, -1], "rate limits")
        which, wait, requests, tokens = answer.decode().split(":")
        limit: Limit | None = None
        if which != "0":
            limit = "requests" if which == "r" else "tokens"
        return float(wait), limit, float(requests), float(tokens)

    async def spend(self, owner: str, tpm: int, tokens: int) -> None:
        await self._script.batched(self._keys(owner), [0, tpm, max(0, tokens)], "rate limits")
