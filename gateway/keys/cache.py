"""What each instance remembers of database keys, and how a change reaches every instance.

Lookups are cached per key digest for ``[admin] key_cache`` seconds (misses for one second, so a
flood of wrong keys does not reach the database each time). A change to a key (revoke, rotate,
update) or a team drops the entries at once in the instance that made it, and, through a Redis
channel (``<prefix>keys:changed``), in every other one; an instance that lost its subscription
drops everything once it has it back. Without Redis the cache is kept at most a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gateway import Principal, pubsub_messages

if TYPE_CHECKING:
    from aiohttp import web

    from gateway import RedisState

log = logging.getLogger(__name__)

#: Dropping everything (a team changed: any of its keys may be cached).
ALL = "*"
#: Seconds a miss is remembered.
MISS_TTL = 1.0
#: Entries kept at most; past it the cache is emptied (it refills from the database).
MAX_ENTRIES = 100_000


class KeyCache:
    def __init__(self, ttl: float, redis: RedisState | None) -> None:
        self.redis = redis
        self.ttl = ttl if redis is not None else min(ttl, 1.0)
        self.channel = (redis.prefix if redis is not None else "") + "keys:changed"
        #: digest -> (until, principal or None for a miss, expiry of the key or None)
        self.entries: dict[str, tuple[float, Principal | None, float | None]] = {}
        #: secret -> the entry of its digest in :attr:`entries`, for keys found (so a request
        #: with a known key is one dict lookup, no hashing); emptied by every drop.
        self.secrets: dict[str, tuple[float, Principal | None, float | None]] = {}
        #: Bumped by every drop: a lookup that began before one may have read what changed,
        #: so what it found is not kept.
        self.generation = 0

    def get(self, digest: str) -> tuple[Principal | None, float | None] | None:
        """``(principal, expires_at)`` while fresh, else ``None`` (look it up)."""
        entry = self.entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1], entry[2]

    def by_secret(self, secret: str, digest: str) -> None:
        """Remember that ``secret`` has ``digest``, while its entry is fresh and found."""
        entry = self.entries.get(digest)
        if entry is not None and entry[1] is not None:
            if len(self.secrets) >= MAX_ENTRIES:
                self.secrets.clear()
            self.secrets[secret] = entry

    def put(
        self,
        digest: str,
        principal: Principal | None,
        expires_at: float | None,
        generation: int | None = None,
    ) -> None:
        """Keep what a lookup found, unless something was dropped since it began
        (``generation``: :attr:`generation` when it began)."""
        if generation is not None and generation != self.generation:
            return
        if len(self.entries) >= MAX_ENTRIES:
            self.entries.clear()
        ttl = self.ttl if principal is not None else min(self.ttl, MISS_TTL)
        self.entries[digest] = (time.monotonic() + ttl, principal, expires_at)

    def drop(self, digest: str) -> None:
        self.generation += 1
        self.secrets.clear()
        if digest == ALL:
            self.entries.clear()
        else:
            self.entries.pop(digest, None)

    async def changed(self, *digests: str) -> None:
        """Drop ``digests`` here and tell every other instance to."""
        for d in digests:
            self.drop(d)
        redis = self.redis
        if redis is not None:
            async with redis.guard("key changes"):
                for d in digests:
                    await redis.client.publish(self.channel, d)

    async def listen(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: follow the channel for the app's lifetime."""
        if self.redis is None:
            yield
            return
        task = asyncio.create_task(self._follow(self.redis))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _follow(self, redis: RedisState) -> None:
        pause = 0.1
        while True:
            pubsub: Any = None
            try:
                pubsub = redis.client.pubsub()
                await pubsub.subscribe(self.channel)
                # Whatever changed while unsubscribed is unknown: forget everything.
                self.drop(ALL)
                pause = 0.1
                async for message in pubsub_messages(pubsub, poll=0.5):
                    data = message.get("data")
                    if isinstance(data, bytes):
                        self.drop(data.decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("key change notices from Redis interrupted (%s); retrying", exc)
                self.drop(ALL)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
            finally:
                if pubsub is not None:
                    await asyncio.shield(_close(pubsub))


async def _close(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except Exception:
        log.debug("closing the key change subscription failed", exc_info=True)
