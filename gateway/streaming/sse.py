"""Server-Sent Events, read and written: one stack for every protocol.

:class:`SSEDecoder` parses events incrementally from whatever byte chunks an upstream sends;
:class:`FrameRelay` cuts a relayed stream at whole frames; :class:`SSEResponse` is the
``text/event-stream`` response every protocol writes its frames into, with keep-alive pings and
a send timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import msgspec
import orjson
from aiohttp import hdrs, web
from aiohttp.client_exceptions import ClientConnectionResetError
from aiohttp.helpers import EMPTY_BODY_STATUS_CODES, rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from aiohttp.http_writer import StreamWriter, _serialize_headers
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.streaming import model_name
from gateway.streaming.deadlines import Deadlines, deadlines


@attrs.define(slots=True)
class SSEFrame:
    """One Server-Sent Event: its ``event`` name (``None`` for the default) and ``data``."""

    event: str | None
    data: str
    id: str | None = None


#: Line ends looked for as byte values: ``b"\\n" in data`` first tries its operand as an integer
#: (Python 3.11: an exception raised and cleared), which costs ten times finding the byte.
_LF, _CR = ord("\n"), ord("\r")

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
    ``skip``, when given, is asked about such events' raw bytes first: events it accepts are
    dropped (a relay uses it for JSON frames nobody needs to read), once all those of one
    ``feed`` are known to be well-formed JSON, one value each (one parse per feed); when one is
    not, none of them is dropped, so the reader meets the malformed one. A :class:`FrameSkip`
    with a test of ``many`` frames is asked about all the events of a read but the last few at
    once (about a read of one event alone too), and when it refuses them, or for the last few,
    about each one alone.
    """

    __slots__ = ("_buf", "_id", "_many", "_skip", "_start", "completed", "retry")

    def __init__(self, skip: Callable[[bytes], bool] | FrameSkip | None = None) -> None:
        self._buf = b""
        self._id: str | None = None
        if isinstance(skip, FrameSkip):
            self._skip: Callable[[bytes], bool] | None = skip.one
            self._many = skip.many
        else:
            self._skip, self._many = skip, None
        self._start = True  # nothing read yet: the stream may begin with a byte order mark
        #: The reconnection time in milliseconds the stream last asked for, if any.
        self.retry: int | None = None
        #: How many frames (events or not) the last ``feed`` completed.
        self.completed = 0

    @property
    def last_event_id(self) -> str | None:
        """The last event id the stream set (also by events that dispatched nothing)."""
        return self._id

    def _normal(self, buf: bytes) -> bytes | None:
        """``buf`` with a leading byte order mark dropped and its line ends made ``\\n``;
        ``None`` while a byte order mark may be arriving (then kept)."""
        if self._start:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buf = buf  # perhaps the first bytes of a byte order mark: wait for more
                self.completed = 0
                return None
            self._start = False
            if buf[:3] == _BOM:
                buf = buf[3:]
        if _CR in buf:
            # A lone trailing \r may be the first half of \r\n: keep it for the next chunk.
            keep_cr = buf.endswith(b"\r")
            if keep_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buf += b"\r"
        return buf

    def feed_json(self, chunk: bytes) -> tuple[bool, list[Any]]:
        """The events ``chunk`` completed, for a reader that needs only their data, as JSON.

        ``(True, values)``: the events' data parsed, one value each, when every event is one
        ``data:`` line, all of them after an ``event:`` line or none of them (what model
        servers send), and they parse as JSON (valid UTF-8) in one pass, which costs a fraction
        of cutting and parsing each (the event names are not read). Of events with no name,
        the last one's data, when it does not begin a JSON object (an end marker such as
        OpenAI's ``[DONE]``), is left out of the pass and comes last as its bytes, unparsed,
        for the reader to parse or recognise. Otherwise
        ``(False, datas)``: each event's data as :meth:`feed` would give it (with no ``skip``),
        but as its bytes, not decoded, when it is one such line; the reader parses each.
        """
        buf = self._buf + chunk if self._buf else chunk
        if self._start or _CR in buf:
            normal = self._normal(buf)
            if normal is None:
                return True, []
            buf = normal
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            self.completed = 0
            return True, []
        if end and buf[end - 1] == 10:
            # A run of more than two line ends: cut as split() does, from the left.
            blocks = buf.split(b"\n\n")
            self._buf = blocks.pop()
            self.completed = len(blocks)
            return False, self._datas(blocks)
        self._buf = buf[end + 2 :]
        # The rest holds no blank line. How many events the read completed is how many parts
        # the forms below split the read into; a count() of the blank lines (a pass over the
        # whole read) only when they do not apply. (Split and joined rather than replaced:
        # Python 3.11's replace() looks for its separators twice, a count first.)
        if buf.find(b"\n\n", 0, end) < 0:  # one event (a stream's tokens, one a read)
            self.completed = 1
            return False, self._datas([buf[:end]])
        if buf[:6] == b"data: ":
            # data: A \n\n data: B ... -> [A,B,...]: with no line end left, every blank line
            # was a separator followed by "data: ", and each event one line. A last event that
            # is no object (the end marker) is kept out: it would fail the whole parse.
            datas = buf[6:end].split(b"\n\ndata: ")
            tail = datas.pop() if datas[-1][:1] != b"{" else None
            array = b"[" + b",".join(datas) + b"]"
            if _LF not in array and (tail is None or _LF not in tail):
                n = len(datas)
                try:
                    values = _loads(array)
                except ValueError:  # not JSON (a malformed frame), not UTF-8
                    pass
                else:
                    if len(values) == n:
                        if tail is not None:
                            values.append(tail)
                            n += 1
                        self.completed = n
                        return True, values
        elif buf[:7] == b"event: ":
            # event: a \n data: A \n\n event: b \n data: B ... -> [A,B,...]: the first event's
            # name line dropped, and each later one's with the blank line before it, in one
            # substitution (the names are not read); with no line end left, each event was
            # its name and one data line, and with one value each, the events were those.
            first = buf.find(b"\n")
            if buf[first + 1 : first + 7] == b"data: ":
                body, n = _NAMED.subn(b",", buf[first + 7 : end])
                array = b"[" + body + b"]"
                if _LF not in array:
                    try:
                        values = _loads(array)
                    except ValueError:
                        pass
                    else:
                        if len(values) == n + 1:
                            self.completed = n + 1
                            return True, values
        self.completed = buf.count(b"\n\n")
        return False, self._datas(buf[:end].split(b"\n\n"))

    def _datas(self, blocks: list[bytes]) -> list[Any]:
        """The data of the events of ``blocks`` (see :meth:`feed_json`)."""
        datas: list[Any] = []
        for block in blocks:
            if block[:6] == b"data: " and _LF not in block:
                datas.append(block[6:])
            elif (
                block[:7] == b"event: "
                and (nl := block.find(b"\n", 7)) > 0
                and block[nl + 1 : nl + 7] == b"data: "
                and block.find(b"\n", nl + 1) < 0
            ):
                datas.append(block[nl + 7 :])
            elif block:
                frames: list[SSEFrame] = []
                self._parse(block, frames)
                datas += [frame.data for frame in frames]
        return datas

    def feed(self, chunk: bytes) -> list[SSEFrame]:
        buf = self._buf + chunk if self._buf else chunk
        if self._start or _CR in buf:
            normal = self._normal(buf)
            if normal is None:
                return []
            buf = normal
        many = self._many
        if (
            many is not None
            and buf.find(_LF) == len(buf) - 2
            and buf[-1] == _LF
            and buf[:6] == b"data: "
            and many(array := b"[" + buf[6:-2] + b"]", 1)
            and _utf8(array)
        ):
            # A read of one frame that needs no parsing (a stream's tokens, one a read): one
            # test of its data, nothing cut.
            self._buf = b""
            self.completed = 1
            return []
        blocks: list[bytes] | None = None
        start = 0
        if many is not None and buf[:6] == b"data: ":
            # The fast path: all frames but the last few asked about at once, when each is one
            # ``data:`` line (most reads of a model's stream are all content frames; its end,
            # finish and usage, come in the last ones), as one JSON array of their data. The
            # last few are found from the end and only they are cut apart (not the whole read).
            rfind = buf.rfind
            last = rfind(b"\n\n")
            head = rfind(b"\n\n", 0, last) if last > 0 else -1
            if head > 0:
                head = rfind(b"\n\n", 0, head)
                if head > 0:
                    head = rfind(b"\n\n", 0, head)  # _TAIL (3) frames from the end
            if head > 6 and buf.find(b"\n\n\n", head) < 0:
                # Split and joined rather than replaced: Python 3.11's replace() looks for its
                # separators twice (a count first).
                datas = buf[6:head].split(b"\n\ndata: ")
                array = b"[" + b",".join(datas) + b"]"
                # With no line end left, every blank line of the head was a separator followed
                # by "data: " and each frame is one line; no run of line ends after it: the
                # frames are those split() would cut.
                if _LF not in array:
                    count = len(datas)
                    if many(array, count) and _utf8(array):
                        start = count
                        blocks = buf[head + 2 : last].split(b"\n\n")
                        self._buf = buf[last + 2 :]
                        self.completed = start + len(blocks)
        if blocks is None:
            blocks = buf.split(b"\n\n")
            self._buf = blocks.pop()
            self.completed = len(blocks)
        skip = self._skip
        frames: list[SSEFrame] = []
        skipped: list[bytes] | None = None
        for block in blocks:
            if block[:6] == b"data: " and _LF not in block:
                if skip is not None and skip(block):
                    if skipped is None:
                        skipped = [block[6:]]
                    else:
                        skipped.append(block[6:])
                    continue
                frames.append(SSEFrame(None, block[6:].decode("utf-8", "replace"), self._id))
            elif block[:7] == b"event: " and (nl := block.find(b"\n", 7)) > 0:
                # An event name and one data line (what Anthropic's upstreams send), at once.
                if block[nl + 1 : nl + 7] == b"data: " and block.find(b"\n", nl + 1) < 0:
                    event = block[7:nl].decode("utf-8", "replace") or None
                    data = block[nl + 7 :].decode("utf-8", "replace")
                    frames.append(SSEFrame(event, data, self._id))
                else:
                    self._parse(block, frames)
            elif block:
                self._parse(block, frames)
        if skipped is not None and not _well_formed(skipped):
            # Every frame of the read then, those of the fast path too.
            return self._frames(buf.split(b"\n\n")[:-1] if start else blocks)
        return frames

    def _frames(self, blocks: list[bytes]) -> list[SSEFrame]:
        """Every event of ``blocks``, none skipped."""
        frames: list[SSEFrame] = []
        for block in blocks:
            if block:
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


