"""Checks every AG-UI stream the tests receive: each event against the official ``ag_ui.core``
models, strictly (no unknown or snake_case keys, no nulls), and the whole stream against the
ordering rules of AG-UI 1.0 that ``@ag-ui/client`` enforces."""

from __future__ import annotations

from typing import Any

import orjson
from ag_ui.core import Event
from pydantic import TypeAdapter

ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)
TERMINAL = {"RUN_FINISHED", "RUN_ERROR"}


def sse_frames(body: bytes) -> list[dict[str, str]]:
    """Frames split the way the TypeScript client splits them: on blank lines (``\\n\\n``)."""
    assert b"\r" not in body, "AG-UI streams must use \\n separators"
    frames = []
    for block in body.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if fields:
            frames.append(fields)
    return frames


def events_of(body: bytes, first_id: int = 1) -> list[dict[str, Any]]:
    """The events of a full-format SSE body, checked (ids numbered from ``first_id``)."""
    frames = sse_frames(body)
    assert [int(f["id"]) for f in frames] == list(range(first_id, first_id + len(frames)))
    assert all("event" not in f for f in frames)
    events = [orjson.loads(f["data"]) for f in frames]
    for ev in events:
        validate_event(ev)
    return events


def validate_event(ev: dict[str, Any]) -> None:
    model = ADAPTER.validate_python(ev)
    allowed = {f.alias or name for name, f in type(model).model_fields.items()}
    assert set(ev) <= allowed, f"unknown keys {set(ev) - allowed} in {ev}"
    assert not _nulls(ev), f"null value in {ev}"
    if "timestamp" in ev:
        assert isinstance(ev["timestamp"], int)


def _nulls(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_nulls(v) for v in value.values())
    if isinstance(value, list):
        return any(_nulls(v) for v in value)
    return False


def check_order(events: list[dict[str, Any]], *, complete: bool = True) -> None:
    """The ordering rules: RUN_STARTED first; content only inside an open text message; tool
    call arguments only inside an open call; results after their call ended; nothing open at
    RUN_FINISHED; nothing after RUN_FINISHED / RUN_ERROR. ``complete``: the stream ends with
    its terminal event."""
    assert events, "empty stream"
    assert events[0]["type"] in ("RUN_STARTED", "RUN_ERROR"), events[0]
    texts: set[str] = set()
    calls: set[str] = set()
    ended: set[str] = set()
    reasoning: set[str] = set()
    for i, ev in enumerate(events):
        kind = ev["type"]
        assert not (i and events[i - 1]["type"] in TERMINAL), f"{kind} after the end"
        if kind == "TEXT_MESSAGE_START":
            assert ev["messageId"] not in texts
            texts.add(ev["messageId"])
        elif kind == "TEXT_MESSAGE_CONTENT":
            assert ev["messageId"] in texts and ev["delta"]
        elif kind == "TEXT_MESSAGE_END":
            texts.remove(ev["messageId"])
        elif kind == "TOOL_CALL_START":
            assert ev["toolCallId"] not in calls and ev["toolCallId"] not in ended
            calls.add(ev["toolCallId"])
        elif kind == "TOOL_CALL_ARGS":
            assert ev["toolCallId"] in calls and ev["delta"]
        elif kind == "TOOL_CALL_END":
            calls.remove(ev["toolCallId"])
            ended.add(ev["toolCallId"])
        elif kind == "TOOL_CALL_RESULT":
            assert ev["toolCallId"] in ended, "a result before its call ended"
        elif kind in ("REASONING_START", "REASONING_MESSAGE_START"):
            reasoning.add(kind + ev["messageId"])
        elif kind in ("REASONING_END", "REASONING_MESSAGE_END"):
            reasoning.remove(kind.replace("_END", "_START") + ev["messageId"])
        elif kind == "RUN_FINISHED":
            assert not texts and not calls and not reasoning, "RUN_FINISHED with open parts"
    if complete:
        assert events[-1]["type"] in TERMINAL


def checked(body: bytes, first_id: int = 1) -> list[dict[str, Any]]:
    """Parse, validate and order-check a complete run's SSE body."""
    events = events_of(body, first_id)
    check_order(events)
    return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
