"""Filters: plugin code that sees every chat request and answer on its way through.

A filter overrides only the methods it needs; the pipeline puts just those on the request path
(a filter with only ``on_request`` costs nothing per stream event). Filters run in ascending
:attr:`Filter.order`, then registration order.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, ClassVar, Literal

import attrs

if TYPE_CHECKING:
    from gateway.canonical import ChatRequest, ChatResponse, Event, Usage
    from gateway.errors import GatewayError
    from gateway.exchange import Exchange


@attrs.define(slots=True)
class Outcome:
    """How a chat request ended, as :meth:`Filter.on_end` sees it.

    ``status`` is ``"success"`` (the whole answer went out), ``"error"`` (a
    :class:`~gateway.errors.GatewayError` ended it, before or during a stream: ``error``) or
    ``"client_gone"`` (the client disconnected, or whatever consumed the stream stopped early).
    ``usage`` is what the upstream reported, when it did (a stream cut short rarely has any).
    ``output_tokens`` estimates what was sent to the client, for accounting a partial answer
    when ``usage`` is unknown: about four characters a token of the text, reasoning and tool
    call arguments sent, or, for a stream relayed raw without parsing its content, one token a
    relayed frame.

    Made once per request and read by every end hook: treat it as read-only (it is not frozen
    only because a frozen class is three times dearer to make).
    """

    status: Literal["success", "error", "client_gone"]
    error: GatewayError | None = None
    usage: Usage | None = None
    output_tokens: int = 0
    #: Whether the answer was streamed.
    stream: bool = False


class Filter:
    """Base class of filters. Raise :class:`~gateway.errors.GatewayError` to refuse a request."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 0
    #: Whether ``on_success`` reads the content (text, tool calls) of answers relayed raw from a
    #: same-protocol upstream, or ``on_end`` wants :attr:`Outcome.output_tokens` counted from
    #: it. ``False`` lets such relays skip parsing content frames: right for a filter that needs
    #: only usage, or whose ``on_success`` acts only on requests it took off the relay (by
    #: clearing ``request.raw_relay`` in ``on_request``), or that asks for parsing only for the
    #: requests that need it (by setting ``request.parse_relayed`` in ``on_request``).
    reads_relayed: ClassVar[bool] = True
    #: When set, ``on_success`` runs only for requests whose :attr:`Exchange.notes` hold this
    #: key (the filter's ``on_request`` kept something there for it); the answers of the others
    #: are not even assembled for it. ``None``: for every successful request.
    success_note: ClassVar[Hashable | None] = None
    #: When set, ``on_end`` runs only for requests whose :attr:`Exchange.notes` hold this key
    #: (the filter's ``on_request`` kept something there for it), whatever their outcome; the
    #: others end without it. Right for a filter whose ``on_end`` has nothing to do for a
    #: request its ``on_request`` did not mark (or never saw: refused by an earlier filter).
    #: ``None``: for every request.
    end_note: ClassVar[Hashable | None] = None

    async def on_request(self, request: ChatRequest, exchange: Exchange) -> ChatRequest | None:
        """Before routing. Return the request if you changed it (or a new one); ``None`` if not."""
        return None

    async def on_event(self, event: Event, exchange: Exchange) -> Event | None:
        """Each event of a streamed answer, in order; return it, a replacement, or ``None`` to
        drop it. It may await (a moderation call, say); raising a
        :class:`~gateway.errors.GatewayError` ends the stream with that error. Overriding this
        turns off the raw relay of same-protocol streams."""
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

    async def on_end(self, request: ChatRequest, exchange: Exchange, outcome: Outcome) -> None:
        """At the end of every chat request that reached the pipeline, exactly once, whatever
        its :class:`Outcome`: success (after ``on_success``), error, or client gone; also when
        an earlier filter refused the request before this one's ``on_request`` ran (with
        :attr:`end_note` set, only at the end of the requests noted). ``request`` is the
        request as the filters left it (refused by a later filter, or not routed: as the
        filters before that left it). For accounting that must include failures and partial
        answers. It cannot change the answer: what it raises is logged and dropped.
        When the client went away it runs shielded from further cancellation."""


def overrides(flt: Filter, method: str) -> bool:
    """Whether ``flt`` implements ``method`` itself."""
    return getattr(type(flt), method) is not getattr(Filter, method)
