"""The ``memory`` session store: the embedded default for one gateway process.

Sessions live in a dictionary kept in least-recently-used order, bounded by ``[sessions]
max_sessions`` (the least recently used go first) and by ``ttl`` (an expired session is gone
when next looked at, and expired ones at the old end are swept as new ones arrive). Entries are
kept encoded, so a filter that edits a request's messages never edits the stored history. The
event loop runs each method without awaiting, so every change is atomic.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Any

from gateway import Entry, Session, SessionConfig, SessionInfo, SessionStore, hookimpl, trim
from gateway.sessions import codec


class _Stored:
    __slots__ = ("created", "entries", "messages", "system", "tokens", "updated", "used")

    def __init__(self, now: float) -> None:
        self.entries: deque[Entry] = deque()
        self.system: bytes | None = None
        self.created = self.updated = self.used = now
        self.messages = 0
        self.tokens = 0


class MemorySessionStore(SessionStore):
    def __init__(self, config: SessionConfig) -> None:
        super().__init__(config)
        self.max_sessions = int(config.max_sessions)
        self._sessions: OrderedDict[tuple[str, str], _Stored] = OrderedDict()
        self._owners: dict[str, set[str]] = {}

    def _get(self, owner: str, session: str, now: float) -> _Stored | None:
        key = (owner, session)
        stored = self._sessions.get(key)
        if stored is not None and stored.used + self.ttl <= now:
            self._drop(key)
            return None
        return stored

    def _drop(self, key: tuple[str, str]) -> None:
        del self._sessions[key]
        owned = self._owners.get(key[0])
        if owned is not None:
            owned.discard(key[1])
            if not owned:
                del self._owners[key[0]]

    def _info(self, session: str, s: _Stored) -> SessionInfo:
        return SessionInfo(session, s.created, s.updated, s.used + self.ttl, s.messages, s.tokens)

    async def load(self, owner: str, session: str, *, touch: bool = True) -> Session | None:
        now = time.time()
        stored = self._get(owner, session, now)
        if stored is None:
            return None
        if touch:
            stored.used = now
            self._sessions.move_to_end((owner, session))
        messages = [m for e in stored.entries for m in codec.loads(e.data)]
        system = codec.loads(stored.system) if stored.system else []
        return Session(self._info(session, stored), system, messages)

    async def append(
        self, owner: str, session: str, entry: Entry, system: bytes | None = None
    ) -> None:
        now = time.time()
        key = (owner, session)
        stored = self._get(owner, session, now)
        if stored is None:
            stored = self._sessions[key] = _Stored(now)
            self._owners.setdefault(owner, set()).add(session)
            self._sweep(now)
        else:
            self._sessions.move_to_end(key)
        stored.entries.append(entry)
        stored.messages += entry.messages
        stored.tokens += entry.tokens
        if system is not None:
            stored.system = system
        stored.updated = stored.used = now
        headers = [(e.messages, e.tokens, e.starts_user) for e in stored.entries]
        drop, messages, tokens = trim(headers, stored.messages, stored.tokens, self)
        for _ in range(drop):
            stored.entries.popleft()
        stored.messages -= messages
        stored.tokens -= tokens

    def _sweep(self, now: float) -> None:
        """Drop expired sessions from the old end, and the oldest beyond ``max_sessions``."""
        sessions = self._sessions
        while sessions:
            key, oldest = next(iter(sessions.items()))
            if len(sessions) <= self.max_sessions and oldest.used + self.ttl > now:
                break
            self._drop(key)

    async def list(self, owner: str, limit: int) -> tuple[list[SessionInfo], bool]:
        now = time.time()
        found = []
        for session in list(self._owners.get(owner, ())):
            stored = self._get(owner, session, now)
            if stored is not None:
                found.append(self._info(session, stored))
        found.sort(key=lambda i: i.expires, reverse=True)
        return found[:limit], len(found) > limit

    async def delete(self, owner: str, session: str) -> bool:
        if self._get(owner, session, time.time()) is None:
            return False
        self._drop((owner, session))
        return True


@hookimpl
def gateway_register_session_stores(register: Any) -> None:
    def factory(gateway: Any) -> MemorySessionStore:
        gateway.state.memory("sessions.store")
        return MemorySessionStore(gateway.config.section("sessions"))

    register("memory", factory)
