"""A lean pooled HTTP/1.1 client for plain ``http://`` upstreams.

The gateway's own time is dominated by its upstream client, and ``aiohttp.ClientSession`` does
a great deal per request that a gateway talking to a model server on a private network does not
need (cookies, redirects, proxies, tracing, URL objects, per-request header merging). This
client does one thing: POST (or GET) a body on a pooled keep-alive connection and hand back the
status, headers and body as they arrive. Responses are parsed by httptools (llhttp, the parser
of Node.js), connections are plain ``asyncio.Protocol`` objects, and request heads are bytes
assembled from parts encoded once.

What it guarantees:

- Connections are reused (most recently used first) up to ``limit``; callers beyond it wait.
- A body that was read to its end releases the connection at once; a response abandoned before
  its end (the client went away, a failure) closes its connection instead.
- A connection idle for longer than ``idle_timeout`` is closed rather than reused, so the
  upstream's own keep-alive expiry rarely races a new request. A request is never sent twice:
  only a connection found closed *before* any byte of the request was written to it is passed
  over for another; once written, a request that meets a closed connection fails
  (``ServerDisconnectedError``), since the upstream may have read it (an LLM upstream may be
  generating, and charging for, the answer). Whether to try again is the caller's decision.
- ``connect_timeout`` bounds opening a connection, ``first_byte`` (an event-loop time) the wait
  for the answer's status line, ``read_timeout`` any silence after it, ``deadline`` (an
  event-loop time) the whole exchange. The waits of every response share one event-loop timer
  (:mod:`gateway.streaming.deadlines`): each is met within 20 ms, or a sixteenth of its length
  when that is longer.

Failures are raised as aiohttp's exception types (``ClientPayloadError`` for a body cut short,
``ServerDisconnectedError``, ``ClientOSError``) and ``TimeoutError``, so code written for a
``ClientSession`` response handles both.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Collection, Iterable
from typing import cast

import aiohttp
import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.streaming.deadlines import GRAIN, deadlines

#: Unread body bytes buffered per response before the socket stops being read.
_HIGH_WATER = 256 * 1024


class ConnectError(aiohttp.ClientOSError):
    """The upstream could not be reached (refused, unroutable, DNS)."""


class BadResponse(aiohttp.ClientError):
    """The upstream's answer is not valid HTTP/1.1."""


def encode_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    """Header lines as bytes, refusing values that would break the request head."""
    out = []
    for name, value in headers:
        if (
            not name
            or ":" in name
            or "\r" in name
            or "\n" in name
            or "\0" in name
            or "\r" in value
            or "\n" in value
            or "\0" in value
        ):
            raise ValueError(f"invalid HTTP header {name!r}")
        out.append(f"{name}: {value}\r\n".encode("latin-1"))
    return b"".join(out)