_loads = orjson.loads

#: What separates the data of one named event from the next one's: the blank line, the next
#: event's name line, and its data field's name.
_NAMED = re.compile(rb"\n\nevent: [^\n]*\ndata: ")

#: Checks a JSON array's syntax without building its values: each element is kept as raw bytes.
_RAW_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
#: Frames at the end of a read that the skipping decoder asks about one by one (a stream's
#: finish, usage and end marker), the others together.
_TAIL = 3


def _well_formed(datas: list[bytes]) -> bool:
    """Whether each of ``datas`` is one well-formed JSON value in valid UTF-8 (one pass for all).

    The values are validated, not built (a relay forwards them as they came), which costs a
    seventh of parsing them; msgspec does not check UTF-8 inside strings it skips, so text that
    is not ASCII is decoded once too.
    """
    joined = b"[" + b",".join(datas) + b"]"
    try:
        values = _RAW_ARRAY.decode(joined)
    except msgspec.DecodeError:
        return False
    return len(values) == len(datas) and _utf8(joined)


def _utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@attrs.frozen
class FrameSkip:
    """What a relay that nobody observes need not parse, for :class:`SSEDecoder`.

    ``one`` is asked about one frame's bytes (a ``data: ...`` line). ``many``, when given, about
    several frames at once (or the one frame of a read, before ``one``): their data as one JSON
    array (``[v1,v2,...]``) and how many there are; it answers whether the array holds exactly that many well-formed values and none of
    them needs parsing (the decoder checks UTF-8 itself).
    """

    one: Callable[[bytes], bool]
    many: Callable[[bytes, int], bool] | None = None


