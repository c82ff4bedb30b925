"""The ``redis`` session store: sessions shared by every gateway process pointing at one Redis.

Per session (``O`` the owner's principal id, ``S`` the session id), all under the hash tag
``{O}`` so one Lua script may touch them together on Redis Cluster::

    <prefix>sessions:{O}            sorted set: S -> last use (ms), to list O's sessions
    <prefix>sessions:{O}:e:S        list: the encoded entries, oldest first
    <prefix>sessions:{O}:h:S        list: each entry's "<messages> <tokens> <starts_user>"
    <prefix>sessions:{O}:i:S        hash: created, updated, messages, tokens, system

An append is one Lua script: push the entry, add up the counts, trim whole entries from the old
end by the same rule as :func:`gateway.sessions.base.trim`, refresh every TTL and the index.
Redis runs a script alone, so two requests appending to one session both land. Times come from
Redis's own clock (``TIME``), the same for every gateway host.

An append carries a deadline on Redis's clock (see ``RedisState.redis_time``): half the command
``timeout`` after it is sent. A script that runs later changes nothing and says so. So when
Redis stalls, the append the gateway gave up on (and reported to the client as failed) is never
applied when Redis comes back: a turn is stored exactly when the client was told it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway import (
    Entry,
    Session,
    SessionConfig,
    SessionInfo,
    SessionStore,
    Unavailable,
    hookimpl,
)
from gateway.sessions import codec

if TYPE_CHECKING:
    from gateway import RedisState

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: entries, heads, info, index.
# ARGV: entry, header, messages, tokens, max_messages, max_tokens, ttl_ms, session, system|'',
# deadline (Redis ms). Returns 1, or 0 (nothing written) when run after the deadline.
APPEND = (
    _NOW
    + """
if now > tonumber(ARGV[10]) then return 0 end
local ttl = tonumber(ARGV[7])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
local msgs = redis.call('HINCRBY', KEYS[3], 'messages', ARGV[3])
local tokens = redis.call('HINCRBY', KEYS[3], 'tokens', ARGV[4])
redis.call('HSETNX', KEYS[3], 'created', now)
redis.call('HSET', KEYS[3], 'updated', now)
if ARGV[9] ~= '' then redis.call('HSET', KEYS[3], 'system', ARGV[9]) end
local maxm, maxt = tonumber(ARGV[5]), tonumber(ARGV[6])
if msgs > maxm or tokens > maxt then
  local heads = redis.call('LRANGE', KEYS[2], 0, -1)
  local cut, cm, ct, dm, dt = 0, 0, 0, 0, 0
  for i = 1, #heads - 1 do
    local m, k = string.match(heads[i], '^(%d+) (%d+)')
    dm = dm + tonumber(m)
    dt = dt + tonumber(k)
    if string.sub(heads[i + 1], -1) == '1' then
      cut, cm, ct = i, dm, dt
      if msgs - cm <= maxm and tokens - ct <= maxt then break end
    end
  end
  if cut > 0 then
    redis.call('LTRIM', KEYS[1], cut, -1)
    redis.call('LTRIM', KEYS[2], cut, -1)
    redis.call('HINCRBY', KEYS[3], 'messages', -cm)
    redis.call('HINCRBY', KEYS[3], 'tokens', -ct)
  end
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
redis.call('ZADD', KEYS[4], now, ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
return 1
"""
)

# KEYS: entries, heads, info, index. ARGV: ttl_ms, session, touch (1|0).
# Returns nil, or {created, updated, messages, tokens, system, now, pttl, entries}.
LOAD = (
    _NOW
    + """
local info = redis.call('HMGET', KEYS[3], 'created', 'updated', 'messages', 'tokens', 'system')
if not info[1] then return nil end
if ARGV[3] == '1' then
  local ttl = tonumber(ARGV[1])
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
  redis.call('ZADD', KEYS[4], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[4], ttl)
end
return {info[1], info[2], info[3], info[4], info[5] or '', now,
        redis.call('PTTL', KEYS[3]), redis.call('LRANGE', KEYS[1], 0, -1)}
"""
)

# KEYS: index. ARGV: ttl_ms, limit. Forgets expired sessions; returns {now, ids (limit + 1)}.
LIST = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
return {now, redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]))}
"""
)