class Response:
    """One upstream answer: ``status``, ``headers`` and the body as it arrives.

    ``content`` is the response itself so that ``resp.content.readany()`` reads as it does with
    aiohttp. Read with :meth:`readany` (whatever has arrived, ``b""`` at the end) or :meth:`read`;
    :meth:`close` gives up on the rest of the body.
    """

    __slots__ = (
        "_bucket",
        "_chunks",
        "_conn",
        "_deadline",
        "_deadlines",
        "_done",
        "_error",
        "_head",
        "_headers",
        "_loop",
        "_parts",
        "_read_timeout",
        "_size",
        "_waiter",
        "_when",
        "first_byte",
        "framed",
        "got_bytes",
        "status",
    )

    def __init__(
        self,
        conn: _Connection,
        read_timeout: float | None,
        deadline: float | None,
        first_byte: float | None = None,
    ):
        self._conn: _Connection | None = conn
        #: While set, the event-loop time by which the next bytes must come, in place of
        #: ``read_timeout`` (the wait for an answer's first byte, or a stream's first content).
        self.first_byte = first_byte
        self._loop = conn.loop
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        #: The pending deadline of the wait, if any (see gateway.streaming.deadlines).
        self._deadlines = conn.pool.deadlines
        self._bucket: int | None = None
        #: The event-loop time by which the current wait must end, if bounded.
        self._when: float | None = None
        self._headers: CIMultiDictProxy[str] | None = None
        self.status = 0
        #: The answer's header names and values while its head is parsed, then joined in one
        #: bytes object (``_head``, NUL between them: llhttp refuses a NUL in either), so that
        #: an answer held open for long (a stream) keeps one object for its headers, not three
        #: per header.
        self._parts: list[bytes] | None = []
        self._head = b""
        #: The answer said how long its body is (content-length or chunked).
        self.framed = False
        self.got_bytes = False

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The answer's headers as they came, ``(name, value)`` in order."""
        if self._parts is not None:
            parts = self._parts
        else:
            parts = self._head.split(b"\0") if self._head else []
        return list(zip(parts[::2], parts[1::2], strict=True))

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        if self._headers is None:
            self._headers = CIMultiDictProxy(
                CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers)
            )
        return self._headers

    @property
    def content(self) -> Response:
        return self

    def at_eof(self) -> bool:
        return self._done and not self._chunks

    # -- fed by the connection

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, parts: list[bytes]) -> None:
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None and not self._done:
            self._error = exc
        self._wake()

    # -- read by the caller

    def arm(self) -> asyncio.Future[None]:
        """A future the connection wakes on bytes, the end or a failure, failed with
        ``TimeoutError`` when they are late (awaited inline: an idle stream holds one frame
        less). :meth:`disarm` once it is done.

        The look an earlier wait left pending is kept when it comes before this wait's
        deadline, or after it by no more than the deadlines' own slack (a stream's reads: each
        one's deadline is a little later): it then looks again for this one (:meth:`expired`),
        rather than every read adding and dropping a look of its own.
        """
        loop = self._loop
        self._waiter = waiter = loop.create_future()
        now = loop.time()
        when = self.first_byte
        if when is None and self._read_timeout is not None:
            when = now + self._read_timeout
        if self._deadline is not None and (when is None or self._deadline < when):
            when = self._deadline
        self._when = when
        if when is not None:
            bucket = self._bucket
            if bucket is None:
                self._bucket = self._deadlines.add(when, self)
            elif bucket * GRAIN > when + max(GRAIN, (when - now) / 16):
                # The pending look comes too late for this wait.
                self._deadlines.discard(bucket, self)
                self._bucket = self._deadlines.add(when, self)
        return waiter

    def disarm(self) -> None:
        # The pending look stays (see arm()): with no wait when it comes, it does nothing.
        self._waiter = None

    def _unlook(self) -> None:
        """Drop the pending look, if any."""
        if self._bucket is not None:
            self._deadlines.discard(self._bucket, self)
            self._bucket = None

    def expired(self) -> None:
        """The time of the look came: the wait fails if its deadline passed."""
        self._bucket = None
        waiter = self._waiter
        when = self._when
        if waiter is None or waiter.done() or when is None:
            return
        # An event loop may run a timer up to its clock resolution early (as Deadlines allows).
        if when > self._loop.time() + 0.001:
            self._bucket = self._deadlines.add(when, self)  # a later wait's: look again then
            return
        waiter.set_exception(TimeoutError())

    def take(self) -> bytes | None:
        """The body bytes that have arrived, ``b""`` once it is all read, or None while none
        have (then await :meth:`arm` and :meth:`disarm`, as :meth:`readany` does: a caller that
        waits so inline spares an idle stream the frame of a ``readany`` coroutine)."""
        chunks = self._chunks
        if not chunks:
            if self._error is not None:
                raise self._error
            return b"" if self._done else None
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        if self._conn is not None:
            self._conn.resume()
        return data

    async def readany(self) -> bytes:
        """The body bytes that have arrived (waiting for some); ``b""`` once it is all read."""
        while (data := self.take()) is None:
            waiter = self.arm()
            try:
                await waiter
            finally:
                self.disarm()
        return data

    async def read(self, n: int = -1) -> bytes:
        """The whole body, or at most ``n`` bytes of it (fewer only at its end)."""
        if self._done and self._error is None:
            # All in already (a small answer comes with its head): no wait, no readany().
            data = self.take() or b""
            if 0 <= n < len(data):
                self._chunks.append(data[n:])
                self._size += len(data) - n
                data = data[:n]
            return data
        parts = []
        size = 0
        while n < 0 or size < n:
            data = await self.readany()
            if not data:
                break
            parts.append(data)
            size += len(data)
        data = b"".join(parts)
        if 0 <= n < len(data):
            self._chunks.insert(0, data[n:])
            self._size += len(data) - n
            data = data[:n]
        return data

    async def iter_any(self) -> AsyncIterator[bytes]:
        while data := await self.readany():
            yield data

    def close(self) -> None:
        """Stop reading: a finished answer has already freed its connection; an unfinished one
        closes it (the upstream sees the request cancelled)."""
        self._unlook()
        conn, self._conn = self._conn, None
        if conn is not None and conn.resp is self:
            conn.drop()

    release = close

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses answers and feeds them to the current response."""

    __slots__ = (
        "body",
        "closed",
        "idle_since",
        "keep_alive",
        "loop",
        "on_body",
        "parser",
        "paused",
        "pool",
        "resp",
        "transport",
    )

    def __init__(self, pool: HTTP1Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.resp: Response | None = None
        #: Body pieces parsed from the current read, handed over together (a stream's read
        #: holds many HTTP chunks; one wake-up for all of them).
        self.body: list[bytes] = []
        #: The parser's body callback: the list's own append (a C call per HTTP chunk, no
        #: Python frame), so the list is emptied in place, never replaced.
        self.on_body = self.body.append
        self.parser = httptools.HttpResponseParser(self)
        self.keep_alive = False
        self.closed = False
        self.paused = False
        self.idle_since = 0.0

    # -- transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP connection's transport (uvloop's does not subclass asyncio.Transport).
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        resp = self.resp
        if resp is None:  # nothing was asked: a confused upstream
            self.drop()
            return
        resp.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            resp._fail(BadResponse(f"malformed HTTP response: {exc}"))
            self.drop()
            return
        body = self.body
        if body:
            resp._feed(body)
            body.clear()

    def eof_received(self) -> bool:
        self._lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    def _lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        resp, self.resp = self.resp, None
        if resp is not None and not resp._done:
            if not resp.status:
                resp._fail(aiohttp.ServerDisconnectedError())
            elif not resp.framed and exc is None:
                resp._finish()  # a body delimited by the end of the connection
            else:
                resp._fail(
                    aiohttp.ClientPayloadError("the upstream closed the connection mid-body")
                )
        self.pool._forget(self)

    # -- parser callbacks

    def on_message_begin(self) -> None:
        if self.resp is None:  # bytes after the answer that nothing asked for
            raise BadResponse("unsolicited data after the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        resp = self.resp
        if resp is not None:
            parts = resp._parts
            if parts is not None:
                parts.append(name)
                parts.append(value)
            lname = name.lower()
            if lname == b"content-length" or lname == b"transfer-encoding":
                resp.framed = True

    def on_headers_complete(self) -> None:
        resp = self.resp
        if resp is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            resp._parts = []
            resp.framed = False
            return
        if resp._parts:
            resp._head = b"\0".join(resp._parts)
        resp._parts = None
        resp.status = status
        self.keep_alive = self.parser.should_keep_alive()
        resp._wake()

    def on_message_complete(self) -> None:
        resp = self.resp
        if resp is None or not resp.status:  # an informational (1xx) answer: wait for the next
            return
        self.keep_alive = self.keep_alive and self.parser.should_keep_alive()
        self.resp = None
        resp._conn = None
        # The connection is no longer the response's (resp._conn is None): a large body does
        # not pause it.
        body = self.body
        if body:
            resp._feed(body)
            body.clear()
        resp._finish()
        self.resume()
        self.pool._release(self)

    # -- flow control

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def drop(self, abort: bool = True) -> None:
        """Close the connection: at once (``abort``) when its answer is unfinished or broken."""
        self.keep_alive = False
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
        self._lost(None)


class HTTP1Pool:
    """Keep-alive HTTP/1.1 connections to one ``http://host:port`` origin."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        headers: Iterable[tuple[str, str]] = (),
        limit: int = 256,
        connect_timeout: float | None = 10.0,
        idle_timeout: float = 4.0,
    ) -> None:
        self.host = host
        self.port = port
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        authority = host if port == 80 else f"{host}:{port}"
        if ":" in host:  # an IPv6 literal
            authority = f"[{host}]" if port == 80 else f"[{host}]:{port}"
        defaults = [("host", authority), *headers]
        self._head = encode_headers(defaults)
        #: Each default header's line by its name (lowercased): a request that sets one of its
        #: own leaves the default out (see :meth:`request`'s ``replaces``).
        self._lines = [(name.lower(), encode_headers([(name, value)])) for name, value in defaults]
        self.loop = asyncio.get_running_loop()
        self.deadlines = deadlines(self.loop)
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def connections(self) -> int:
        """Open connections, idle and busy."""
        return len(self._idle) + len(self._busy)

    @property
    def idle(self) -> int:
        """Open connections waiting for a request."""
        return len(self._idle)

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        *,
        headers: bytes = b"",
        replaces: Collection[str] = (),
        read_timeout: float | None = None,
        deadline: float | None = None,
        first_byte: float | None = None,
    ) -> Response:
        """Send a request and return once the answer's status and headers are in.

        ``target`` is the path (and query); ``headers`` are extra header lines, already encoded
        (see :func:`encode_headers`); ``replaces``: the (lowercased) names of the pool's
        default headers they replace, left out of this request. ``first_byte`` (an event-loop
        time) bounds the wait for the status line; the response keeps it as
        :attr:`Response.first_byte` until the caller clears it. The caller reads the body and
        then closes the response.
        """
        head = b"".join(
            (
                f"{method} {target} HTTP/1.1\r\n".encode("latin-1"),
                b"".join([line for name, line in self._lines if name not in replaces])
                if replaces
                else self._head,
                headers,
                b"content-length: %d\r\n\r\n" % len(body),
            )
        )
        # An idle connection is taken without the _acquire() coroutine (the common case).
        conn = None if self._closed else self._take_idle()
        if conn is None:
            conn = await self._acquire(deadline)
        transport = conn.transport
        while conn.closed or transport is None or transport.is_closing():
            # Closed before a byte was written to it: provably unsent, take another.
            conn.drop()
            conn = await self._acquire(deadline)
            transport = conn.transport
        resp = Response(conn, read_timeout, deadline, first_byte)
        conn.resp = resp
        if body and len(body) > 16 * 1024:
            transport.writelines((head, body))
        else:
            transport.write(head + body)
        try:
            # Until the status and headers are in (waited here: no coroutine of their own).
            while not resp.status:
                if resp._error is not None:
                    raise resp._error
                waiter = resp.arm()
                try:
                    await waiter
                finally:
                    resp.disarm()
        except BaseException:
            resp.close()
            raise
        return resp

    def _take_idle(self) -> _Connection | None:
        """The most recently idle connection still fit to use, now busy (those closed or idle
        past ``idle_timeout`` are dropped on the way); None when there is none."""
        now = self.loop.time()
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > self.idle_timeout:
                conn.drop()
                continue
            self._busy.add(conn)
            return conn
        return None

    async def _acquire(self, deadline: float | None) -> _Connection:
        loop = self.loop
        while True:
            if self._closed:
                raise aiohttp.ClientConnectionError("the upstream client is closed")
            conn = self._take_idle()
            if conn is not None:
                return conn
            if self.connections < self.limit:
                return await self._connect(deadline)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_at(deadline, _expire, waiter) if deadline is not None else None
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._wake_one()  # woken, but leaving: pass the turn on
                raise
            finally:
                if timer is not None:
                    timer.cancel()

    async def _connect(self, deadline: float | None) -> _Connection:
        conn = _Connection(self)
        self._busy.add(conn)  # counts towards the limit while connecting
        timeout = self.connect_timeout
        if deadline is not None:
            left = max(0.0, deadline - self.loop.time())
            timeout = left if timeout is None else min(timeout, left)
        try:
            async with asyncio.timeout(timeout):
                await self.loop.create_connection(lambda: conn, self.host, self.port)
        except BaseException as exc:
            self._busy.discard(conn)
            self._wake_one()
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise ConnectError(exc.errno, exc.strerror or str(exc)) from None
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if conn.keep_alive and not conn.closed and not self._closed:
            conn.idle_since = self.loop.time()
            self._idle.append(conn)
        else:
            conn.drop(abort=False)
        self._wake_one()

    def _forget(self, conn: _Connection) -> None:
        """``conn`` closed: it no longer counts towards the limit."""
        self._busy.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection; requests after this fail."""
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.drop()
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()
