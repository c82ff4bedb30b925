"""A session store kept in a dict: one process's conversations, and the shape of any store.

Select it with ``[sessions] store = "dict"``. A store keeps each session's entries (one per
answered request, encoded) and its system prompt, and trims with ``gateway.trim``; every method
is scoped by the caller's principal id. Nothing here awaits between reading and writing, so each
method is atomic, as ``append`` must be; a database store would use one transaction.
"""

from __future__ import annotations

import time

import attrs

from gateway import (
    Entry,
    Gateway,
    RegisterSessionStore,
    Session,
    SessionConfig,
    SessionInfo,
    SessionStore,
    decode_messages,
    hookimpl,
    trim,
)


@attrs.define
class Stored:
    created: float
    used: float
    updated: float
    entries: list[Entry] = attrs.Factory(list)
    system: bytes | None = None


class DictSessionStore(SessionStore):
    def __init__(self, config: SessionConfig) -> None:
        super().__init__(config)  # sets ttl, max_messages, max_tokens
        self.sessions: dict[tuple[str, str], Stored] = {}

    def _live(self, owner: str, session: str, now: float) -> Stored | None:
        stored = self.sessions.get((owner, session))
        if stored is not None and stored.used + self.ttl <= now:
            del self.sessions[owner, session]  # expired
            return None
        return stored

    def _info(self, session: str, s: Stored) -> SessionInfo:
        messages = sum(e.messages for e in s.entries)
        tokens = sum(e.tokens for e in s.entries)
        return SessionInfo(session, s.created, s.updated, s.used + self.ttl, messages, tokens)

    async def load(self, owner: str, session: str, *, touch: bool = True) -> Session | None:
        now = time.time()
        s = self._live(owner, session, now)
        if s is None:
            return None
        if touch:
            s.used = now
        system = decode_messages(s.system) if s.system else []
        messages = [m for e in s.entries for m in decode_messages(e.data)]
        return Session(self._info(session, s), system, messages)

    async def append(
        self, owner: str, session: str, entry: Entry, system: bytes | None = None
    ) -> None:
        now = time.time()
        s = self._live(owner, session, now) or Stored(created=now, used=now, updated=now)
        self.sessions[owner, session] = s
        s.entries.append(entry)
        if system is not None:
            s.system = system
        s.used = s.updated = now
        # Drop the oldest entries beyond max_messages / max_tokens, where a cut may fall.
        headers = [(e.messages, e.tokens, e.starts_user) for e in s.entries]
        info = self._info(session, s)
        drop, _, _ = trim(headers, info.messages, info.tokens, self)
        del s.entries[:drop]

    async def list(self, owner: str, limit: int) -> tuple[list[SessionInfo], bool]:
        now = time.time()
        mine = [sid for (who, sid) in list(self.sessions) if who == owner]
        infos = [self._info(sid, s) for sid in mine if (s := self._live(owner, sid, now))]
        infos.sort(key=lambda info: info.expires, reverse=True)  # most recently used first
        return infos[:limit], len(infos) > limit

    async def delete(self, owner: str, session: str) -> bool:
        if self._live(owner, session, time.time()) is None:
            return False
        del self.sessions[owner, session]
        return True


@hookimpl
def gateway_register_session_stores(register: RegisterSessionStore) -> None:
    def factory(gateway: Gateway) -> DictSessionStore:
        gateway.state.memory("sessions.store")  # kept in this process: refused with --workers 2
        return DictSessionStore(gateway.config.section("sessions"))

    register("dict", factory)
