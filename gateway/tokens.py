"""Approximate token counts, where the gateway needs a size and no tokenizer is at hand.

About four characters a token for text (close for English with the common BPE tokenizers), and
a flat cost for an image or any part only a protocol understands. Session budgets and rate
limits use it when no upstream reported usage.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.canonical import (
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

#: Tokens counted for an image (a mid-size image at OpenAI's "high" detail costs about this).
IMAGE_TOKENS = 800
#: Tokens counted for each message besides its content (role and separators).
MESSAGE_TOKENS = 4


def text_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def part_tokens(part: Part) -> int:
    t = type(part)
    if t is TextPart or t is ReasoningPart:
        return text_tokens(part.text)  # type: ignore[union-attr]
    if t is ToolCallPart:
        return text_tokens(part.name) + text_tokens(part.arguments)  # type: ignore[union-attr]
    if t is ToolResultPart:
        content = part.content  # type: ignore[union-attr]
        if isinstance(content, str):
            return text_tokens(content)
        return sum(part_tokens(p) for p in content)
    if t is ImagePart:
        return IMAGE_TOKENS
    return IMAGE_TOKENS  # audio, files and other opaque parts


def message_tokens(messages: Iterable[Message]) -> int:
    """The approximate prompt size of ``messages``."""
    return sum(MESSAGE_TOKENS + sum(part_tokens(p) for p in m.parts) for m in messages)
