"""Stream helpers shared by protocols and backends.

:class:`SSEDecoder` parses Server-Sent Events incrementally from whatever byte chunks arrive;
:class:`Assembler` folds canonical events back into one :class:`ChatResponse` (for backends that
only stream, and for filters and stores that need the whole answer of a stream).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import attrs

from gateway.canonical import (
    ChatResponse,
    Error,
    Event,
    Finish,
    Message,
    Part,
    ReasoningDelta,
    ReasoningPart,
    Start,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from gateway.errors import GatewayError


@attrs.define(slots=True)
class SSEFrame:
    """One Server-Sent Event: its ``event`` name (``None`` for the default) and ``data``."""

    event: str | None
    data: str
    id: str | None = None


class SSEDecoder:
    """Incremental SSE parser: ``feed(chunk)`` returns the frames that chunk completed.

    Accepts ``\\n``, ``\\r\\n`` and ``\\r`` line ends, comment lines, multi-line data, and frames
    split anywhere across chunks, as the SSE specification says. Whole frames are cut out of the
    buffer at blank lines; a frame that is one ``data: ...`` line (what model servers send) takes
    a short path that does not look at it line by line. ``skip``, when given, is asked about each
    such frame's raw bytes first: frames it accepts are dropped unparsed (a relay uses it for
    frames nobody needs to read).
    """

    __slots__ = ("_buf", "_id", "_skip")

    def __init__(self, skip: Callable[[bytes], bool] | None = None) -> None:
        self._buf = b""
        self._id: str | None = None
        self._skip = skip

    def feed(self, chunk: bytes) -> list[SSEFrame]:
        buf = self._buf + chunk if self._buf else chunk
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
        """The general case: a block of lines, blank lines within it ending frames too."""
        event: str | None = None
        data: list[str] = []
        for raw in [*block.split(b"\n"), b""]:
            if not raw:
                if data or event is not None:
                    frames.append(SSEFrame(event, "\n".join(data), self._id))
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
            elif name == "id":
                self._id = value

    def end(self) -> list[SSEFrame]:
        """Frames left when the stream closes (a last frame without its blank line)."""
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


class Assembler:
    """Folds a canonical event stream into a :class:`ChatResponse`."""

    __slots__ = (
        "_calls",
        "_reasoning",
        "_signature",
        "_text",
        "created",
        "error",
        "finished",
        "id",
        "model",
        "reason",
        "stop_sequence",
        "usage",
    )

    def __init__(self, model: str = "") -> None:
        self.id: str | None = None
        self.model = model
        self.created = 0
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._signature: str | None = None
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments...]
        self.usage: Usage | None = None
        self.reason: str | None = None
        self.stop_sequence: str | None = None
        self.finished = False
        self.error: GatewayError | None = None

    def add(self, ev: Event) -> None:
        t = type(ev)
        if t is TextDelta:
            self._text.append(ev.text)  # type: ignore[attr-defined]
        elif t is ToolCallStart:
            self._calls[ev.index] = [ev.id, ev.name]  # type: ignore[attr-defined]
        elif t is ToolCallDelta:
            call = self._calls.get(ev.index)  # type: ignore[attr-defined]
            if call is not None:
                call.append(ev.arguments)  # type: ignore[attr-defined]
        elif t is UsageEvent:
            self.usage = ev.usage  # type: ignore[attr-defined]
        elif t is Finish:
            self.finished = True
            self.reason = ev.reason  # type: ignore[attr-defined]
            self.stop_sequence = ev.stop_sequence  # type: ignore[attr-defined]
        elif t is Start:
            # The first message's id wins: an agent sends one Start per model step.
            self.id = self.id or ev.id  # type: ignore[attr-defined]
            self.model = ev.model or self.model  # type: ignore[attr-defined]
            self.created = self.created or ev.created or 0  # type: ignore[attr-defined]
        elif t is ReasoningDelta:
            self._reasoning.append(ev.text)  # type: ignore[attr-defined]
            self._signature = ev.signature or self._signature  # type: ignore[attr-defined]
        elif t is Error:
            self.error = ev.error  # type: ignore[attr-defined]

    @property
    def ok(self) -> bool:
        """The stream finished normally (a finish event and no error)."""
        return self.finished and self.error is None

    def text(self) -> str:
        return "".join(self._text)

    def message(self) -> Message:
        parts: list[Part] = []
        if self._reasoning:
            parts.append(ReasoningPart("".join(self._reasoning), self._signature))
        if self._text:
            parts.append(TextPart("".join(self._text)))
        for index in sorted(self._calls):
            call_id, name, *args = self._calls[index]
            parts.append(ToolCallPart(call_id, name, "".join(args) or "{}"))
        return Message("assistant", parts)

    def response(self) -> ChatResponse:
        return ChatResponse(
            id=self.id or new_id("chatcmpl-"),
            model=self.model,
            message=self.message(),
            finish_reason=self.reason or "stop",
            stop_sequence=self.stop_sequence,
            usage=self.usage,
            created=self.created or int(time.time()),
        )


def new_id(prefix: str = "") -> str:
    """A fresh random identifier with a protocol's prefix (``chatcmpl-``, ``msg_``, ``call_``)."""
    return prefix + uuid.uuid4().hex[:24]
