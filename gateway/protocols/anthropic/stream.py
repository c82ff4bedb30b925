"""Anthropic Messages streams, both ways: upstream SSE events to canonical events, and canonical
events to the SSE frames the anthropic SDK reads.

Anthropic numbers content blocks (text, thinking and tool_use alike); canonical tool-call events
number tool calls by their position in the turn (0, 1, ...), which is what OpenAI's ``index``
is. Both mappings are kept here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway import (
    JSON,
    Error,
    Event,
    Finish,
    Raw,
    ReasoningDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageEvent,
    new_id,
)
from gateway.protocols.anthropic.messages import OUTPUT_TOOL, PROTOCOL
from gateway.protocols.anthropic.response import (
    FINISH_IN,
    decode_usage,
    encode_usage,
    error_body,
    stop_reason,
)

# --- upstream events -> canonical ---------------------------------------------------------------


class StreamParser:
    """Turns the JSON of Anthropic stream events into canonical events.

    The turn is finished only at ``message_stop``: a stream cut after ``message_delta`` is still
    a failure. Usage from ``message_start`` and the cumulative ``message_delta`` counts is
    reported once, just before the finish.
    """

    __slots__ = ("_blocks", "_reason", "_stop_sequence", "_tools", "_usage", "finished")

    def __init__(self) -> None:
        self._blocks: dict[JSON, int] = {}  # content block index (as sent) -> tool position
        self._tools = 0
        self._usage: dict[str, Any] = {}
        self._reason: str | None = None
        self._stop_sequence: str | None = None
        self.finished = False

    def feed(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            dt = delta.get("type")
            if dt == "text_delta":
                text = delta.get("text")
                return [TextDelta(text)] if text else []
            if dt == "input_json_delta":
                pos = self._blocks.get(obj.get("index"))
                fragment = delta.get("partial_json")
                return [ToolCallDelta(pos, fragment)] if pos is not None and fragment else []
            if dt == "thinking_delta":
                return [ReasoningDelta(delta.get("thinking") or "")]
            if dt == "signature_delta":
                return [ReasoningDelta("", delta.get("signature"))]
            return []
        if kind == "content_block_start":
            block = obj.get("content_block") or {}
            bt = block.get("type")
            if bt == "tool_use":
                pos = self._tools
                self._tools += 1
                self._blocks[obj.get("index")] = pos
                out: list[Event] = [
                    ToolCallStart(pos, block.get("id") or new_id("toolu_"), block.get("name") or "")
                ]
                if block.get("input"):  # some servers send the whole input up front
                    out.append(ToolCallDelta(pos, orjson.dumps(block["input"]).decode()))
                return out
            if bt == "text" and block.get("text"):
                return [TextDelta(block["text"])]
            if bt == "thinking" and block.get("thinking"):
                return [ReasoningDelta(block["thinking"])]
            return []
        if kind == "content_block_stop":
            pos = self._blocks.get(obj.get("index"))
            return [ToolCallEnd(pos)] if pos is not None else []
        if kind == "message_start":
            message = obj.get("message") or {}
            self._usage.update(message.get("usage") or {})
            return [Start(message.get("id"), message.get("model"))]
        if kind == "message_delta":
            delta = obj.get("delta") or {}
            self._reason = delta.get("stop_reason") or self._reason
            self._stop_sequence = delta.get("stop_sequence") or self._stop_sequence
            usage = obj.get("usage")
            if usage:
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            return []
        if kind == "message_stop":
            self.finished = True
            out = []
            usage = decode_usage(self._usage) if self._usage else None
            if usage is not None:
                out.append(UsageEvent(usage))
            reason = FINISH_IN.get(self._reason or "end_turn", "stop")
            out.append(Finish(reason, self._stop_sequence))
            return out
        return []  # ping, and event types added later


class OutputToolParser(StreamParser):
    """A :class:`StreamParser` for a request whose JSON output format was sent as a forced tool
    (``structured_output = "tool"``): that tool's input streams out as the answer's text, and
    the turn ends with ``stop``, as if the upstream had structured outputs."""

    __slots__ = ("_output",)

    def __init__(self) -> None:
        super().__init__()
        self._output: int | None = None

    def feed(self, obj: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        for ev in super().feed(obj):
            if isinstance(ev, ToolCallStart) and ev.name == OUTPUT_TOOL:
                self._output = ev.index
            elif isinstance(ev, ToolCallDelta) and ev.index == self._output:
                out.append(TextDelta(ev.arguments))
            elif isinstance(ev, ToolCallEnd) and ev.index == self._output:
                continue
            elif isinstance(ev, Finish) and self._output is not None and ev.reason == "tool_calls":
                out.append(Finish("stop"))
            else:
                out.append(ev)
        return out


# --- canonical -> SSE frames ----------------------------------------------------------------------

PING = b'event: ping\ndata: {"type":"ping"}\n\n'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def frame(kind: str, obj: dict[str, JSON]) -> bytes:
    """One SSE frame whose ``event:`` line names the data's type, as the SDK requires."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def error_frame(err: Any) -> bytes:
    return frame("error", error_body(err))


