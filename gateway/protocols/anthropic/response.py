"""Anthropic Messages answers: whole responses, usage, stop reasons and errors, both ways."""

from __future__ import annotations

from typing import Any

import orjson

from gateway import (
    JSON,
    ChatResponse,
    GatewayError,
    Message,
    OpaquePart,
    Part,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    UpstreamError,
    Usage,
    new_id,
    upstream_error,
)
from gateway.protocols.anthropic.messages import OUTPUT_TOOL, PROTOCOL, rest, tool_use_block

FINISH_IN = {
    "end_turn": "stop",
    "stop_sequence": "stop_sequence",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
FINISH_OUT = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
#: Usage keys with a canonical field; the others are kept in ``Usage.details``.
_USAGE_COUNTS = frozenset(
    {"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}
)
#: ``Usage.details`` keys that belong to other protocols.
_FOREIGN_DETAILS = frozenset({"prompt_tokens_details", "completion_tokens_details"})


# --- responses ----------------------------------------------------------------------------------


def decode_usage(u: Any) -> Usage | None:
    """Anthropic usage as canonical usage (``input_tokens`` counting cached tokens too)."""
    if not isinstance(u, dict):
        return None
    read = u.get("cache_read_input_tokens") or 0
    write = u.get("cache_creation_input_tokens") or 0
    details = {k: v for k, v in u.items() if k not in _USAGE_COUNTS and v is not None} or None
    return Usage(
        (u.get("input_tokens") or 0) + read + write,
        u.get("output_tokens") or 0,
        details,
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


def encode_usage(u: Usage | None) -> dict[str, JSON]:
    """Canonical usage in Anthropic's shape (``input_tokens`` without the cached ones), with
    every field the current Messages schema requires: cache writes broken down by lifetime
    (all five-minute ones, unless an Anthropic upstream said otherwise), no server tool use, the
    standard service tier; an Anthropic upstream's own details replace these."""
    u = u or Usage()
    out: dict[str, JSON] = {
        "input_tokens": max(0, u.input_tokens - u.cache_read_tokens - u.cache_write_tokens),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "server_tool_use": None,
        "service_tier": "standard",
        "inference_geo": None,
        "output_tokens_details": None,
        "speed": None,
    }
    if u.details:
        out.update({k: v for k, v in u.details.items() if k not in _FOREIGN_DETAILS})
    return out


def decode_content(blocks: Any) -> list[Part]:
    """Response content blocks as canonical parts."""
    parts: list[Part] = []
    for b in blocks or ():
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            parts.append(TextPart(b.get("text") or "", rest(b, ("type", "text"))))
        elif kind == "tool_use":
            parts.append(
                ToolCallPart(
                    b.get("id") or new_id("toolu_"),
                    b.get("name") or "",
                    orjson.dumps(b.get("input") or {}).decode(),
                )
            )
        elif kind == "thinking":
            parts.append(ReasoningPart(b.get("thinking") or "", b.get("signature")))
        elif kind is not None:
            parts.append(OpaquePart(PROTOCOL, b))
    return parts


def decode_response(obj: Any) -> ChatResponse:
    """A non-streamed upstream answer as a canonical response."""
    if not isinstance(obj, dict) or obj.get("type") != "message":
        raise UpstreamError("the upstream's answer is not a message")
    return ChatResponse(
        id=obj.get("id") or new_id("msg_"),
        model=obj.get("model") or "",
        message=Message("assistant", decode_content(obj.get("content"))),
        finish_reason=FINISH_IN.get(obj.get("stop_reason") or "end_turn", "stop"),
        stop_sequence=obj.get("stop_sequence"),
        usage=decode_usage(obj.get("usage")),
    )


def unwrap_output_tool(resp: ChatResponse) -> ChatResponse:
    """An answer to a JSON output format sent as a forced tool, as the JSON text it stands for
    (see :class:`~gateway.protocols.anthropic.stream.OutputToolParser`)."""
    parts = resp.message.parts
    for i, p in enumerate(parts):
        if type(p) is ToolCallPart and p.name == OUTPUT_TOOL:
            parts[i] = TextPart(p.arguments)
            if resp.finish_reason == "tool_calls":
                resp.finish_reason = "stop"
    return resp


def encode_content(parts: list[Part]) -> list[dict[str, JSON]]:
    """Assistant parts as response content blocks (thinking first, as Anthropic orders them)."""
    out: list[dict[str, JSON]] = []
    for p in parts:
        if type(p) is ReasoningPart:
            out.append({"type": "thinking", "thinking": p.text, "signature": p.signature or ""})
        elif type(p) is TextPart:
            citations = p.extra.get("citations") if p.extra else None
            out.append({"type": "text", "text": p.text, "citations": citations})
        elif type(p) is ToolCallPart:
            out.append(tool_use_block(p, False))
        elif type(p) is OpaquePart and p.protocol == PROTOCOL:
            out.append(p.data)
    return out


def stop_reason(reason: str, sequence: str | None) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` for a canonical finish. A stop at a
    sequence nobody named (OpenAI upstreams do not say which) is reported as ``end_turn``."""
    if reason == "stop_sequence":
        return ("stop_sequence", sequence) if sequence is not None else ("end_turn", None)
    return FINISH_OUT.get(reason, "end_turn"), None


def encode_response(resp: ChatResponse, model: str) -> dict[str, JSON]:
    """A canonical response as a Messages ``message`` object."""
    reason, sequence = stop_reason(resp.finish_reason, resp.stop_sequence)
    return {
        "id": resp.id if resp.id.startswith("msg_") else "msg_" + resp.id,
        "type": "message",
        "role": "assistant",
        "model": model,  # the name asked for, not the upstream's (resp.model)
        "content": encode_content(resp.message.parts),
        "stop_reason": reason,
        "stop_sequence": sequence,
        "stop_details": None,
        "container": None,
        "diagnostics": None,
        "usage": encode_usage(resp.usage),
    }


# --- errors -------------------------------------------------------------------------------------

_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "upstream": "api_error",
    "overloaded": "overloaded_error",
    "unavailable": "api_error",
    "timeout": "timeout_error",
    "internal": "api_error",
}


def error_body(err: GatewayError, request_id: str | None = None) -> dict[str, JSON]:
    """The Anthropic error object for ``err`` (with the request's id, as Anthropic's has)."""
    body: dict[str, JSON] = {
        "type": "error",
        "error": {"type": _ERROR_TYPES.get(err.kind, "api_error"), "message": err.message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def stream_error(obj: Any) -> GatewayError:
    """The error an Anthropic upstream reported inside its stream (``event: error``)."""
    return upstream_error(None, obj if isinstance(obj, dict) else None)