def complete_frames(buf: bytes) -> int:
    """How many leading bytes of ``buf`` are whole SSE frames (up to the last blank line), so a
    relay can forward those and hold back a frame still arriving."""
    lf = buf.rfind(b"\n\n")
    # A CRLF frame end matters only after the last LF one (most streams have none: no pass).
    crlf = buf.rfind(b"\r\n\r\n", max(lf - 2, 0)) if _CR in buf else -1
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


class FrameRelay:
    """What a same-protocol relay may forward of an upstream stream: whole SSE frames only.

    An upstream read can end inside a frame. Forwarding that half would let whatever the gateway
    writes next (a keep-alive on a stalled stream, the error frame of a cut connection) land in
    the middle of the client's frame and corrupt it; so the tail of a frame still arriving is
    held back until its blank line comes.
    """

    __slots__ = ("_model", "_ours", "_theirs", "pending")

    def __init__(self, model: str | None = None) -> None:
        self.pending = b""
        #: The name the client asked for: the upstream's ``model`` members are made to say it
        #: (see :mod:`gateway.streaming.model_name`); ``None`` once learnt, or to relay them as
        #: they are.
        self._model = model
        self._theirs = self._ours = b""

    def feed(self, chunk: bytes) -> bytes:
        """The whole frames ``chunk`` completes (``b""`` when none)."""
        data = self.pending + chunk if self.pending else chunk
        cut = complete_frames(data)
        if cut == len(data):
            self.pending = b""
        else:
            self.pending = data[cut:]
            data = data[:cut]
        return self._renamed(data) if self._theirs or self._model is not None else data

    def end(self) -> bytes:
        """At the end of a stream that finished well, a last frame the upstream did not close
        with a blank line, closed (``b""`` when none)."""
        tail, self.pending = self.pending.strip(b"\r\n"), b""
        return self._renamed(tail + b"\n\n") if tail else b""

    def _renamed(self, data: bytes) -> bytes:
        """``data`` with the upstream's ``model`` members saying the asked name (learnt from
        the first member seen)."""
        if self._model is not None:
            learnt = model_name.learn(data, self._model)
            if learnt is None:
                return data
            self._model = None
            self._theirs, self._ours = learnt
        return data.replace(self._theirs, self._ours) if self._theirs else data


