"""What a protocol adapter is, and the streaming writer every adapter shares.

An adapter decodes its wire format into the canonical model, runs the request through the
:class:`~gateway.pipeline.Pipeline`, and encodes the answer and any error in its own format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from gateway.canonical import Error, Event
from gateway.errors import GatewayError, Unavailable, UpstreamError, default_error_body
from gateway.http import json_response

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.exchange import Exchange

log = logging.getLogger(__name__)


class StreamEncoder(Protocol):
    """Turns canonical events into a protocol's stream frames.

    An encoder may also have a ``keepalive`` attribute: the frame sent on an idle stream
    instead of an SSE comment (Anthropic clients expect ``event: ping``).
    """

    def encode(self, event: Event) -> bytes: ...

    def end(self) -> bytes: ...


class ProtocolAdapter:
    """Base class of protocol adapters (registered with ``gateway_register_protocols``)."""

    #: The protocol's name; a backend whose ``protocol`` equals it gets the fast path.
    name: ClassVar[str] = ""
    #: Seconds between keep-alive comments on idle streams.
    ping_interval: ClassVar[float] = 15.0

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.pipeline = gateway.pipeline

    def setup(self, app: web.Application) -> None:
        """Add the protocol's routes with ``self.gateway.add_route(..., protocol=self)``."""
        raise NotImplementedError

    def error_body(self, err: GatewayError) -> Any:
        """The protocol's JSON error body for ``err``."""
        return default_error_body(err)

    def error_response(self, err: GatewayError) -> web.Response:
        headers = None
        if err.retry_after is not None:
            headers = {"retry-after": str(max(1, round(err.retry_after)))}
        return json_response(self.error_body(err), status=err.status, headers=headers)

    async def stream_response(
        self,
        request: web.Request,
        ex: Exchange,
        events: AsyncIterator[Event],
        encoder: StreamEncoder,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """Send ``events`` as Server-Sent Events, encoded by ``encoder``.

        The first event is awaited before any byte is sent, so a failure known at that point is
        an ordinary error response with the right status. After that, failures are the
        protocol's error frame. A client that goes away cancels the upstream (the event
        iterator is closed); a gateway that shuts down mid-stream says so in an error frame.
        """
        try:
            first = await anext(events)  # type: ignore[call-overload]
        except StopAsyncIteration:
            raise UpstreamError("the backend sent an empty stream") from None
        except BaseException:
            await events.aclose()  # type: ignore[attr-defined]
            raise
        if type(first) is Error:
            await events.aclose()  # type: ignore[attr-defined]
            raise first.error  # type: ignore[attr-defined]
        keepalive: bytes | None = getattr(encoder, "keepalive", None)
        resp = EventSourceResponse(
            sep="\n",
            allow_all_methods=True,
            # with a keepalive frame of the protocol's own, that frame replaces the comments
            ping_interval=self.ping_interval if keepalive is None else _NEVER,
            headers=headers,
        )
        pinger: asyncio.Task[None] | None = None
        gateway = self.gateway
        task = asyncio.current_task()
        assert task is not None
        gateway.streams.add(task)
        gateway.metrics.active_streams.inc()
        try:
            await resp.prepare(request)
            ex.first_byte = time.perf_counter() - ex.started
            if keepalive is not None:
                pinger = asyncio.create_task(_keep_alive(resp, keepalive, self.ping_interval))
            async with resp:
                data = encoder.encode(first)
                if data:
                    await resp.write(data)
                async for ev in events:  # type: ignore[attr-defined]
                    data = encoder.encode(ev)
                    if data:
                        await resp.write(data)
                tail = encoder.end()
                if tail:
                    await resp.write(tail)
        except ConnectionResetError:
            log.debug("client went away mid-stream (request %s)", ex.request_id)
            return resp
        except asyncio.CancelledError:
            if not (gateway.draining_expired and task.cancelling() == 1):
                raise  # the client went away (or the server is being killed): nothing to tell
            task.uncancel()
            log.warning("request %s: stream cut at the drain deadline", ex.request_id)
            with contextlib.suppress(Exception):
                await resp.write(
                    encoder.encode(
                        Error(Unavailable("the gateway is shutting down; retry the request"))
                    )
                )
        finally:
            if pinger is not None:
                pinger.cancel()
            gateway.streams.discard(task)
            gateway.metrics.active_streams.dec()
            await events.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp


#: A ping interval that never comes (aiohttp-sse's own comments are off).
_NEVER = 365 * 24 * 3600.0


async def _keep_alive(resp: web.StreamResponse, frame: bytes, interval: float) -> None:
    """Write ``frame`` every ``interval`` seconds until the stream ends (whole frames only are
    ever written, so a ping never lands inside another frame)."""
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        while True:
            await asyncio.sleep(interval)
            await resp.write(frame)
