"""``Mcp-Session-Id`` sessions of ``/mcp``: in this process, or in Redis for every instance.

A session is what ``initialize`` agreed on (the protocol version) and who opened it (the
caller's principal id, so no other key can use it). It holds nothing else: every request is
served from the session record alone, so a load balancer may send each request of a session
to a different instance when the record is in Redis. Records expire ``session_ttl`` after
their last use; ``DELETE /mcp`` ends one at once.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

import attrs
import orjson

if TYPE_CHECKING:
    from gateway import RedisState


@attrs.frozen
class MCPSession:
    id: str
    protocol_version: str
    owner: str


def new_session_id() -> str:
    """A session id: visible ASCII, unguessable (as the specification asks)."""
    return secrets.token_urlsafe(24)


class MemorySessions:
    """Sessions kept in this process (one instance, one worker)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._sessions: dict[str, tuple[MCPSession, float]] = {}

    async def create(self, protocol_version: str, owner: str) -> MCPSession:
        self._expire()
        session = MCPSession(new_session_id(), protocol_version, owner)
        self._sessions[session.id] = (session, time.monotonic() + self.ttl)
        return session

    async def get(self, session_id: str) -> MCPSession | None:
        found = self._sessions.get(session_id)
        if found is None or found[1] < time.monotonic():
            self._sessions.pop(session_id, None)
            return None
        self._sessions[session_id] = (found[0], time.monotonic() + self.ttl)
        return found[0]

    async def delete(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, until) in self._sessions.items() if until < now]:
            del self._sessions[key]


class RedisSessions:
    """Sessions in Redis (``<prefix>mcp:{<id>}:session``), shared by every instance."""

    def __init__(self, state: RedisState, ttl: float) -> None:
        self.state = state
        self.ttl = max(1, round(ttl))

    def _key(self, session_id: str) -> str:
        return self.state.key("mcp", session_id, "session")

    async def create(self, protocol_version: str, owner: str) -> MCPSession:
        session = MCPSession(new_session_id(), protocol_version, owner)
        record = orjson.dumps({"v": protocol_version, "owner": owner})
        async with self.state.guard("MCP sessions"):
            await self.state.client.set(self._key(session.id), record, ex=self.ttl)
        return session

    async def get(self, session_id: str) -> MCPSession | None:
        async with self.state.guard("MCP sessions"):
            raw = await self.state.client.getex(self._key(session_id), ex=self.ttl)
        if raw is None:
            return None
        record = orjson.loads(raw)
        return MCPSession(session_id, record["v"], record["owner"])

    async def delete(self, session_id: str) -> bool:
        async with self.state.guard("MCP sessions"):
            return bool(await self.state.client.delete(self._key(session_id)))


Sessions = MemorySessions | RedisSessions