class SendTimeout(ConnectionResetError):
    """A client accepted no data for the response's send timeout: the gateway cut it."""


#: The keep-alive frame of a stream that names none: an SSE comment.
PING = b": ping\n\n"


#: The headers of a stream whose head was sent (see :meth:`SSEResponse.prepare`).
_SENT = CIMultiDictProxy(CIMultiDict[str]())


#: What :func:`_start_chunked` leaves to aiohttp: methods whose answers it shapes otherwise.
_OTHER_METHODS = frozenset((hdrs.METH_HEAD, hdrs.METH_CONNECT))


async def _start_chunked(request: web.BaseRequest, resp: web.StreamResponse) -> bool:
    """What ``resp.prepare(request)`` does for a chunked answer (a stream) to a plain HTTP/1.1
    request, without four of its coroutines: the same headers in the same order aiohttp
    writes them (``Transfer-Encoding: chunked``, ``Content-Type`` when missing, ``Date``,
    ``Server``, ``Connection: close`` when the connection closes after it), the applications'
    ``on_response_prepare`` receivers run at the same point (by the request's own hook), and the
    head serialised and left with the connection's writer as aiohttp leaves it (sent with the
    first write, or at once when the response sends its head immediately).

    ``False``, with nothing done, when aiohttp's own ``prepare()`` must do it: the cases the
    gateway's connections leave to aiohttp for plain answers too (``HEAD``, HTTP/1.0, cookies,
    compression, a status without a body, a length or framing the handler set, a writer with
    callbacks; see :mod:`gateway.server.http`).
    """
    writer = request._payload_writer
    if (
        type(writer) is not StreamWriter
        or writer._on_headers_sent is not None
        or writer._on_chunk_sent is not None
        or writer.on_body_write is not None
        or writer._compress is not None
        or writer._headers_buf is not None
        or writer._headers_written
        or resp._payload_writer is not None
        or resp._eof_sent
        or resp._cookies
        or resp._compression
        or resp._status in EMPTY_BODY_STATUS_CODES
        or request._method in _OTHER_METHODS
        or (request._version is not HttpVersion11 and request._version != HttpVersion11)
    ):
        return False
    headers = resp._headers
    if hdrs.CONTENT_LENGTH in headers or hdrs.TRANSFER_ENCODING in headers:
        return False
    # What StreamResponse._start() and _prepare_headers() do for such an answer.
    resp._req, resp._payload_writer, resp._must_be_empty_body = request, writer, False
    if resp._keep_alive is None:
        resp._keep_alive = request.keep_alive
    writer.chunked = True
    headers[hdrs.TRANSFER_ENCODING] = "chunked"
    headers.setdefault(hdrs.CONTENT_TYPE, "application/octet-stream")
    if hdrs.DATE not in headers:
        headers[hdrs.DATE] = rfc822_formatted_time()
    headers.setdefault(hdrs.SERVER, SERVER_SOFTWARE)
    if not resp._keep_alive and hdrs.CONNECTION not in headers:
        headers[hdrs.CONNECTION] = "close"
    await request._prepare_hook(resp)  # the applications' on_response_prepare receivers
    # Serialised after the receivers, which may change the headers (and the status).
    writer._headers_buf = _serialize_headers(f"HTTP/1.1 {resp._status} {resp._reason}", headers)
    writer._headers_written = False
    if resp._send_headers_immediately:
        writer.send_headers()
    return True


