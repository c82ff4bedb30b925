"""OpenAI's Responses API on the wire: requests in, ``response`` objects and typed stream events
out.

Every request is translated through the canonical model, so any backend can answer it. The
gateway keeps no responses: ``previous_response_id`` and ``conversation`` are refused with a
clear 400 (send the whole conversation in ``input``), and hosted tools (web search, file search,
...) are dropped, logged at debug, since no backend here runs them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from gateway import (
    JSON,
    BadRequest,
    ChatRequest,
    ChatResponse,
    GatewayError,
    Message,
    OpaquePart,
    Part,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    Usage,
    new_id,
)
from gateway.protocols.openai.chat import image_from_url

PROTOCOL = "openai_responses"
log = logging.getLogger(__name__)

_KNOWN = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "metadata",
        "user",
        "text",
    }
)
_ROLES = frozenset({"user", "system", "developer", "assistant"})


# --- requests -----------------------------------------------------------------------------------


def decode_request(body: Any) -> ChatRequest:
    """Validate and decode a ``POST /v1/responses`` body; :class:`BadRequest` names the field."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string.", param="model")
    for key in ("previous_response_id", "conversation"):
        if body.get(key) is not None:
            raise BadRequest(
                f"'{key}' is not supported: this gateway stores no responses; send the whole "
                "conversation in 'input'.",
                param=key,
            )
    messages: list[Message] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BadRequest("'instructions' must be a string.", param="instructions")
        messages.append(Message("system", [TextPart(instructions)]))
    raw = body.get("input")
    if isinstance(raw, str):
        messages.append(Message("user", [TextPart(raw)]))
    elif isinstance(raw, list) and raw:
        for i, item in enumerate(raw):
            _decode_item(item, f"input[{i}]", messages)
    else:
        raise BadRequest("'input' is required: a string or a non-empty array.", param="input")
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
        raise BadRequest("'max_output_tokens' must be an integer.", param="max_output_tokens")
    tools, choice = _decode_tools(body.get("tools")), _decode_tool_choice(body.get("tool_choice"))
    return ChatRequest(
        model=model,
        messages=messages,
        protocol=PROTOCOL,
        stream=body.get("stream") is True,
        include_usage=True,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=body.get("parallel_tool_calls"),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        response_format=_response_format(body.get("text")),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        metadata=body.get("metadata") if isinstance(body.get("metadata"), dict) else None,
        extra={k: v for k, v in body.items() if k not in _KNOWN} or None,
        wire=body,
    )


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        raise BadRequest(f"'{key}' must be a number.", param=key)
    return value


def _decode_item(item: Any, at: str, out: list[Message]) -> None:
    if not isinstance(item, dict):
        raise BadRequest(f"'{at}' must be an object.", param=at)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if isinstance(role, dict | list) or role not in _ROLES:  # unhashable: not a role
            raise BadRequest(
                f"'{at}.role' must be one of user, system, developer, assistant.",
                param=f"{at}.role",
            )
        out.append(Message(role, _decode_content(item.get("content"), f"{at}.content")))
    elif kind == "function_call":
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise BadRequest(f"'{at}' needs a 'call_id' and a 'name'.", param=at)
        args = item.get("arguments")
        call = ToolCallPart(call_id, name, args if isinstance(args, str) else "{}")
        if out and out[-1].role == "assistant":
            out[-1].parts.append(call)
        else:
            out.append(Message("assistant", [call]))
    elif kind == "function_call_output":
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str):
            raise BadRequest(f"'{at}.call_id' is required.", param=f"{at}.call_id")
        result = output if isinstance(output, str) else _decode_content(output, f"{at}.output")
        out.append(Message("tool", [ToolResultPart(call_id, result)]))
    elif kind == "item_reference":
        raise BadRequest(
            f"'{at}': item references are not supported (this gateway stores no items).",
            param=at,
        )
    else:
        log.debug("dropping a %r input item (no canonical equivalent)", kind)


