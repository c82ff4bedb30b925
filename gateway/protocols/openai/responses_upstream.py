"""The Responses API spoken to an upstream: requests out, ``response`` objects and typed stream
events in (the ``openai_responses`` backend uses these).

A request that came through the Responses API goes as the client sent it (its stored context
and item references already resolved by the gateway, the model replaced): custom, namespaced
and hosted tools, ``input_file`` parts, reasoning items and every other field pass through.
Other clients' requests are translated from the canonical model. Answers come back as canonical
events either way; a custom tool's call carries its input as the arguments ``{"input": ...}``
and a namespaced call the name ``<namespace>__<name>``, as :mod:`.responses` decodes them.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway import (
    JSON,
    ChatRequest,
    ChatResponse,
    Event,
    Finish,
    GatewayError,
    ImagePart,
    Message,
    ReasoningDelta,
    Start,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    UpstreamError,
    Usage,
    UsageEvent,
)
from gateway.protocols.openai.responses import PROTOCOL, decode_reasoning_item, flat_name

#: Fields the gateway answers itself and never forwards.
_GATEWAY_ONLY = ("previous_response_id", "background", "conversation")


# --- requests -------------------------------------------------------------------------------------


def encode_request(req: ChatRequest, model: str) -> dict[str, JSON]:
    """The upstream's request body for ``req`` (see the module's docstring)."""
    if req.protocol == PROTOCOL and req.wire is not None:
        body = {k: v for k, v in req.wire.items() if k not in _GATEWAY_ONLY}
        body["model"] = model
        return body
    instructions = [
        p.text
        for m in req.messages
        if m.role in ("system", "developer")
        for p in m.parts
        if type(p) is TextPart
    ]
    body = {"model": model, "input": _items(req.messages)}
    if instructions:
        body["instructions"] = "\n\n".join(instructions)
    if req.stream:
        body["stream"] = True
    if req.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters or {"type": "object", "properties": {}},
                "strict": bool(t.strict),
            }
            for t in req.tools
        ]
    if req.tool_choice is not None:
        tc = req.tool_choice
        body["tool_choice"] = (
            {"type": "function", "name": tc.name} if tc.mode == "tool" else tc.mode
        )
    for key, value in (
        ("parallel_tool_calls", req.parallel_tool_calls),
        ("max_output_tokens", req.max_tokens),
        ("temperature", req.temperature),
        ("top_p", req.top_p),
        ("user", req.user),
    ):
        if value is not None:
            body[key] = value
    fmt = req.response_format
    if fmt is not None:
        spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else {}
        body["text"] = {"format": {"type": fmt.get("type"), **(spec or {})}}
    body["store"] = False
    return body


def _items(messages: list[Message]) -> list[dict[str, JSON]]:
    out: list[dict[str, JSON]] = []
    for msg in messages:
        if msg.role in ("system", "developer"):
            continue
        content: list[JSON] = []
        kind = "output_text" if msg.role == "assistant" else "input_text"
        for p in msg.parts:
            if type(p) is TextPart:
                content.append({"type": kind, "text": p.text})
            elif type(p) is ImagePart:
                content.append(
                    {"type": "input_image", "image_url": p.as_url(), "detail": p.detail or "auto"}
                )
            elif type(p) is ToolCallPart:
                out.append(
                    {
                        "type": "function_call",
                        "call_id": p.id,
                        "name": p.name,
                        "arguments": p.arguments,
                    }
                )
            elif type(p) is ToolResultPart:
                result = p.content
                text = (
                    result
                    if isinstance(result, str)
                    else "".join(q.text for q in result if type(q) is TextPart)
                )
                out.append({"type": "function_call_output", "call_id": p.call_id, "output": text})
        if content:
            out.append(
                {
                    "type": "message",
                    "role": msg.role if msg.role != "tool" else "user",
                    "content": content,
                }
            )
    return out


# --- answers --------------------------------------------------------------------------------------


def _call(item: dict[str, Any]) -> ToolCallPart:
    """An output item of a call as the canonical call the client's tools are named for."""
    name = str(item.get("name", ""))
    if item.get("namespace"):
        name = flat_name(str(item["namespace"]), name)
    if item.get("type") == "custom_tool_call":
        return ToolCallPart(
            str(item.get("call_id")), name, orjson.dumps({"input": item.get("input", "")}).decode()
        )
    return ToolCallPart(str(item.get("call_id")), name, str(item.get("arguments") or "{}"))


