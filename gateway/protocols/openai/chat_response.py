"""OpenAI Chat Completions answers (``chat.completion``) and usage, both ways."""

from __future__ import annotations

import time
from typing import Any

from gateway import (
    JSON,
    ChatResponse,
    Message,
    Part,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    UpstreamError,
    Usage,
    new_id,
)
from gateway.protocols.openai.chat import FINISH_IN, FINISH_OUT


def decode_response(obj: Any) -> ChatResponse:
    """A non-streamed upstream answer, as a canonical response (first choice)."""
    try:
        choice = obj["choices"][0]
        msg = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise UpstreamError("the upstream's answer has no choices") from None
    return ChatResponse(
        id=obj.get("id") or new_id("chatcmpl-"),
        model=obj.get("model") or "",
        message=_message(msg),
        finish_reason=finish_reason(choice.get("finish_reason"), bool(msg.get("tool_calls"))),
        usage=decode_usage(obj.get("usage")),
        created=obj.get("created") or int(time.time()),
    )


def _message(msg: Any) -> Message:
    """An upstream answer's message, as the canonical assistant message."""
    if type(msg) is dict and len(msg) == 2 and type(msg.get("content")) is str and "role" in msg:
        # The common answer, a role and its text, without the general path's look-ups.
        return Message("assistant", [TextPart(msg["content"])])
    parts: list[Part] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(ReasoningPart(reasoning))
    content = msg.get("content")
    if isinstance(content, str):
        parts.append(TextPart(content))
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        parts.append(
            ToolCallPart(
                call.get("id") or new_id("call_"), fn.get("name", ""), fn.get("arguments") or "{}"
            )
        )
    extra = None
    for key in _MESSAGE_EXTRA:
        value = msg.get(key)
        if value is not None:
            if extra is None:
                extra = {key: value}
            else:
                extra[key] = value
    return Message("assistant", parts, extra=extra)


def finish_reason(reason: Any, called: bool) -> str:
    """The canonical finish for an upstream's ``finish_reason``. Some servers say ``stop`` after
    tool calls: that is ``tool_calls``, or an agent loop would end before running them."""
    out = FINISH_IN.get(reason or "stop", "stop")
    return "tool_calls" if called and out == "stop" else out


_USAGE_DETAILS = ("prompt_tokens_details", "completion_tokens_details")
#: Message members kept as they are (when not null).
_MESSAGE_EXTRA = ("refusal", "annotations", "audio")


def decode_usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    prompt = u.get("prompt_tokens_details")
    completion = u.get("completion_tokens_details")
    details: dict[str, Any] | None = None
    if prompt or completion:
        details = {
            k: v for k, v in ((_USAGE_DETAILS[0], prompt), (_USAGE_DETAILS[1], completion)) if v
        }
    cached = (prompt.get("cached_tokens") if isinstance(prompt, dict) else None) or 0
    return Usage(
        u.get("prompt_tokens") or 0,
        u.get("completion_tokens") or 0,
        details,
        cache_read_tokens=cached,
    )


def encode_usage(u: Usage) -> dict[str, JSON]:
    out: dict[str, JSON] = {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    }
    if u.details:
        out.update({k: v for k, v in u.details.items() if k in _USAGE_DETAILS})
    if u.cache_read_tokens and "prompt_tokens_details" not in out:
        out["prompt_tokens_details"] = {"cached_tokens": u.cache_read_tokens}
    return out


def encode_response(resp: ChatResponse, model: str) -> dict[str, JSON]:
    """A canonical response as a ``chat.completion`` object."""
    msg = resp.message
    text = [p.text for p in msg.parts if type(p) is TextPart]
    calls = [p for p in msg.parts if type(p) is ToolCallPart]
    message: dict[str, JSON] = {
        "role": "assistant",
        "content": "".join(text) if text else None,
        "refusal": None,
    }
    reasoning = "".join(p.text for p in msg.parts if type(p) is ReasoningPart)
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    if msg.extra:
        message.update(
            {k: v for k, v in msg.extra.items() if k in ("refusal", "annotations", "audio")}
        )
    out: dict[str, JSON] = {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created or int(time.time()),
        "model": model,  # the name asked for, not the upstream's (resp.model)
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": FINISH_OUT.get(resp.finish_reason, "stop"),
            }
        ],
    }
    if resp.usage is not None:
        out["usage"] = encode_usage(resp.usage)
    return out
