"""The ``nats`` listener kind: messages on a NATS subject (``nats-py``, an optional extra:
``pip install 'hookgate[nats]'``).

Instances subscribe in one queue group (``queue``, ``"hookgate"`` by default), so NATS gives
each message to one of them. Core NATS delivers at most once: a message published while no
instance is subscribed, or lost with an instance, is not delivered again. The client
reconnects by itself; the listener reconnects with backoff when even that gives up.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import attrs

from gateway import hookimpl
from gateway.triggers.listeners.base import Listener, ListenerConfig

if TYPE_CHECKING:
    from gateway import Gateway


@attrs.frozen
class NatsConfig(ListenerConfig):
    """``[listeners.<name>] kind = "nats"``."""

    subject: str | None = None
    #: Server URLs (credentials may be in them: nats://user:password@host:4222).
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    #: The queue group; each message goes to one member. Empty: every instance gets every one.
    queue: str = "hookgate"


class NatsListener(Listener):
    config: NatsConfig

    def __init__(self, name: str, config: NatsConfig, gateway: Gateway) -> None:
        super().__init__(name, config, gateway)
        if not config.subject:
            raise ValueError("'subject' is required")
        self.subject = config.subject
        try:
            import nats  # noqa: F401
        except ImportError:
            raise ValueError(
                "the nats listener needs the nats-py package: pip install 'hookgate[nats]'"
            ) from None

    async def consume(self) -> None:
        import nats

        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        client = await nats.connect(
            servers=list(self.config.servers),
            name=f"hookgate listener {self.name}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            closed_cb=on_closed,
        )
        try:
            sub = await client.subscribe(self.subject, queue=self.config.queue)
            await client.flush()
            self.connected.set()
            messages = sub.messages.__aiter__()
            while not closed.is_set():
                msg = await anext(messages)
                headers = dict(msg.headers or {})
                event = self.event(
                    msg.data, msg.subject, headers=headers, id=headers.get("Nats-Msg-Id")
                )
                await self.submit(event)
        finally:
            if not client.is_closed:
                await client.close()


@hookimpl
def gateway_register_listeners(register: Any) -> None:
    register("nats", NatsListener, NatsConfig)
