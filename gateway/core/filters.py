"""Filters: plugin code that sees every chat request and answer on its way through.

A filter overrides only the methods it needs; the pipeline puts just those on the request path
(a filter with only ``on_request`` costs nothing per stream event). Filters run in ascending
:attr:`Filter.order`, then registration order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from gateway.canonical import ChatRequest, ChatResponse, Event
    from gateway.core.exchange import Exchange


class Filter:
    """Base class of filters. Raise :class:`~gateway.errors.GatewayError` to refuse a request."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 0
    #: Whether ``on_success`` reads the content (text, tool calls) of answers relayed raw from a
    #: same-protocol upstream. ``False`` lets such relays skip parsing content frames: right for a
    #: filter that needs only usage, or whose ``on_success`` acts only on requests it took off
    #: the relay (by clearing ``request.raw_relay`` in ``on_request``).
    reads_relayed: ClassVar[bool] = True

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        """Before routing. Return the request if you changed it (or a new one); ``None`` if not."""
        return None

    def on_event(self, event: Event, exchange: Exchange) -> Event | None:
        """Each event of a streamed answer, in order; return it, a replacement, or ``None`` to
        drop it. Overriding this turns off the raw relay of same-protocol streams."""
        return event

    async def on_response(
        self, request: ChatRequest, response: ChatResponse, exchange: Exchange
    ) -> ChatResponse | None:
        """A non-streamed answer before it is sent. Return a replacement, or ``None`` to keep it."""
        return None

    async def on_success(
        self, request: ChatRequest, response: ChatResponse, exchange: Exchange
    ) -> None:
        """After a successful answer, streamed (assembled from its events) or not. Failed and
        cancelled requests never reach it. For bookkeeping: history, accounting."""


def overrides(flt: Filter, method: str) -> bool:
    """Whether ``flt`` implements ``method`` itself."""
    return getattr(type(flt), method) is not getattr(Filter, method)
