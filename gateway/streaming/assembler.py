"""Canonical events folded back into one answer.

:class:`Assembler` turns a stream of canonical events into one :class:`ChatResponse`: for backends
that only stream, and for filters and stores that need the whole answer of a stream.
"""

from __future__ import annotations

import time
import uuid

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
        if type(ev) is TextDelta:
            self._text.append(ev.text)
        elif type(ev) is ToolCallStart:
            self._calls[ev.index] = [ev.id, ev.name]
        elif type(ev) is ToolCallDelta:
            call = self._calls.get(ev.index)
            if call is not None:
                call.append(ev.arguments)
        elif type(ev) is UsageEvent:
            self.usage = ev.usage
        elif type(ev) is Finish:
            self.finished = True
            self.reason = ev.reason
            self.stop_sequence = ev.stop_sequence
        elif type(ev) is Start:
            # The first message's id wins: an agent sends one Start per model step.
            self.id = self.id or ev.id
            self.model = ev.model or self.model
            self.created = self.created or ev.created or 0
        elif type(ev) is ReasoningDelta:
            self._reasoning.append(ev.text)
            self._signature = ev.signature or self._signature
        elif type(ev) is Error:
            self.error = ev.error

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
