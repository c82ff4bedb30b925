"""OpenAI Chat Completions streams (``chat.completion.chunk`` SSE frames), both ways."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway import (
    JSON,
    Error,
    Event,
    Finish,
    GatewayError,
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
    upstream_error,
)
from gateway.protocols.openai.chat import FINISH_OUT, PROTOCOL, error_body
from gateway.protocols.openai.chat_response import decode_usage, encode_usage, finish_reason

# --- wire -> events --------------------------------------------------------------------


class StreamParser:
    """Turns ``chat.completion.chunk`` objects into canonical events (choice 0)."""

    __slots__ = ("_open", "finished", "started")

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self._open: dict[int, bool] = {}

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self.started:
            self.started = True
            out.append(Start(chunk.get("id"), chunk.get("model"), chunk.get("created")))
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                out.append(ReasoningDelta(reasoning))
            text = delta.get("content")
            if text:
                out.append(TextDelta(text))
            for call in delta.get("tool_calls") or ():
                index = call.get("index", 0)
                fn = call.get("function") or {}
                if index not in self._open:
                    self._open[index] = True
                    out.append(
                        ToolCallStart(
                            index, call.get("id") or new_id("call_"), fn.get("name") or ""
                        )
                    )
                if fn.get("arguments"):
                    out.append(ToolCallDelta(index, fn["arguments"]))
            reason = choice.get("finish_reason")
            if reason:
                out.extend(ToolCallEnd(i) for i in self._open)
                self.finished = True
                out.append(Finish(finish_reason(reason, bool(self._open))))
                self._open.clear()
        usage = chunk.get("usage")
        if usage:
            decoded = decode_usage(usage)
            if decoded is not None:
                out.append(UsageEvent(decoded))
        return out


def stream_error(obj: dict[str, Any]) -> GatewayError:
    """The error an upstream reported inside its stream (``{"error": {...}}``)."""
    return upstream_error(None, obj)


# --- events -> wire --------------------------------------------------------------------

DONE = b"data: [DONE]\n\n"
_TEXT_TAIL = b'},"logprobs":null,"finish_reason":null}]}\n\n'
_TEXT_TAIL_USAGE = b'},"logprobs":null,"finish_reason":null}],"usage":null}\n\n'


class ChunkEncoder:
    """Encodes canonical events as ``chat.completion.chunk`` SSE frames.

    Every chunk shares one id, created time and model; the first carries the role; a tool call
    opens with its id and name and continues with argument fragments at its index; the finish
    chunk has an empty delta; with ``include_usage`` every chunk has ``"usage": null`` and one
    usage chunk with no choices comes last, before ``[DONE]``. A failure is an error frame and
    no ``[DONE]``: never a normal finish. :class:`Raw` events (same-protocol upstream bytes) are
    written as they are (but for the model's name: the one asked for); events they already
    carry are skipped.
    """

    __slots__ = (
        "_failed",
        "_head",
        "_include_usage",
        "_model",
        "_relayed",
        "_role_sent",
        "_text_head",
        "_text_tail",
        "_usage",
    )

    def __init__(self, model: str, include_usage: bool = False, id: str | None = None) -> None:
        self._model = model
        self._include_usage = include_usage
        self._head: bytes | None = None
        self._role_sent = False
        self._usage: Usage | None = None
        # What follows a text delta's JSON string in its chunk (the most frequent chunk).
        self._text_tail = _TEXT_TAIL_USAGE if include_usage else _TEXT_TAIL
        #: What precedes it, once the role was sent (then a text delta is these and its text).
        self._text_head: bytes | None = None
        self._relayed = False
        self._failed = False
        if id is not None:
            self._set_head(id, int(time.time()), model)

    def encode(self, ev: Event) -> bytes:
        """The bytes to send for ``ev`` (possibly none)."""
        if type(ev) is TextDelta and self._text_head is not None and not ev.relayed:
            # The most frequent event, without a handler's call.
            return self._text_head + orjson.dumps(ev.text) + self._text_tail
        if ev.relayed:
            return b""
        handler = _HANDLERS.get(type(ev))
        return handler(self, ev) if handler is not None else b""

    def end(self) -> bytes:
        """The trailer after the last event: the usage chunk and ``[DONE]`` (nothing after a
        failure, nor after a relayed stream, which carried its own)."""
        if self._failed or self._relayed:
            return b""
        tail = b""
        if self._include_usage and self._usage is not None:
            tail = self._frame(
                b'[],"usage":' + orjson.dumps(encode_usage(self._usage)), usage=False
            )
        return tail + DONE

    # -- handlers

    def _set_head(self, id: str, created: int, model: str) -> bytes:
        """Fix the fields every chunk repeats; the start of each chunk, which it returns."""
        head = self._head = (
            b'data: {"id":'
            + orjson.dumps(id)
            + b',"object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b',"choices":'
        )
        return head

    def _frame(self, choices: bytes, usage: bool = True) -> bytes:
        head = self._head
        if head is None:
            head = self._set_head(new_id("chatcmpl-"), int(time.time()), self._model)
        tail = b',"usage":null}\n\n' if usage and self._include_usage else b"}\n\n"
        return head + choices + tail

    def _delta(self, delta: dict[str, JSON], finish: str | None = None) -> bytes:
        prefix = b""
        if not self._role_sent:
            self._role_sent = True
            prefix = self._delta({"role": "assistant", "content": "", "refusal": None})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return prefix + self._frame(b"[" + orjson.dumps(choice) + b"]")

    def _start(self, ev: Start) -> bytes:
        if self._head is None:
            self._set_head(
                ev.id or new_id("chatcmpl-"),
                ev.created or int(time.time()),
                self._model,  # the name asked for, not the upstream's (ev.model)
            )
        return b""

    def _text(self, ev: TextDelta) -> bytes:
        head = self._head
        if head is None or not self._role_sent:
            return self._delta({"content": ev.text})
        # The bytes _delta would make, without building the chunk as a dict first.
        self._text_head = head = head + b'[{"index":0,"delta":{"content":'
        return head + orjson.dumps(ev.text) + self._text_tail

    def _reasoning(self, ev: ReasoningDelta) -> bytes:
        return self._delta({"reasoning_content": ev.text}) if ev.text else b""

    def _call_start(self, ev: ToolCallStart) -> bytes:
        return self._delta(
            {
                "tool_calls": [
                    {
                        "index": ev.index,
                        "id": ev.id,
                        "type": "function",
                        "function": {"name": ev.name, "arguments": ""},
                    }
                ]
            }
        )

    def _call_delta(self, ev: ToolCallDelta) -> bytes:
        return self._delta(
            {"tool_calls": [{"index": ev.index, "function": {"arguments": ev.arguments}}]}
        )

    def _finish(self, ev: Finish) -> bytes:
        return self._delta({}, FINISH_OUT.get(ev.reason, "stop"))

    def _usage_event(self, ev: UsageEvent) -> bytes:
        self._usage = ev.usage
        return b""

    def _error(self, ev: Error) -> bytes:
        self._failed = True
        return b"data: " + orjson.dumps(error_body(ev.error)) + b"\n\n"

    def _raw(self, ev: Raw) -> bytes:
        if ev.protocol != PROTOCOL:
            return b""
        self._relayed = True
        return ev.data


#: The encoder's method for each kind of event (one table for every stream, not one a stream).
_HANDLERS: dict[type, Callable[[ChunkEncoder, Any], bytes]] = {
    TextDelta: ChunkEncoder._text,
    ToolCallStart: ChunkEncoder._call_start,
    ToolCallDelta: ChunkEncoder._call_delta,
    Finish: ChunkEncoder._finish,
    UsageEvent: ChunkEncoder._usage_event,
    Error: ChunkEncoder._error,
    Raw: ChunkEncoder._raw,
    Start: ChunkEncoder._start,
    ReasoningDelta: ChunkEncoder._reasoning,
}
