"""The ``virtual-keys`` authenticator: callers presenting a key kept in the database."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiohttp import web

from gateway import Authenticator, Principal, Unauthorized
from gateway.keys.store import SECRET_PREFIX, KeyStore, VirtualKey, digest, iso

if TYPE_CHECKING:
    from gateway.keys.cache import KeyCache
    from gateway.keys.store import Team


def principal(key: VirtualKey, team: Team | None) -> Principal:
    """The caller a key stands for. Its id (which scopes sessions, limits and budgets) is the
    key's id, the same across rotations; ``attributes`` carry the team and the budgets."""
    return Principal(
        id="vk-" + key.id,
        name=key.name,
        models=frozenset(key.models) if key.models is not None else None,
        rpm=key.limits.rpm,
        tpm=key.limits.tpm,
        attributes={
            "key_id": key.id,
            "team_id": key.team_id,
            "budget": dict(key.limits.budget),
            "team_budget": dict(team.limits.budget) if team is not None else {},
            "team_rpm": team.limits.rpm if team is not None else None,
            "team_tpm": team.limits.tpm if team is not None else None,
            "metadata": dict(key.metadata),
        },
    )


class VirtualKeysAuthenticator(Authenticator):
    name = "virtual-keys"

    def __init__(self, store: KeyStore, cache: KeyCache) -> None:
        self.store = store
        self.cache = cache
        #: Lookups under way, by digest: concurrent requests with one key wait for one lookup.
        self._looking: dict[str, asyncio.Future[tuple[Principal | None, float | None]]] = {}

    async def _lookup(self, d: str) -> tuple[Principal | None, float | None]:
        generation = self.cache.generation
        key = await self.store.by_digest(d)
        if key is None or key.revoked_at is not None:
            self.cache.put(d, None, None, generation)
            return None, None
        team = await self.store.team(key.team_id) if key.team_id is not None else None
        found = principal(key, team)
        self.cache.put(d, found, key.expires_at, generation)
        return found, key.expires_at

    async def authenticate(self, request: web.Request, credential: str | None) -> Principal | None:
        if not credential:
            return None
        known = self.cache.secrets.get(credential)
        if known is not None and known[0] >= time.monotonic():
            found, expires = known[1], known[2]
            if expires is None or time.time() < expires:
                return found
            raise _expired(expires)
        if not credential.startswith(SECRET_PREFIX):
            return None
        d = digest(credential)
        cached = self.cache.get(d)
        if cached is None:
            pending = self._looking.get(d)
            if pending is None:
                pending = asyncio.ensure_future(self._lookup(d))
                self._looking[d] = pending
                pending.add_done_callback(lambda _: self._looking.pop(d, None))
            # Shielded: one waiter going away must not cancel the others' lookup.
            cached = await asyncio.shield(pending)
        found, expires = cached
        self.cache.by_secret(credential, d)
        if found is None:
            return None
        if expires is not None and time.time() >= expires:
            raise _expired(expires)
        return found


def _expired(expires: float) -> Unauthorized:
    """The refusal of a key past its ``expires_at`` (epoch seconds): said as such, to a caller
    holding its secret, rather than as an unknown key."""
    return Unauthorized(f"This API key expired at {iso(expires)}.", code="expired_api_key")
