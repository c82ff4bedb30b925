"""Canonical messages as JSON, faithfully, for session stores.

Every part type keeps every field (tool calls and their results, images, reasoning with its
signature, protocol-only parts and ``extra`` fields), so a stored conversation replays exactly as
it was said, to any backend. Fields at their default are left out to keep entries small.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson

from gateway import (
    ImagePart,
    Message,
    OpaquePart,
    Part,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

_TYPES: dict[type[Part], str] = {
    TextPart: "text",
    ImagePart: "image",
    ToolCallPart: "tool_call",
    ToolResultPart: "tool_result",
    ReasoningPart: "reasoning",
    OpaquePart: "opaque",
}
_CLASSES = {tag: cls for cls, tag in _TYPES.items()}
#: Per part class: (field name, default) of every attrs field.
_FIELDS = {cls: [(f.name, f.default) for f in attrs.fields(cls)] for cls in _TYPES}


def encode_part(part: Part) -> dict[str, Any]:
    cls = type(part)
    out: dict[str, Any] = {"type": _TYPES[cls]}
    for name, default in _FIELDS[cls]:
        value = getattr(part, name)
        if value is None or value == default:
            continue
        if cls is ToolResultPart and name == "content" and not isinstance(value, str):
            value = [encode_part(p) for p in value]
        out[name] = value
    return out


def decode_part(data: dict[str, Any]) -> Part:
    fields = dict(data)
    cls = _CLASSES[fields.pop("type")]
    if cls is ToolResultPart and isinstance(fields.get("content"), list):
        fields["content"] = [decode_part(p) for p in fields["content"]]
    return cls(**fields)


def encode_message(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": msg.role, "parts": [encode_part(p) for p in msg.parts]}
    if msg.name is not None:
        out["name"] = msg.name
    if msg.extra:
        out["extra"] = msg.extra
    return out


def decode_message(data: dict[str, Any]) -> Message:
    return Message(
        data["role"],
        [decode_part(p) for p in data.get("parts", ())],
        data.get("name"),
        data.get("extra"),
    )


def dumps(messages: list[Message]) -> bytes:
    """Messages as one JSON array."""
    return orjson.dumps([encode_message(m) for m in messages])


def loads(data: bytes | str) -> list[Message]:
    """What :func:`dumps` wrote."""
    return [decode_message(m) for m in orjson.loads(data)]
