"""What a protocol adapter is, and the stream loop every adapter shares.

An adapter decodes its wire format into the canonical model, runs the request through the
:class:`~gateway.core.pipeline.Pipeline`, and encodes the answer and any error in its own format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from aiohttp import web

from gateway.canonical import Error, Event, Raw
from gateway.core.jsonio import json_response
from gateway.errors import GatewayError, Unavailable, UpstreamError, default_error_body
from gateway.streaming.sse import PING, SSEResponse

if TYPE_CHECKING:
    from gateway.core.app import Gateway
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
    #: Seconds a stream's client may accept no data before it is cut (None: no limit).
    send_timeout: ClassVar[float | None] = 30.0

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.pipeline = gateway.pipeline

    def setup(self, app: web.Application) -> None:
        """Add the protocol's routes with ``self.gateway.add_route(..., protocol=self)``."""
        raise NotImplementedError

    def error_body(self, err: GatewayError) -> Any:
        """The protocol's JSON error body for ``err``."""
        return default_error_body(err)

    def error_response(self, err: GatewayError, request_id: str | None = None) -> web.Response:
        """The error response for ``err``; ``request_id`` is the exchange's (the
        ``x-request-id`` header carries it whatever the protocol; some put it in the body)."""
        return json_response(
            self.error_body(err), status=err.status, headers=self.error_headers(err)
        )

    @staticmethod
    def error_headers(err: GatewayError) -> dict[str, str]:
        """The headers of an error response: ``retry-after`` when the error says when to retry."""
        if err.retry_after is None:
            return {}
        return {"retry-after": str(max(1, round(err.retry_after)))}

    async def stream_response(
        self,
        request: web.Request,
        ex: Exchange,
        events: AsyncGenerator[Event, None] | AsyncGenerator[list[Event], None],
        encoder: StreamEncoder,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """Send ``events`` as Server-Sent Events, encoded by ``encoder``.

        ``events`` gives events one by one (:meth:`Pipeline.stream
        <gateway.core.pipeline.Pipeline.stream>`, or a plugin's own), or in lists of those that
        came together (:meth:`Pipeline.stream_reads
        <gateway.core.pipeline.Pipeline.stream_reads>`: one resume of its generator a read).

        The first event is awaited before any byte is sent, so a failure known at that point is
        an ordinary error response with the right status. After that, failures are the
        protocol's error frame. A client that goes away, or reads nothing for
        :attr:`send_timeout`, cancels the upstream (the event iterator is closed); a gateway that
        shuts down mid-stream says so in an error frame.
        """
        try:
            first = await anext(events)
        except StopAsyncIteration:
            raise UpstreamError("the backend sent an empty stream") from None
        except BaseException:
            await events.aclose()
            raise
        reads: AsyncGenerator[list[Event], None]
        if isinstance(first, list):
            read = first
            reads = cast("AsyncGenerator[list[Event], None]", events)
        else:
            read = [first]
            reads = _each_alone(cast("AsyncGenerator[Event, None]", events))
        del first
        if type(read[0]) is Error:
            await events.aclose()
            raise read[0].error
        keepalive: bytes | None = getattr(encoder, "keepalive", None)
        resp = SSEResponse(
            self.ping_interval, headers, keepalive or PING, self.send_timeout, hold_head=True
        )
        held: list[bytes] = []  # joined once, not grown frame by frame
        tail = b""
        gateway = self.gateway
        task = asyncio.current_task()
        assert task is not None
        gateway.streams.add(task)
        gateway.metrics.active_streams.inc()
        try:
            await resp.prepare(request)
            ex.first_byte = time.perf_counter() - ex.started
            encode = encoder.encode
            write = resp.write
            # Frames are written one upstream read at a time: the bytes of an event that has
            # ``more`` after it wait for the next one, and the bytes that end an upstream's
            # answer wait for the end of the response (one write, one wake-up of the client).
            # The head goes with the first write, or alone when the next event is awaited with
            # nothing to write yet (a stream slow to begin).
            headless = True
            while True:
                for ev in read:
                    data = encode(ev)
                    if ev.more or (type(ev) is Raw and ev.last):
                        if data:
                            held.append(data)
                    elif data or held:
                        if held:
                            held.append(data)
                            data = b"".join(held)
                            held.clear()
                        headless = False
                        await write(data)
                    elif headless and not held:
                        headless = False
                        resp.send_head()
                    # Nothing of the last event is held while the next is awaited.
                    del data, ev
                del read
                try:
                    read = await anext(reads)
                except StopAsyncIteration:
                    break
            tail = b"".join(held) + encoder.end()
        except ConnectionResetError:
            log.debug("client went away mid-stream (request %s)", ex.request_id)
            return resp
        except asyncio.CancelledError:
            if not (gateway.draining_expired and task.cancelling() == 1):
                raise  # the client went away (or the server is being killed): nothing to tell
            task.uncancel()
            log.warning("request %s: stream cut at the drain deadline", ex.request_id)
            tail = b"".join(held) + encoder.encode(
                Error(Unavailable("the gateway is shutting down; retry the request"))
            )
        finally:
            resp.stop_pinging()
            if resp.timed_out:
                log.warning(
                    "request %s: dropped a client that read nothing for %gs",
                    ex.request_id,
                    self.send_timeout,
                )
            gateway.streams.discard(task)
            gateway.metrics.active_streams.dec()
            await reads.aclose()
            if reads is not events:
                await events.aclose()
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof(tail)
        return resp


async def _each_alone(events: AsyncGenerator[Event, None]) -> AsyncGenerator[list[Event], None]:
    """Events given one by one, as reads of one event each."""
    async for ev in events:
        yield [ev]
        del ev  # not held while the next is awaited
