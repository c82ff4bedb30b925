"""Responses API streams: canonical events as typed ``response.*`` events.

Each event has an ``event:`` line equal to its ``type`` and the next ``sequence_number``; output
items (reasoning, message, function call) are added, filled and done one at a time, in order, as
the openai SDK's stream helper requires.
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
    ReasoningDelta,
    Start,
    TextDelta,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from gateway.protocols.openai.responses import (
    Shell,
    custom_input,
    error_object,
    message_item,
    reasoning_item,
)

_CALLS = ("function_call", "custom_tool_call")


class ResponseEncoder:
    """Encodes canonical events as Responses stream events (``event:`` lines, one increasing
    ``sequence_number``): created, in_progress, then per output item added / deltas / done, then
    completed (or incomplete). A failure is an ``error`` event then ``response.failed``.

    :meth:`result` is the final ``response`` object once the events are all encoded (what a
    stored response keeps); :meth:`end` sends it."""

    __slots__ = (
        "_buf",
        "_done",
        "_failed",
        "_final",
        "_item",
        "_kind",
        "_reason",
        "_seq",
        "_shell",
        "_signature",
        "_started",
        "_tail",
        "_tool",
        "_usage",
    )

    def __init__(self, shell: Shell) -> None:
        self._shell = shell
        self._seq = 0
        self._signature: str | None = None
        self._started = False
        self._done: list[dict[str, JSON]] = []  # finished output items, in order
        self._item: dict[str, JSON] | None = None  # the open item
        self._kind: str | None = None
        self._buf: list[str] = []
        self._tool: ToolCallPart | None = None
        self._usage: Usage | None = None
        self._reason = "stop"
        self._failed = False
        self._final: dict[str, JSON] | None = None
        self._tail = b""

    def result(self) -> dict[str, JSON]:
        """The final ``response`` object (failed, completed or incomplete); the frames that
        still close the open item wait for :meth:`end`."""
        if self._final is None:
            self._tail = self._begin() + self._close()
            self._final = self._shell.response("completed", self._done, self._usage, self._reason)
        return self._final

    def encode(self, ev: Event) -> bytes:
        handler = _HANDLERS.get(type(ev))
        return handler(self, ev) if handler is not None else b""

    def end(self) -> bytes:
        if self._failed:
            return b""
        response = self.result()
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return self._tail + self._event(kind, {"response": response})

    def _event(self, kind: str, fields: dict[str, JSON]) -> bytes:
        fields["type"] = kind
        fields["sequence_number"] = self._seq
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(fields) + b"\n\n"

    def _begin(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        response = self._shell.response("in_progress", [])
        return self._event("response.created", {"response": response}) + self._event(
            "response.in_progress", {"response": response}
        )

    def _open(self, kind: str, item: dict[str, JSON]) -> bytes:
        out = self._begin() + self._close()
        self._kind, self._item, self._buf = kind, item, []
        out += self._event(
            "response.output_item.added", {"output_index": len(self._done), "item": item}
        )
        if kind == "message":
            out += self._event(
                "response.content_part.added",
                {
                    "item_id": item["id"],
                    "output_index": len(self._done),
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                },
            )
        return out

    def _close(self) -> bytes:
        item, kind = self._item, self._kind
        if item is None:
            return b""
        self._item = self._kind = None
        index, item_id, text = len(self._done), item["id"], "".join(self._buf)
        where = {"item_id": item_id, "output_index": index}
        if kind == "message":
            done = message_item(text, id=item_id)
            part = done["content"][0]
            out = self._event(
                "response.output_text.done",
                {**where, "content_index": 0, "text": text, "logprobs": []},
            ) + self._event(
                "response.content_part.done", {**where, "content_index": 0, "part": part}
            )
        elif kind == "reasoning":
            done = reasoning_item(text, id=item_id, signature=self._signature)
            self._signature = None
            out = self._event(
                "response.reasoning_text.done", {**where, "content_index": 0, "text": text}
            )
        else:
            call = self._tool
            assert call is not None  # a call item is opened with its call
            call.arguments = text
            done = self._shell.call_item(call, id=item_id)
            if kind == "custom_tool_call":
                given = custom_input(text)
                out = self._event(
                    "response.custom_tool_call_input.delta", {**where, "delta": given}
                ) + self._event("response.custom_tool_call_input.done", {**where, "input": given})
            else:
                out = self._event(
                    "response.function_call_arguments.done",
                    {**where, "name": done["name"], "arguments": text},
                )
        self._done.append(done)
        return out + self._event("response.output_item.done", {"output_index": index, "item": done})

    def _start(self, ev: Start) -> bytes:
        # The model stays the name asked for (the shell's), not the upstream's (ev.model).
        return self._begin()

    def _text(self, ev: TextDelta) -> bytes:
        out = b""
        item = self._item
        if item is None or self._kind != "message":
            item = message_item("", "in_progress")
            out = self._open("message", item)
        self._buf.append(ev.text)
        return out + self._event(
            "response.output_text.delta",
            {
                "item_id": item["id"],
                "output_index": len(self._done),
                "content_index": 0,
                "delta": ev.text,
                "logprobs": [],
            },
        )

    def _reasoning(self, ev: ReasoningDelta) -> bytes:
        if ev.signature:
            self._signature = ev.signature  # it ends the thinking: the item's done carries it
        if not ev.text:
            return b""
        out = b""
        item = self._item
        if item is None or self._kind != "reasoning":
            item = reasoning_item("", "in_progress")
            out = self._open("reasoning", item)
        self._buf.append(ev.text)
        return out + self._event(
            "response.reasoning_text.delta",
            {
                "item_id": item["id"],
                "output_index": len(self._done),
                "content_index": 0,
                "delta": ev.text,
            },
        )

    def _call_start(self, ev: ToolCallStart) -> bytes:
        out = self._begin() + self._close()
        self._tool = ToolCallPart(ev.id, ev.name, "")
        item = self._shell.call_item(self._tool, "in_progress")
        return out + self._open(str(item["type"]), item)

    def _call_delta(self, ev: ToolCallDelta) -> bytes:
        item = self._item
        if item is None or self._kind not in _CALLS or not ev.arguments:
            return b""
        self._buf.append(ev.arguments)
        if self._kind == "custom_tool_call":
            return b""  # the input is inside the arguments' JSON: sent whole when it is done
        return self._event(
            "response.function_call_arguments.delta",
            {"item_id": item["id"], "output_index": len(self._done), "delta": ev.arguments},
        )

    def _usage_event(self, ev: UsageEvent) -> bytes:
        self._usage = ev.usage
        return b""

    def _finish(self, ev: Finish) -> bytes:
        self._reason = ev.reason
        return self._begin() + self._close()

    def _error(self, ev: Error) -> bytes:
        self._failed = True
        err = ev.error
        failed = self._final = self._shell.response("failed", self._done, self._usage, error=err)
        tail, self._tail = self._tail, b""  # an item closed by result() and not yet sent
        return (
            self._begin()
            + tail
            + self._event(
                "error",
                {"code": error_object(err)["code"], "message": err.message, "param": err.param},
            )
            + self._event("response.failed", {"response": failed})
        )


#: Event type -> handler, built once.
_HANDLERS: dict[type, Callable[[Any, Any], bytes]] = {
    TextDelta: ResponseEncoder._text,
    ReasoningDelta: ResponseEncoder._reasoning,
    ToolCallStart: ResponseEncoder._call_start,
    ToolCallDelta: ResponseEncoder._call_delta,
    UsageEvent: ResponseEncoder._usage_event,
    Finish: ResponseEncoder._finish,
    Error: ResponseEncoder._error,
    Start: ResponseEncoder._start,
}