class MessageEncoder:
    """Encodes canonical events as Anthropic stream frames.

    ``message_start`` (followed by a ``ping``, as Anthropic sends) opens the stream; each text,
    thinking or tool-call run is one content block, started, filled with deltas and stopped
    before the next one starts; ``message_delta`` with the stop reason and usage, then
    ``message_stop``, end it, after the last event (usage may follow the finish). A failure is an
    ``event: error`` frame and nothing after it. :class:`Raw` events (Anthropic upstream bytes)
    are written unchanged, and the events they carry skipped.
    """

    #: The frame the stream writer sends on an idle stream.
    keepalive = PING

    __slots__ = (
        "_failed",
        "_id",
        "_model",
        "_next",
        "_open",
        "_open_kind",
        "_reason",
        "_relayed",
        "_started",
        "_stop_sequence",
        "_tools",
        "_usage",
    )

    def __init__(self, model: str) -> None:
        self._model = model
        self._id: str | None = None
        self._started = False
        self._open: int | None = None
        self._open_kind: str | None = None
        self._next = 0
        self._tools: dict[int, int] = {}  # tool position -> content block index
        self._usage: Usage | None = None
        self._reason = "stop"
        self._stop_sequence: str | None = None
        self._failed = False
        self._relayed = False

    def encode(self, ev: Event) -> bytes:
        if ev.relayed:
            return b""
        handler = _HANDLERS.get(type(ev))
        return handler(self, ev) if handler is not None else b""

    def end(self) -> bytes:
        """``message_delta`` and ``message_stop`` (nothing after a failure or a relay)."""
        if self._failed or self._relayed:
            return b""
        reason, sequence = stop_reason(self._reason, self._stop_sequence)
        usage = encode_usage(self._usage)
        return (
            self._begin()
            + self._close()
            + frame(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": reason,
                        "stop_sequence": sequence,
                        "stop_details": None,
                        "container": None,
                    },
                    "usage": usage,
                },
            )
            + MESSAGE_STOP
        )

    # -- blocks

    def _begin(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, JSON] = {
            "id": self._id or new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "stop_details": None,
            "container": None,
            "diagnostics": None,
            "usage": encode_usage(None),
        }
        return frame("message_start", {"type": "message_start", "message": message}) + PING

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_kind = self._open, None, None
        return frame("content_block_stop", {"type": "content_block_stop", "index": index})

    def _open_block(self, kind: str, block: dict[str, JSON]) -> tuple[int, bytes]:
        """Close the open block and open a new one: its index, and the frames so far."""
        out = self._begin() + self._close()
        index = self._open = self._next
        self._open_kind = kind
        self._next += 1
        return index, out + frame(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )

    def _delta(self, index: int, delta: dict[str, JSON]) -> bytes:
        return frame(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    # -- handlers

    def _start(self, ev: Start) -> bytes:
        # The model stays the name asked for (self._model), not the upstream's (ev.model).
        if not self._started and ev.id:
            self._id = ev.id if ev.id.startswith("msg_") else "msg_" + ev.id
        return self._begin()

    def _text(self, ev: TextDelta) -> bytes:
        out = b""
        index = self._open
        if index is None or self._open_kind != "text":
            index, out = self._open_block("text", {"type": "text", "text": "", "citations": None})
        return out + self._delta(index, {"type": "text_delta", "text": ev.text})

    def _reasoning(self, ev: ReasoningDelta) -> bytes:
        out = b""
        index = self._open
        if index is None or self._open_kind != "thinking":
            index, out = self._open_block(
                "thinking", {"type": "thinking", "thinking": "", "signature": ""}
            )
        if ev.text:
            out += self._delta(index, {"type": "thinking_delta", "thinking": ev.text})
        if ev.signature:
            out += self._delta(index, {"type": "signature_delta", "signature": ev.signature})
        return out

    def _call_start(self, ev: ToolCallStart) -> bytes:
        self._tools[ev.index], out = self._open_block(
            "tool_use", {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}}
        )
        return out

    def _call_delta(self, ev: ToolCallDelta) -> bytes:
        index = self._tools.get(ev.index)
        if index is None or not ev.arguments:
            return b""
        return self._delta(index, {"type": "input_json_delta", "partial_json": ev.arguments})

    def _call_end(self, ev: ToolCallEnd) -> bytes:
        if self._open is not None and self._tools.get(ev.index) == self._open:
            return self._close()
        return b""

    def _finish(self, ev: Finish) -> bytes:
        self._reason, self._stop_sequence = ev.reason, ev.stop_sequence
        return self._begin() + self._close()

    def _usage_event(self, ev: UsageEvent) -> bytes:
        self._usage = ev.usage
        return b""

    def _error(self, ev: Error) -> bytes:
        self._failed = True
        return error_frame(ev.error)

    def _raw(self, ev: Raw) -> bytes:
        if ev.protocol != PROTOCOL:
            return b""
        self._relayed = True
        return ev.data


#: Event type -> handler, built once.
_HANDLERS: dict[type, Callable[[Any, Any], bytes]] = {
    TextDelta: MessageEncoder._text,
    ToolCallStart: MessageEncoder._call_start,
    ToolCallDelta: MessageEncoder._call_delta,
    ToolCallEnd: MessageEncoder._call_end,
    ReasoningDelta: MessageEncoder._reasoning,
    Finish: MessageEncoder._finish,
    UsageEvent: MessageEncoder._usage_event,
    Error: MessageEncoder._error,
    Raw: MessageEncoder._raw,
    Start: MessageEncoder._start,
}
