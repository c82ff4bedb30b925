"""The ``redis-pubsub`` listener kind: messages published on a Redis channel (or pattern).

Pub/sub has no acknowledgement and no history: a message published while no instance listens
is lost, which is what pub/sub promises. Every subscriber receives every message, so only one
instance listens at a time (a lease in the shared trigger state); if it dies, another takes
over within ``[triggers] lease``. Use ``redis-stream`` for work that must not be lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import redis.asyncio as aioredis

from gateway import hookimpl, pubsub_messages
from gateway.triggers.listeners.base import Listener, ListenerConfig

if TYPE_CHECKING:
    from gateway import Gateway


@attrs.frozen
class RedisPubSubConfig(ListenerConfig):
    """``[listeners.<name>] kind = "redis-pubsub"``: ``channel`` or ``pattern``."""

    channel: str | None = None
    #: A glob pattern of channels (PSUBSCRIBE), instead of one channel.
    pattern: str | None = None
    #: The Redis server; empty: the gateway's own ([redis] url).
    url: str = ""


def redis_url(config: Any, gateway: Gateway) -> str:
    """The listener's Redis URL, or the gateway's own; a ValueError when neither is set."""
    url = config.url or gateway.state.config.url
    if not url:
        raise ValueError("set 'url' (or [redis] url) to the Redis server to listen to")
    return str(url)


class RedisPubSubListener(Listener):
    exclusive = True
    config: RedisPubSubConfig

    def __init__(self, name: str, config: RedisPubSubConfig, gateway: Gateway) -> None:
        super().__init__(name, config, gateway)
        if (config.channel is None) == (config.pattern is None):
            raise ValueError("set one of 'channel' and 'pattern'")
        self.url = redis_url(config, gateway)

    async def consume(self) -> None:
        client = aioredis.Redis.from_url(self.url, health_check_interval=30)
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                if self.config.pattern is not None:
                    await pubsub.psubscribe(self.config.pattern)
                else:
                    await pubsub.subscribe(self.config.channel)
                self.connected.set()
                async for message in pubsub_messages(pubsub):
                    if message["type"] not in ("message", "pmessage"):
                        continue
                    channel = message["channel"].decode(errors="replace")
                    await self.submit(self.event(message["data"], channel))
        finally:
            await client.aclose()


@hookimpl
def gateway_register_listeners(register: Any) -> None:
    register("redis-pubsub", RedisPubSubListener, RedisPubSubConfig)
