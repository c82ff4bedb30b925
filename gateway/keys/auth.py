"""The ``virtual-keys`` authenticator: callers presenting a key kept in the database."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from gateway import Authenticator, Principal
from gateway.keys.store import SECRET_PREFIX, KeyStore, VirtualKey, digest

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

    async def authenticate(self, request: web.Request, credential: str | None) -> Principal | None:
        if not credential or not credential.startswith(SECRET_PREFIX):
            return None
        d = digest(credential)
        cached = self.cache.get(d)
        found: Principal | None
        if cached is None:
            key = await self.store.by_digest(d)
            if key is None or key.revoked_at is not None:
                self.cache.put(d, None, None)
                return None
            team = await self.store.team(key.team_id) if key.team_id is not None else None
            found = principal(key, team)
            self.cache.put(d, found, key.expires_at)
            expires = key.expires_at
        else:
            found, expires = cached
        if found is None or (expires is not None and time.time() >= expires):
            return None
        return found
