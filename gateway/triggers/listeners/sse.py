"""The ``sse`` listener kind: an outside Server-Sent Events stream.

The gateway connects with ``Accept: text/event-stream``, decodes frames as they arrive (the
gateway's own incremental decoder), and types each event by its ``event:`` name (``message``
when it has none). When the connection ends or fails it reconnects with backoff, sending
``Last-Event-ID`` so the source can replay what was missed; the last id is kept in the shared
trigger state, so another instance taking over (only one listens at a time) resumes there too.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs

from gateway import Duration, GatewayError, SSEDecoder, Url, hookimpl, proxy_for
from gateway.triggers.listeners.base import Listener, ListenerConfig

if TYPE_CHECKING:
    from gateway import Gateway

#: How long the last event id is remembered for a stream that stays quiet.
CURSOR_TTL = 7 * 24 * 3600.0


@attrs.frozen
class SseConfig(ListenerConfig):
    """``[listeners.<name>] kind = "sse"``."""

    url: Url | None = None
    #: Headers sent with the request (e.g. ``{ Authorization = "Bearer ${TOKEN}" }``).
    headers: dict[str, str] = attrs.field(factory=dict, repr=False)
    #: Event names to take; empty: all.
    events: tuple[str, ...] = ()
    #: No byte (not even a keep-alive comment) for this long: reconnect.
    read_timeout: Duration = Duration(300.0)


class SseListener(Listener):
    exclusive = True
    config: SseConfig

    def __init__(self, name: str, config: SseConfig, gateway: Gateway) -> None:
        super().__init__(name, config, gateway)
        if not config.url:
            raise ValueError("'url' is required")
        # A proxy the client cannot speak to (SOCKS) is a startup error, not a failing loop.
        proxy_for(str(config.url))
        self.last_id: str | None = None
        self.cursor = f"listener/{name}/last-event-id"

    async def consume(self) -> None:
        cfg = self.config
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **cfg.headers}
        with contextlib.suppress(GatewayError):  # else resume from what this instance knows
            self.last_id = await self.service.state.get(self.cursor) or self.last_id
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=cfg.read_timeout)
        proxy = proxy_for(str(cfg.url))  # the environment's, if it names one
        async with (
            aiohttp.ClientSession(timeout=timeout, proxy=proxy) as session,
            session.get(str(cfg.url), headers=headers) as resp,
        ):
            kind = resp.headers.get("content-type", "").split(";")[0].strip()
            if resp.status != 200 or kind != "text/event-stream":
                raise ConnectionError(f"{cfg.url} answered {resp.status} {kind or '(no type)'}")
            self.connected.set()
            decoder = SSEDecoder()
            async for chunk in resp.content.iter_any():
                for frame in decoder.feed(chunk):
                    await self._frame(frame.event or "message", frame.data, frame.id)

    async def _frame(self, name: str, data: str, event_id: str | None) -> None:
        if not self.config.events or name in self.config.events:
            await self.submit(self.event(data, name, id=event_id))
        if event_id is not None and event_id != self.last_id:
            self.last_id = event_id
            # On failure it is kept here; another instance would resume from an older id.
            with contextlib.suppress(GatewayError):
                await self.service.state.put(self.cursor, event_id, CURSOR_TTL)


@hookimpl
def gateway_register_listeners(register: Any) -> None:
    register("sse", SseListener, SseConfig)