class SSEResponse(web.StreamResponse):
    """The ``text/event-stream`` response every protocol writes its frames into.

    One deadline per stream (not a task, nor a timer of its own: see
    :mod:`gateway.streaming.deadlines`) looks at the time of the last write: an idle stream gets
    ``ping`` (an SSE comment, or the protocol's own keep-alive frame) every ``ping_interval``,
    and a write that has waited on the client for ``send_timeout`` (a client that reads
    nothing) aborts the connection: that write raises :class:`SendTimeout` (or, with aiohttp's
    handler cancellation, the handler is cancelled) and :attr:`timed_out` says why. A busy
    stream costs nothing extra. Callers write whole frames only, so a ping never lands inside another
    frame. (Hung peers that acknowledge nothing are cut by the kernel: the server sets
    ``TCP_USER_TIMEOUT`` on its listening sockets.)

    With ``hold_head`` the response's head is not sent by :meth:`prepare` but with the first
    write (or the end), in one send: a stream whose whole answer is at hand leaves in one send
    rather than two. Its writer then calls :meth:`send_head` before it waits for anything with
    nothing written, so a client does not wait for the head of a stream that is slow to begin.
    """

    __slots__ = (
        "_bucket",
        "_clock",
        "_deadlines",
        "_frame",
        "_interval",
        "_last_write",
        "_pinging",
        "_send_headers_immediately",
        "_send_timeout",
        "_transport",
        "_writing",
        "timed_out",
    )

    def __init__(
        self,
        ping_interval: float,
        headers: Mapping[str, str] | None = None,
        ping: bytes = PING,
        send_timeout: float | None = None,
        hold_head: bool = False,
    ) -> None:
        super().__init__(status=200, headers=headers)
        # aiohttp's own switch (a class attribute of StreamResponse, a slot here): whether
        # prepare() sends the head at once or leaves it to go with the first write.
        self._send_headers_immediately = not hold_head
        h = self.headers
        h["Content-Type"] = "text/event-stream"
        h["Cache-Control"] = "no-cache"
        h["X-Accel-Buffering"] = "no"
        self._interval = ping_interval
        self._frame = ping
        self._send_timeout = send_timeout
        self._clock: Callable[[], float] = time.monotonic
        self._last_write = 0.0
        self._writing = 0
        #: The look pending (see gateway.streaming.deadlines), once prepared.
        self._deadlines: Deadlines | None = None
        self._bucket: int | None = None
        self._pinging: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        #: Whether the client was cut for reading nothing within the send timeout.
        self.timed_out = False

    async def prepare(self, request: web.BaseRequest) -> Any:
        if self.prepared:
            # aiohttp prepares a handler's response again once the handler has returned: the
            # stream is over by then, and no look is to be made again.
            return await super().prepare(request)
        if await _start_chunked(request, self):
            writer = self._payload_writer
        else:
            writer = await super().prepare(request)
        # The head went out: a stream may stay open for long, so it does not keep the header
        # map (and what serialising it cached) meanwhile. Reading it gives nothing from now on;
        # changing it raises, as changing a sent header would mean nothing.
        self._headers = _SENT  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self._transport = request.transport
        self._last_write = now = loop.time()
        self._deadlines = wheel = deadlines(loop)
        self._bucket = wheel.add(now + self._next_check(0.0), self)
        return writer

    def send_head(self) -> None:
        """Send the head now if :meth:`prepare` held it (``hold_head``) and nothing was written
        since."""
        writer = self._payload_writer
        if writer is not None:
            writer.send_headers()  # nothing when it was sent (or aiohttp sent it in prepare())

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self._last_write = self._clock()
        self._writing += 1
        try:
            # StreamResponse.write() inline (one coroutine fewer a write): its checks, then its
            # payload writer's write().
            writer = self._payload_writer
            if self._eof_sent:
                raise RuntimeError("Cannot call write() after write_eof()")
            if writer is None:
                raise RuntimeError("Cannot call write() before prepare()")
            if (
                type(writer) is StreamWriter
                and writer.chunked
                and writer._on_chunk_sent is None
                and writer.on_body_write is None
                and writer._compress is None
                and writer.length is None
                and type(data) is bytes
                and data
                and (writer._headers_written or writer._headers_buf is not None)
            ):
                # What the writer's write() does for a chunk of a chunked body, without its
                # coroutine and its _send_headers_with_payload(), _write_chunked_payload() and
                # _writelines() calls: one transport write (Python 3.11's aiohttp joins them
                # too), with the head when it is still held, drained past the same limit.
                transport = writer._protocol.transport
                if transport is None or transport.is_closing():
                    raise ClientConnectionResetError("Cannot write to closing transport")
                chunk = b"%x\r\n%b\r\n" % (len(data), data)
                head = writer._headers_buf
                if head is not None:
                    writer._headers_buf = None
                    writer._headers_written = True
                    chunk = head + chunk
                size = len(chunk)
                writer.output_size += size
                writer.buffer_size += size
                transport.write(chunk)
                if writer.buffer_size > 0x10000:
                    writer.buffer_size = 0
                    await writer.drain()
            else:
                await writer.write(data)
        except ConnectionResetError:
            if self.timed_out:
                raise SendTimeout("the client read nothing within the send timeout") from None
            raise
        finally:
            self._writing -= 1
        if self.timed_out:  # the cut woke the write up as if it had gone through
            raise SendTimeout("the client read nothing within the send timeout")

    def _next_check(self, idle: float) -> float:
        """Seconds to the next look, ``idle`` seconds after the last write began: when a ping
        falls due, and never longer than the send timeout (so a write that stalls meanwhile is
        seen in time)."""
        wait = self._interval - idle
        timeout = self._send_timeout
        return wait if timeout is None or wait < timeout else timeout

    def expired(self) -> None:
        """The time of the next look came."""
        self._bucket = None
        self._check()

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        idle = now - self._last_write
        timeout = self._send_timeout
        if self._writing:
            if timeout is None:
                wait = self._interval
            elif idle >= timeout:
                self._cut()
                return
            else:
                wait = timeout - idle
        elif idle >= self._interval:
            self._pinging = loop.create_task(self._send_ping())
            wait = self._next_check(0.0)
        else:
            wait = self._next_check(idle)
        if self._deadlines is not None:
            self._bucket = self._deadlines.add(now + wait, self)

    def _cut(self) -> None:
        """Drop a client that has read nothing for the send timeout."""
        self.timed_out = True
        if self._transport is not None:
            self._transport.abort()

    async def _send_ping(self) -> None:
        try:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.write(self._frame)
        finally:
            # A finished task would stay until the next ping (with its coroutine and its
            # entry in asyncio's set of tasks): about 1 KB an idle stream holds for nothing.
            if self._pinging is asyncio.current_task():
                self._pinging = None

    def stop_pinging(self) -> None:
        """Stop the timer (pings and the send timeout): the stream is over."""
        if self._bucket is not None and self._deadlines is not None:
            self._deadlines.discard(self._bucket, self)
        self._bucket = None
        self._deadlines = None  # and no look is made again
        if self._pinging is not None:
            self._pinging.cancel()

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof_sent:
            return  # aiohttp's own call once the handler has returned: the stream is over
        self.stop_pinging()
        writer = self._payload_writer
        if (
            type(writer) is StreamWriter
            and writer.chunked
            and not writer._eof
            and writer._on_chunk_sent is None
            and writer.on_body_write is None
            and writer._compress is None
            and writer.length is None
            and type(data) is bytes
        ):
            # What StreamResponse.write_eof() and its writer's write_eof() and drain() do for
            # a chunked body, without their three coroutines: the last chunk and the end
            # (with the head when it is still held) in one write.
            head = writer._headers_buf
            if head is not None:
                writer._headers_buf = None
                writer._headers_written = True
            else:
                head = b""
            if data:
                writer._writelines((head, b"%x\r\n" % len(data), data, b"\r\n0\r\n\r\n"))
            else:
                writer._writelines((head, b"0\r\n\r\n"))
            protocol = writer._protocol
            if protocol.transport is not None and protocol._paused:
                await protocol._drain_helper()
            writer._eof = True
            self._eof_sent = True
            self._req = None
            self._body_length = writer.output_size
            self._payload_writer = None
            return
        await super().write_eof(data)