WHAT = "sessions"


class RedisSessionStore(SessionStore):
    def __init__(self, config: SessionConfig, redis: RedisState) -> None:
        super().__init__(config)
        self.redis = redis
        self.ttl_ms = max(1, int(self.ttl * 1000))
        self._append = redis.script(APPEND)
        self._load = redis.script(LOAD)
        self._list = redis.script(LIST)

    def _keys(self, owner: str, session: str) -> list[str]:
        key = self.redis.key
        return [
            key(WHAT, owner, "e", session),
            key(WHAT, owner, "h", session),
            key(WHAT, owner, "i", session),
            key(WHAT, owner),
        ]

    async def load(self, owner: str, session: str, *, touch: bool = True) -> Session | None:
        async with self.redis.guard(WHAT):
            found = await self._load(self._keys(owner, session), [self.ttl_ms, session, int(touch)])
        if found is None:
            return None
        created, updated, messages, tokens, system, now, pttl, entries = found
        info = SessionInfo(
            session,
            int(created) / 1000,
            int(updated) / 1000,
            (int(now) + max(0, int(pttl))) / 1000,
            int(messages),
            int(tokens),
        )
        history = [m for data in entries for m in codec.loads(data)]
        return Session(info, codec.loads(system) if system else [], history)

    async def append(
        self, owner: str, session: str, entry: Entry, system: bytes | None = None
    ) -> None:
        async with self.redis.guard(WHAT):
            deadline = await self.redis.redis_time() + self.redis.config.timeout / 2
            applied = await self._append(
                self._keys(owner, session),
                [
                    entry.data,
                    entry.header(),
                    entry.messages,
                    entry.tokens,
                    self.max_messages,
                    self.max_tokens,
                    self.ttl_ms,
                    session,
                    system or b"",
                    int(deadline * 1000),
                ],
            )
        if not applied:
            raise Unavailable(
                "The gateway's state store answered too late, so this turn was not added to "
                "the session. Retry shortly.",
                code="state_store_unavailable",
                retry_after=1.0,
            )

    async def list(self, owner: str, limit: int) -> tuple[list[SessionInfo], bool]:
        async with self.redis.guard(WHAT):
            now, sessions = await self._list([self.redis.key(WHAT, owner)], [self.ttl_ms, limit])
            async with self.redis.client.pipeline(transaction=False) as pipe:
                for session in sessions[:limit]:
                    info = self.redis.key(WHAT, owner, "i", session.decode())
                    pipe.hmget(info, "created", "updated", "messages", "tokens")
                    pipe.pttl(info)
                found = await pipe.execute()
        out = []
        for i, session in enumerate(sessions[:limit]):
            (created, updated, messages, tokens), pttl = found[2 * i], found[2 * i + 1]
            if created is None or pttl < 0:
                continue  # expired between the two reads
            out.append(
                SessionInfo(
                    session.decode(),
                    int(created) / 1000,
                    int(updated) / 1000,
                    (int(now) + pttl) / 1000,
                    int(messages),
                    int(tokens),
                )
            )
        return out, len(sessions) > limit

    async def delete(self, owner: str, session: str) -> bool:
        entries, heads, info, index = self._keys(owner, session)
        async with (
            self.redis.guard(WHAT),
            self.redis.client.pipeline(transaction=True) as pipe,
        ):
            pipe.delete(entries, heads, info)
            pipe.zrem(index, session)
            deleted: int
            deleted, _ = await pipe.execute()
        return deleted > 0


@hookimpl
def gateway_register_session_stores(register: Any) -> None:
    def factory(gateway: Any) -> RedisSessionStore:
        redis = gateway.state.redis("sessions.store")
        return RedisSessionStore(gateway.config.section("sessions"), redis)

    register("redis", factory)
