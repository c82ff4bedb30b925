"""OpenAI's Responses API on the wire: requests in, ``response`` objects and typed stream events
out.

Every request is translated through the canonical model, so any backend can answer it. The
decoder here is pure: ``previous_response_id`` and item references are resolved by the adapter
from the response store (``responses_state``) before it runs. ``conversation`` is refused with a
clear 400; hosted tools (web search, file search, ...) are dropped, logged at debug, since no
backend here runs them.

Custom tools (free-form input) become function tools with one string argument, ``input``;
Codex's ``namespace`` tools become function tools named ``<namespace>__<name>``; the answer's
calls go back to the client as ``custom_tool_call`` items and namespaced ``function_call``
items. An ``openai_responses`` backend receives all of them as the client sent them.
``input_file`` parts have no translation: :func:`file_part` finds them, for the adapter to
refuse them when the model's backend does not speak the Responses API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import attrs
import orjson

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
    if body.get("conversation") is not None:
        raise BadRequest(
            "'conversation' is not supported: use 'previous_response_id', or send the whole "
            "conversation in 'input'.",
            param="conversation",
        )
    if body.get("previous_response_id") is not None:
        raise BadRequest(
            "'previous_response_id' is not supported: this gateway keeps no responses "
            "([responses] store = \"off\"); send the whole conversation in 'input'.",
            param="previous_response_id",
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
        reasoning_effort=_effort(body.get("reasoning")),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        metadata=body.get("metadata") if isinstance(body.get("metadata"), dict) else None,
        extra={k: v for k, v in body.items() if k not in _KNOWN} or None,
        wire=body,
    )


def _effort(reasoning: Any) -> str | None:
    """``reasoning.effort`` (kept in ``extra`` too, for a Responses upstream)."""
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return effort if isinstance(effort, str) else None


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
    elif kind in ("function_call", "custom_tool_call"):
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise BadRequest(f"'{at}' needs a 'call_id' and a 'name'.", param=at)
        namespace = item.get("namespace")
        if isinstance(namespace, str) and namespace:
            name = flat_name(namespace, name)
        if kind == "custom_tool_call":
            given = item.get("input")
            if not isinstance(given, str):
                raise BadRequest(f"'{at}.input' must be a string.", param=f"{at}.input")
            args: Any = orjson.dumps({"input": given}).decode()
        else:
            args = item.get("arguments")
        call = ToolCallPart(call_id, name, args if isinstance(args, str) else "{}")
        if out and out[-1].role == "assistant":
            out[-1].parts.append(call)
        else:
            out.append(Message("assistant", [call]))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str):
            raise BadRequest(f"'{at}.call_id' is required.", param=f"{at}.call_id")
        result = output if isinstance(output, str) else _decode_content(output, f"{at}.output")
        out.append(Message("tool", [ToolResultPart(call_id, result)]))
    elif kind == "reasoning":
        part = decode_reasoning_item(item)
        if out and out[-1].role == "assistant":
            out[-1].parts.append(part)
        else:
            out.append(Message("assistant", [part]))
    elif kind == "item_reference":
        raise BadRequest(
            f"'{at}': item references are not supported: this gateway keeps no responses "
            '([responses] store = "off"); send the item itself.',
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
    out: list[Tool] = []
    for i, t in enumerate(tools):
        if isinstance(t, dict) and t.get("type") == "namespace":
            namespace, children = t.get("name"), t.get("tools")
            if not isinstance(namespace, str) or not namespace:
                raise BadRequest(f"'tools[{i}].name' is required.", param=f"tools[{i}].name")
            if not isinstance(children, list):
                raise BadRequest(f"'tools[{i}].tools' must be an array.", param=f"tools[{i}].tools")
            for j, child in enumerate(children):
                tool = _decode_tool(child, f"tools[{i}].tools[{j}]")
                if tool is not None:
                    out.append(attrs.evolve(tool, name=flat_name(namespace, tool.name)))
            continue
        tool = _decode_tool(t, f"tools[{i}]")
        if tool is not None:
            out.append(tool)
    return out or None


def _decode_tool(t: Any, at: str) -> Tool | None:
    if not isinstance(t, dict):
        raise BadRequest(f"'{at}' must be an object.", param=at)
    kind = t.get("type")
    if kind not in ("function", "custom"):
        log.debug("dropping a %r tool: no backend here runs hosted tools", kind)
        return None
    if not isinstance(t.get("name"), str) or not t["name"]:
        raise BadRequest(f"'{at}.name' is required.", param=f"{at}.name")
    description = t.get("description") if isinstance(t.get("description"), str) else None
    if kind == "custom":
        return Tool(t["name"], description, _custom_parameters(t.get("format")))
    params = t.get("parameters")
    return Tool(
        t["name"],
        description,
        params if isinstance(params, dict) else None,
        t.get("strict") if isinstance(t.get("strict"), bool) else None,
    )


def _custom_parameters(fmt: Any) -> dict[str, JSON]:
    """A custom tool's free-form input as a function's one string argument; a grammar, when the
    tool has one, is told to the model in the argument's description."""
    about = "The tool's input, as free-form text."
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        about = (
            f"The tool's input: text in the {fmt.get('syntax', 'lark')} grammar below.\n"
            f"{fmt.get('definition', '')}"
        )
    return {
        "type": "object",
        "properties": {"input": {"type": "string", "description": about}},
        "required": ["input"],
        "additionalProperties": False,
    }


def flat_name(namespace: str, name: str) -> str:
    """The function name a namespaced tool has for backends that know no namespaces."""
    return f"{namespace}__{name}"


def _decode_tool_choice(choice: Any) -> ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ToolChoice(choice)
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
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


