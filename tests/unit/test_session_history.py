"""Conversation history: the stored form keeps every part, and trimming keeps tool results with their calls."""

from __future__ import annotations

from gateway.canonical import (
    ImagePart,
    Message,
    OpaquePart,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from gateway.sessions import codec
from gateway.sessions.base import trim


def test_codec_keeps_every_part():
    messages = [
        Message("system", [TextPart("rules", {"cache_control": {"type": "ephemeral"}})]),
        Message(
            "user",
            [
                TextPart("look"),
                ImagePart(url="https://x/y.png", detail="high"),
                ImagePart(data="aGk=", media_type="image/png"),
                OpaquePart("openai", {"type": "input_audio", "input_audio": {"data": "..."}}),
            ],
            name="ada",
        ),
        Message(
            "assistant",
            [ReasoningPart("thinking", signature="sig"), ToolCallPart("c1", "f", '{"a": 1}')],
            extra={"refusal": None},
        ),
        Message(
            "tool",
            [ToolResultPart("c1", [TextPart("r"), ImagePart(url="https://x/z.png")], True)],
        ),
        Message("tool", [ToolResultPart("c2", "plain")]),
    ]
    assert codec.loads(codec.dumps(messages)) == messages


def test_trim_rule():
    class Bounds:
        max_messages, max_tokens = 4, 1000

    heads = [(2, 10, True), (2, 10, False), (2, 10, True), (2, 10, True)]
    assert trim(heads, 8, 40, Bounds()) == (2, 4, 20)
    assert trim(heads[:2], 4, 20, Bounds()) == (0, 0, 0)
    assert trim([(2, 10, True), (3, 10, False)], 5, 20, Bounds()) == (0, 0, 0)
    assert trim([(9, 10, True)], 9, 10, Bounds()) == (0, 0, 0)  # the newest entry stays
