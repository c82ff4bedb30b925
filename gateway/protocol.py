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

from gateway.canonical import Error, Event, Raw
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


class SSEResponse(web.StreamResponse):
    """A ``text/event-stream`` response that sends a keep-alive comment on idle streams.

    The ping is a timer that looks at the time of the last write, not a task per stream: a
    busy stream costs nothing extra, an idle one gets ``ping`` (an SSE comment, or the
    protocol's own keep-alive frame) every ``ping_interval``. Whole frames only are ever
    written, so a ping never lands inside another frame.
    (Hung peers are detected by the kernel: the server sets ``TCP_USER_TIMEOUT`` on its
    listening sockets.)
    """

    __slots__ = ("_frame", "_interval", "_last_write", "_ping", "_pinging")

    def __init__(
        self,
        ping_interval: float,
        headers: Mapping[str, str] | None = None,
        ping: bytes = b": ping\n\n",
    ) -> None:
        super().__init__(status=200, headers=headers)
        h = self.headers
        h["Content-Type"] = "text/event-stream"
        h["Cache-Control"] = "no-cache"
        h["X-Accel-Buffering"] = "no"
        self.enable_chunked_encoding()
        self._interval = ping_interval
        self._frame = ping
        self._last_write = 0.0
        self._ping: asyncio.TimerHandle | None = None
        self._pinging: asyncio.Task[None] | None = None

    async def prepare(self, request: web.BaseRequest) -> Any:
        writer = await super().prepare(request)
        loop = asyncio.get_running_loop()
        self._last_write = loop.time()
        self._ping = loop.call_later(self._interval, self._check, loop)
        return writer

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self._last_write = asyncio.get_running_loop().time()
        await super().write(data)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        idle = loop.time() - self._last_write
        if idle >= self._interval and (self._pinging is None or self._pinging.done()):
            self._pinging = loop.create_task(self._send_ping())
            idle = 0.0
        self._ping = loop.call_later(self._interval - idle, self._check, loop)

    async def _send_ping(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.write(self._frame)

    def stop_pinging(self) -> None:
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None
        if self._pinging is not None:
            self._pinging.cancel()

    async def write_eof(self, data: bytes = b"") -> None:
        self.stop_pinging()
        await super().write_eof(data)


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
        resp = SSEResponse(self.ping_interval, headers, keepalive or b": ping\n\n")
        held = tail = b""
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
            ev = first
            while True:
                data = encode(ev)
                if data:
                    if ev.more or (type(ev) is Raw and ev.last):  # type: ignore[attr-defined]
                        held += data
                    else:
                        if held:
                            data, held = held + data, b""
                        await write(data)
                try:
                    ev = await anext(events)  # type: ignore[call-overload]
                except StopAsyncIteration:
                    break
            tail = held + encoder.end()
        except ConnectionResetError:
            log.debug("client went away mid-stream (request %s)", ex.request_id)
            return resp
        except asyncio.CancelledError:
            if not (gateway.draining_expired and task.cancelling() == 1):
                raise  # the client went away (or the server is being killed): nothing to tell
            task.uncancel()
            log.warning("request %s: stream cut at the drain deadline", ex.request_id)
            tail = held + encoder.encode(
                Error(Unavailable("the gateway is shutting down; retry the request"))
            )
        finally:
            resp.stop_pinging()
            gateway.streams.discard(task)
            gateway.metrics.active_streams.dec()
            await events.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof(tail)
        return resp
