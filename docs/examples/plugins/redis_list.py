"""A listener kind: jobs pushed on a Redis list (``LPUSH``/``RPUSH``), each taken by one gateway.

``BLPOP`` hands every item to exactly one consumer, so every instance may listen (the kind is
not ``exclusive``). An item is removed before its handlers run: at most once; use the built-in
``redis-stream`` kind for work that must survive a crash::

    [listeners.jobs]
    kind = "redis-list"
    key = "jobs"
    url = "redis://127.0.0.1:6379/0"
    agent = "worker"
    prompt = "Do job {id}: {task}"
"""

from __future__ import annotations

import attrs
import redis.asyncio as aioredis

from gateway import RegisterListener, hookimpl
from gateway.triggers import Listener, ListenerConfig


@attrs.frozen
class RedisListConfig(ListenerConfig):
    """``[listeners.<name>] kind = "redis-list"``: the handlers (agent, prompt, call, on), and
    where the list is."""

    key: str = attrs.field(kw_only=True)
    url: str = "redis://127.0.0.1:6379/0"


class RedisListListener(Listener):
    config: RedisListConfig

    async def consume(self) -> None:
        # Raising or returning here reconnects, with backoff; cancelling stops the listener.
        client = aioredis.Redis.from_url(self.config.url)
        try:
            await client.ping()
            self.connected.set()
            while True:
                # A bounded wait, so a connection that died quietly is noticed.
                popped = await client.blpop([self.config.key], timeout=10)
                if popped is not None:
                    # JSON items are parsed; other text arrives as {"text": ...}.
                    await self.submit(self.event(popped[1], self.config.key))
        finally:
            await client.aclose()


@hookimpl
def gateway_register_listeners(register: RegisterListener) -> None:
    register("redis-list", RedisListListener, RedisListConfig)