def decode_usage(obj: Any) -> Usage | None:
    if not isinstance(obj, dict):
        return None
    cached = (obj.get("input_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (obj.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return Usage(
        input_tokens=int(obj.get("input_tokens") or 0),
        output_tokens=int(obj.get("output_tokens") or 0),
        cache_read_tokens=int(cached),
        details={"completion_tokens_details": {"reasoning_tokens": reasoning}}
        if reasoning
        else None,
    )


def _finish(response: dict[str, Any], calls: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if calls else "stop"


def decode_response(obj: Any) -> ChatResponse:
    """A whole ``response`` object as a canonical answer."""
    if not isinstance(obj, dict) or not isinstance(obj.get("output"), list):
        raise UpstreamError("the upstream answered something that is not a response object")
    parts: list[Any] = []
    for item in obj["output"]:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            text = "".join(
                str(c.get("text", "")) for c in item.get("content") or () if isinstance(c, dict)
            )
            if text:
                parts.append(TextPart(text))
        elif kind in ("function_call", "custom_tool_call"):
            parts.append(_call(item))
        elif kind == "reasoning":
            parts.append(decode_reasoning_item(item))
    calls = any(type(p) is ToolCallPart for p in parts)
    return ChatResponse(
        id=str(obj.get("id", "")),
        model=str(obj.get("model", "")),
        message=Message("assistant", parts),
        finish_reason=_finish(obj, calls),
        usage=decode_usage(obj.get("usage")),
        created=int(obj.get("created_at") or 0),
    )


def stream_error(obj: dict[str, Any]) -> GatewayError | None:
    """The failure a stream event reports (``error``, ``response.failed``), if any."""
    kind = obj.get("type")
    if kind == "error":
        return UpstreamError(f"upstream error: {obj.get('message') or 'unknown error'}")
    if kind == "response.failed":
        err = (obj.get("response") or {}).get("error") or {}
        return UpstreamError(f"upstream error: {err.get('message') or 'the response failed'}")
    return None


class StreamParser:
    """Turns a Responses stream's events into canonical events."""

    __slots__ = ("_calls", "_custom", "finished")

    def __init__(self) -> None:
        self.finished = False
        #: Output index -> the call's canonical index, for the calls opened so far.
        self._calls: dict[int, int] = {}
        #: Output indexes of custom tool calls (their input is sent whole when done).
        self._custom: set[int] = set()

    def feed(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "response.output_text.delta":
            return [TextDelta(str(obj.get("delta", "")))]
        if kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
            return [ReasoningDelta(str(obj.get("delta", "")))]
        if kind == "response.function_call_arguments.delta":
            index = self._calls.get(int(obj.get("output_index", -1)))
            return [] if index is None else [ToolCallDelta(index, str(obj.get("delta", "")))]
        if kind == "response.output_item.added":
            item = obj.get("item") or {}
            if item.get("type") in ("function_call", "custom_tool_call"):
                at = int(obj.get("output_index", len(self._calls)))
                index = self._calls[at] = len(self._calls)
                if item.get("type") == "custom_tool_call":
                    self._custom.add(at)
                call = _call(item)
                return [ToolCallStart(index, call.id, call.name)]
            return []
        if kind == "response.output_item.done":
            at = int(obj.get("output_index", -1))
            index = self._calls.get(at)
            if index is None:
                return []
            events: list[Event] = []
            if at in self._custom:
                events.append(ToolCallDelta(index, _call(obj.get("item") or {}).arguments))
            return [*events, ToolCallEnd(index)]
        if kind == "response.created":
            response = obj.get("response") or {}
            return [Start(id=response.get("id"), model=response.get("model"))]
        if kind in ("response.completed", "response.incomplete"):
            self.finished = True
            response = obj.get("response") or {}
            out: list[Event] = []
            usage = decode_usage(response.get("usage"))
            if usage is not None:
                out.append(UsageEvent(usage))
            out.append(Finish(_finish(response, bool(self._calls))))
            return out
        return []
