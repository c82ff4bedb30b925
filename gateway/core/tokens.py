"""Approximate token counts, where the gateway needs a size and no tokenizer is at hand.

The gateway ships no model tokenizers (they differ per model and are large). It counts about four
characters a token for text (close for English with the common BPE tokenizers), four tokens of
framing a message, eight a tool definition (its JSON schema counted as text), and a flat cost for
an image or any part only a protocol understands. Session budgets and rate limits use it when no
upstream reported usage, the echo backend for its usage, and Anthropic's ``count_tokens`` over a
backend that cannot count. It is a rough budget figure, never presented as exact.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from gateway.canonical import (
    ChatRequest,
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
#: Tokens counted for each tool definition besides its name, description and schema.
TOOL_TOKENS = 8


def text_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def part_tokens(part: Part) -> int:
    if type(part) is TextPart or type(part) is ReasoningPart:
        return text_tokens(part.text)
    if type(part) is ToolCallPart:
        return text_tokens(part.name) + text_tokens(part.arguments)
    if type(part) is ToolResultPart:
        content = part.content
        if isinstance(content, str):
            return text_tokens(content)
        return sum(part_tokens(p) for p in content)
    if type(part) is ImagePart:
        return IMAGE_TOKENS
    return IMAGE_TOKENS  # audio, files and other opaque parts


def message_tokens(messages: Iterable[Message]) -> int:
    """The approximate prompt size of ``messages``."""
    # Loops, not nested generators: this runs on every priced or rate-limited request.
    total = 0
    for m in messages:
        total += MESSAGE_TOKENS
        for p in m.parts:
            if type(p) is TextPart:
                total += (len(p.text) + 3) // 4
            else:
                total += part_tokens(p)
    return total


def request_tokens(req: ChatRequest) -> int:
    """The approximate input size of ``req``: its messages (system prompt included) and tools."""
    total = message_tokens(req.messages)
    for tool in req.tools or ():
        total += TOOL_TOKENS + text_tokens(tool.name) + text_tokens(tool.description or "")
        if tool.parameters:
            total += text_tokens(orjson.dumps(tool.parameters).decode())
    return total