def file_part(messages: list[Message]) -> str | None:
    """Where the first ``input_file`` part is (``input[i].content[j]`` counting messages), if
    any."""
    for i, msg in enumerate(messages):
        for j, p in enumerate(msg.parts):
            if (
                type(p) is OpaquePart
                and p.protocol == PROTOCOL
                and p.data.get("type") == "input_file"
            ):
                return f"messages[{i}].content[{j}]"
    return None


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
    """The fields a ``response`` object repeats from its request, computed once per request,
    and how the answer's tool calls are named back (custom and namespaced tools)."""

    __slots__ = ("created_at", "custom", "echo", "id", "model", "namespaced")

    def __init__(
        self,
        body: Mapping[str, Any],
        model: str,
        *,
        store: bool = False,
        previous_response_id: str | None = None,
        background: bool = False,
    ) -> None:
        self.id = new_id("resp_")
        self.model = model
        self.created_at = int(time.time())
        #: Function names of custom tools, and of namespaced tools -> (namespace, name).
        self.custom: set[str] = set()
        self.namespaced: dict[str, tuple[str, str]] = {}
        tools: list[JSON] = []
        for t in body.get("tools") or ():
            if not isinstance(t, dict):
                continue
            if t.get("type") == "namespace":
                for child in t.get("tools") or ():
                    if isinstance(child, dict) and isinstance(child.get("name"), str):
                        flat = flat_name(str(t.get("name")), child["name"])
                        self.namespaced[flat] = (str(t.get("name")), child["name"])
                        if child.get("type") == "custom":
                            self.custom.add(flat)
                tools.append(t)
            elif t.get("type") == "function":
                tools.append(
                    {
                        "type": "function",
                        "name": t.get("name"),
                        "description": t.get("description"),
                        "parameters": t.get("parameters"),
                        "strict": t.get("strict"),
                    }
                )
            elif t.get("type") == "custom":
                if isinstance(t.get("name"), str):
                    self.custom.add(t["name"])
                tools.append(t)
        parallel = body.get("parallel_tool_calls")
        self.echo: dict[str, JSON] = {
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {},
            "parallel_tool_calls": parallel if isinstance(parallel, bool) else True,
            "previous_response_id": previous_response_id,
            "reasoning": body.get("reasoning"),
            "temperature": body.get("temperature"),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": tools,
            "top_p": body.get("top_p"),
            "truncation": body.get("truncation") or "disabled",
            "background": background,
            "store": store,
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

    def call_item(
        self, call: ToolCallPart, status: str = "completed", id: str | None = None
    ) -> dict[str, JSON]:
        """A tool call as the output item the client's tool expects: a ``function_call`` (with
        its ``namespace`` for a namespaced tool) or a ``custom_tool_call``."""
        name, namespace = call.name, None
        if name in self.namespaced:
            namespace, name = self.namespaced[name]
        if call.name in self.custom:
            item: dict[str, JSON] = {
                "type": "custom_tool_call",
                "id": id or new_id("ctc_"),
                "call_id": call.id,
                "name": name,
                "input": custom_input(call.arguments) if status == "completed" else "",
                "status": status,
            }
        else:
            item = call_item(ToolCallPart(call.id, name, call.arguments), status, id)
        if namespace is not None:
            item["namespace"] = namespace
        return item


def custom_input(arguments: str) -> str:
    """The free-form input of a custom tool's call, from the function arguments it was sent as
    (``{"input": ...}``); arguments of another shape are passed on as they are."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    given = value.get("input") if isinstance(value, dict) else None
    return given if isinstance(given, str) else arguments


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


#: How a reasoning item's ``encrypted_content`` carries the signature of Anthropic thinking,
#: so that the thinking goes back to Anthropic on the next turn. Other ``encrypted_content``
#: (OpenAI's own) is kept for a Responses upstream only.
SIGNATURE_PREFIX = "anthropic-thinking-signature:"


def reasoning_item(
    text: str, status: str = "completed", id: str | None = None, signature: str | None = None
) -> dict[str, JSON]:
    content = [{"type": "reasoning_text", "text": text}] if status == "completed" else []
    item: dict[str, JSON] = {
        "type": "reasoning",
        "id": id or new_id("rs_"),
        "summary": [],
        "content": content,
    }
    if signature:
        item["encrypted_content"] = SIGNATURE_PREFIX + signature
    return item


def decode_reasoning_item(item: dict[str, Any]) -> ReasoningPart:
    """A reasoning input item as reasoning: its text (or summary), and the Anthropic signature
    its ``encrypted_content`` carries; the item itself is kept for a Responses upstream."""
    shown = item.get("content") or item.get("summary")  # the text, or its summary
    texts = [p.get("text") for p in shown or () if isinstance(p, dict)]
    sealed = item.get("encrypted_content")
    signature = None
    if isinstance(sealed, str) and sealed.startswith(SIGNATURE_PREFIX):
        signature = sealed[len(SIGNATURE_PREFIX) :]
    text = "".join(t for t in texts if isinstance(t, str))
    return ReasoningPart(text, signature, {PROTOCOL: item})


def encode_response(resp: ChatResponse, shell: Shell) -> dict[str, JSON]:
    """A canonical response as a ``response`` object."""
    output: list[dict[str, JSON]] = []
    parts = resp.message.parts
    thinking = [p for p in parts if type(p) is ReasoningPart]
    if thinking:
        signature = next((p.signature for p in reversed(thinking) if p.signature), None)
        output.append(reasoning_item("".join(p.text for p in thinking), signature=signature))
    text = "".join(p.text for p in parts if type(p) is TextPart)
    if text:
        output.append(message_item(text))
    output.extend(shell.call_item(p) for p in parts if type(p) is ToolCallPart)
    # The model is the name asked for (the shell's), not the upstream's (resp.model).
    return shell.response("completed", output, resp.usage, resp.finish_reason)