def _decode_content(content: Any, at: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise BadRequest(f"'{at}' must be a string or an array of content parts.", param=at)
    parts: list[Part] = []
    for j, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("input_text", "output_text") and isinstance(p.get("text"), str):
            parts.append(TextPart(p["text"]))
        elif kind == "input_image" and isinstance(p.get("image_url"), str):
            parts.append(image_from_url(p["image_url"], p.get("detail")))
        elif kind is not None:
            parts.append(OpaquePart(PROTOCOL, p))
        else:
            raise BadRequest(f"'{at}[{j}]' must be an object with a 'type'.", param=f"{at}[{j}]")
    return parts


def _decode_tools(tools: Any) -> list[Tool] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array.", param="tools")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict):
            raise BadRequest(f"'tools[{i}]' must be an object.", param=f"tools[{i}]")
        if t.get("type") != "function":
            log.debug("dropping a %r tool: no backend here runs hosted tools", t.get("type"))
            continue
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise BadRequest(f"'tools[{i}].name' is required.", param=f"tools[{i}].name")
        params = t.get("parameters")
        out.append(
            Tool(
                t["name"],
                t.get("description"),
                params if isinstance(params, dict) else None,
                t.get("strict") if isinstance(t.get("strict"), bool) else None,
            )
        )
    return out or None


def _decode_tool_choice(choice: Any) -> ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ToolChoice(choice)
    if isinstance(choice, dict) and choice.get("type") == "function":
        if isinstance(choice.get("name"), str):
            return ToolChoice("tool", choice["name"])
        raise BadRequest("'tool_choice.name' is required.", param="tool_choice.name")
    log.debug("treating tool_choice %r as auto", choice)
    return ToolChoice("auto")


def _response_format(text: Any) -> dict[str, JSON] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_schema":
        spec = {k: v for k, v in fmt.items() if k in ("name", "schema", "strict", "description")}
        return {"type": "json_schema", "json_schema": spec}
    return {"type": fmt["type"]}


# --- response objects ---------------------------------------------------------------------------


def encode_usage(u: Usage) -> dict[str, JSON]:
    reasoning = ((u.details or {}).get("completion_tokens_details") or {}).get("reasoning_tokens")
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning or 0},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def _incomplete(reason: str) -> dict[str, JSON] | None:
    if reason == "length":
        return {"reason": "max_output_tokens"}
    if reason == "content_filter":
        return {"reason": "content_filter"}
    return None


class Shell:
    """The fields a ``response`` object repeats from its request, computed once per request."""

    __slots__ = ("created_at", "echo", "id", "model")

    def __init__(self, body: Mapping[str, Any], model: str) -> None:
        self.id = new_id("resp_")
        self.model = model
        self.created_at = int(time.time())
        tools = [
            t
            for t in body.get("tools") or ()
            if isinstance(t, dict) and t.get("type") == "function"
        ]
        self.echo: dict[str, JSON] = {
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {},
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "temperature": body.get("temperature"),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": [
                {
                    "type": "function",
                    "name": t.get("name"),
                    "description": t.get("description"),
                    "parameters": t.get("parameters"),
                    "strict": t.get("strict"),
                }
                for t in tools
            ],
            "top_p": body.get("top_p"),
            "truncation": "disabled",
            "store": False,
        }

    def response(
        self,
        status: str,
        output: list[dict[str, JSON]],
        usage: Usage | None = None,
        reason: str = "stop",
        error: GatewayError | None = None,
        model: str | None = None,
    ) -> dict[str, JSON]:
        incomplete = _incomplete(reason) if status == "completed" else None
        if incomplete is not None:
            status = "incomplete"
        out: dict[str, JSON] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None if error is None else error_object(error),
            "incomplete_details": incomplete,
            "model": model or self.model,
            "output": output,
            **self.echo,
        }
        if usage is not None:
            out["usage"] = encode_usage(usage)
        return out


def error_object(err: GatewayError) -> dict[str, JSON]:
    code = "rate_limit_exceeded" if err.kind == "rate_limit" else "server_error"
    return {"code": code, "message": err.message}


def message_item(text: str, status: str = "completed", id: str | None = None) -> dict[str, JSON]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "type": "message",
        "id": id or new_id("msg_"),
        "status": status,
        "role": "assistant",
        "content": content if status == "completed" else [],
    }


def call_item(
    call: ToolCallPart, status: str = "completed", id: str | None = None
) -> dict[str, JSON]:
    return {
        "type": "function_call",
        "id": id or new_id("fc_"),
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments if status == "completed" else "",
        "status": status,
    }


def reasoning_item(text: str, status: str = "completed", id: str | None = None) -> dict[str, JSON]:
    content = [{"type": "reasoning_text", "text": text}] if status == "completed" else []
    return {"type": "reasoning", "id": id or new_id("rs_"), "summary": [], "content": content}


def encode_response(resp: ChatResponse, shell: Shell) -> dict[str, JSON]:
    """A canonical response as a ``response`` object."""
    output: list[dict[str, JSON]] = []
    parts = resp.message.parts
    reasoning = "".join(p.text for p in parts if type(p) is ReasoningPart)
    if reasoning:
        output.append(reasoning_item(reasoning))
    text = "".join(p.text for p in parts if type(p) is TextPart)
    if text:
        output.append(message_item(text))
    output.extend(call_item(p) for p in parts if type(p) is ToolCallPart)
    return shell.response("completed", output, resp.usage, resp.finish_reason, model=resp.model)
