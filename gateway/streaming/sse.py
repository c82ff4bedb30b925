"""Server-Sent Events, read and written: one stack for every protocol.

:class:`SSEDecoder` parses events incrementally from whatever byte chunks an upstream sends;
:class:`FrameRelay` cuts a relayed stream at whole frames; :class:`SSEResponse` is the
``text/event-stream`` response every protocol writes its frames into, with keep-alive pings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from aiohttp import web


@attrs.define(slots=True)
class SSEFrame:
    """One Server-Sent Event: its ``event`` name (``None`` for the default) and ``data``."""

    event: str | None
    data: str
    id: str | None = None


#: The UTF-8 byte order mark, which a stream may start with and the SSE specification ignores.
_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Incremental SSE parser: ``feed(chunk)`` returns the events that chunk completed.

    It follows the SSE specification (the HTML standard's event stream interpretation):
    ``\\n``, ``\\r\\n`` and ``\\r`` line ends, comment lines, multi-line data, a field without a
    colon (the whole line is its name, its value empty), a leading byte order mark ignored, and
    events split anywhere across chunks. A blank line dispatches an event only when a ``data``
    field came before it (``event: x`` alone dispatches nothing). The last ``id`` persists and
    is stamped on every later event; an id containing NUL is ignored. ``retry`` (digits only) is
    kept in :attr:`retry`.

    Whole events are cut out of the buffer at blank lines; an event that is one ``data: ...``
    line (what model servers send) takes a short path that does not look at it line by line.
    ``skip``, when given, is asked about each such event's raw bytes first: events it accepts
    are dropped unparsed (a relay uses it for frames nobody needs to read).
    """

    __slots__ = ("_buf", "_id", "_skip", "_start", "retry")

    def __init__(self, skip: Callable[[bytes], bool] | None = None) -> None:
        self._buf = b""
        self._id: str | None = None
        self._skip = skip
        self._start = True  # nothing read yet: the stream may begin with a byte order mark
        #: The reconnection time in milliseconds the stream last asked for, if any.
        self.retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        """The last event id the stream set (also by events that dispatched nothing)."""
        return self._id

    def feed(self, chunk: bytes) -> list[SSEFrame]:
        buf = self._buf + chunk if self._buf else chunk
        if self._start:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buf = buf  # perhaps the first bytes of a byte order mark: wait for more
                return []
            self._start = False
            if buf[:3] == _BOM:
                buf = buf[3:]
        if b"\r" in buf:
            # A lone trailing \r may be the first half of \r\n: keep it for the next chunk.
            keep_cr = buf.endswith(b"\r")
            if keep_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buf += b"\r"
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        frames: list[SSEFrame] = []
        skip = self._skip
        for block in blocks:
            if block[:6] == b"data: " and b"\n" not in block:
                if skip is not None and skip(block):
                    continue
                frames.append(SSEFrame(None, block[6:].decode("utf-8", "replace"), self._id))
            elif block:
                self._parse(block, frames)
        return frames

    def _parse(self, block: bytes, frames: list[SSEFrame]) -> None:
        """The general case: a block of lines, blank lines within it ending events too."""
        event: str | None = None
        data: list[str] = []
        for raw in [*block.split(b"\n"), b""]:
            if not raw:
                if data:
                    frames.append(SSEFrame(event or None, "\n".join(data), self._id))
                event, data = None, []
                continue
            line = raw.decode("utf-8", "replace")
            if line[0] == ":":
                continue
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id" and "\0" not in value:
                self._id = value
            elif name == "retry" and value.isascii() and value.isdigit():
                self.retry = int(value)

    def end(self) -> list[SSEFrame]:
        """Events left when the stream closes: a last event without its blank line.

        The specification drops such an event; model servers sometimes end their stream that
        way, so a caller that wants it asks for it here.
        """
        return self.feed(b"\n\n") if self._buf.strip() else []


def complete_frames(buf: bytes) -> int:
    """How many leading bytes of ``buf`` are whole SSE frames (up to the last blank line), so a
    relay can forward those and hold back a frame still arriving."""
    lf = buf.rfind(b"\n\n")
    crlf = buf.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


class FrameRelay:
    """What a same-protocol relay may forward of an upstream stream: whole SSE frames only.

    An upstream read can end inside a frame. Forwarding that half would let whatever the gateway
    writes next (a keep-alive on a stalled stream, the error frame of a cut connection) land in
    the middle of the client's frame and corrupt it; so the tail of a frame still arriving is
    held back until its blank line comes.
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The whole frames ``chunk`` completes (``b""`` when none)."""
        data = self.pending + chunk if self.pending else chunk
        cut = complete_frames(data)
        if cut == len(data):
            self.pending = b""
            return data
        self.pending = data[cut:]
        return data[:cut]

    def end(self) -> bytes:
        """At the end of a stream that finished well, a last frame the upstream did not close
        with a blank line, closed (``b""`` when none)."""
        tail, self.pending = self.pending.strip(b"\r\n"), b""
        return tail + b"\n\n" if tail else b""


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
