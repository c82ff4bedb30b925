"""Anthropic Messages requests on the wire, both ways.

The ``anthropic`` protocol adapter decodes client requests with this module and the
``anthropic`` backend encodes requests for its upstream (answers, usage and errors are in
:mod:`gateway.protocols.anthropic.response`, streams in :mod:`gateway.protocols.anthropic.stream`). Fields with no canonical counterpart are kept in
``extra`` and written back only to an Anthropic-speaking peer; ``cache_control`` marks are the
one exception, carried from any client's text parts, tool results and tools, because the mark
means the same thing wherever it came from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from gateway import (
    JSON,
    BadRequest,
    ChatRequest,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
)

PROTOCOL = "anthropic"
log = logging.getLogger(__name__)

#: Request fields the canonical model holds; every other field is kept in ``extra``.
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stream",
        "tools",
        "tool_choice",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
    }
)
#: Anthropic's ``output_config.effort`` levels as canonical reasoning efforts.
EFFORTS_IN = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}
#: Thinking budgets for canonical reasoning efforts (Anthropic's smallest budget is 1024).
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
#: Content parts of other protocols that carry what the user gave (audio, video, files):
#: Anthropic has no equivalent, and leaving them out would answer another question.
_FOREIGN_MEDIA = frozenset({"input_audio", "audio_url", "video_url", "file", "input_file"})
#: The tool a backend configured with ``structured_output = "tool"`` forces for JSON output.
OUTPUT_TOOL = "json_output"
#: Anthropic's ``tool_choice`` types as canonical modes.
_TOOL_CHOICE_MODES: dict[str, ToolChoiceMode] = {
    "auto": "auto",
    "any": "required",
    "none": "none",
    "tool": "tool",
}
# --- requests: wire -> canonical ----------------------------------------------------------------


def decode_request(
    body: Any, headers: Mapping[str, str] | None = None, *, counting: bool = False
) -> ChatRequest:
    """Validate and decode a Messages request body. Raises :class:`BadRequest` naming the
    offending field. ``headers`` are the client's; ``anthropic-beta`` is kept for an
    Anthropic upstream. ``counting`` decodes a count_tokens body (no ``max_tokens``)."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: Field required (a non-empty string).", param="model")
    max_tokens = whole_number(body.get("max_tokens"))
    if not counting and (max_tokens is None or max_tokens < 1):
        raise BadRequest("max_tokens: Field required (a positive integer).", param="max_tokens")
    messages = decode_messages(body.get("messages"), body.get("system"))
    stop = body.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("stop_sequences: must be an array of strings.", param="stop_sequences")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadRequest("metadata: must be an object.", param="metadata")
    user = metadata.get("user_id") if metadata else None
    choice, parallel = decode_tool_choice(body.get("tool_choice"))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("stream: must be a boolean.", param="stream")
    beta = headers.get("anthropic-beta") if headers is not None else None
    effort, budget = _decode_thinking(body.get("thinking"), body.get("output_config"))
    return ChatRequest(
        model=model,
        messages=messages,
        protocol=PROTOCOL,
        stream=bool(stream),
        include_usage=True,  # Anthropic streams always report usage
        tools=decode_tools(body.get("tools")),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        top_k=_integer(body, "top_k"),
        stop=stop or None,
        response_format=_decode_output_format(body),
        reasoning_effort=effort,
        reasoning_budget=budget,
        user=user if isinstance(user, str) else None,
        metadata=metadata,
        extra={k: v for k, v in body.items() if k not in _KNOWN} or None,
        wire=body,
        headers={"anthropic-beta": beta} if beta else None,
    )


def _decode_output_format(body: Mapping[str, Any]) -> dict[str, JSON] | None:
    """``output_config.format`` (or the beta's top-level ``output_format``) as the canonical,
    Chat Completions-shaped ``response_format``."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else body.get("output_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise BadRequest("output_config.format.schema: Field required.", param="output_config")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def _decode_thinking(thinking: Any, config: Any) -> tuple[str | None, int | None]:
    """The reasoning asked for, as a canonical effort or budget: ``enabled`` thinking has a
    budget, ``adaptive`` thinking the ``output_config.effort`` (``medium`` without one); none
    is asked when thinking is off."""
    if not isinstance(thinking, dict):
        return None, None
    kind = thinking.get("type")
    if kind == "enabled":
        return None, whole_number(thinking.get("budget_tokens"))
    if kind == "adaptive":
        effort = config.get("effort") if isinstance(config, dict) else None
        return (EFFORTS_IN.get(effort, "medium") if isinstance(effort, str) else "medium"), None
    return None, None  # ``disabled``: nothing to ask of another protocol


def whole_number(value: Any) -> int | None:
    """``value`` as an int when it is one, or a float with no fractional part (``1000.0``, which
    JSON encoders of some languages write for an integer); otherwise None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise BadRequest(f"{key}: must be a number.", param=key)
    return value


def _integer(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{key}: must be an integer.", param=key)
    return value


def decode_messages(raw: Any, system: Any) -> list[Message]:
    """``system`` and ``messages`` as canonical messages: the system prompt first, each
    ``tool_result`` block as its own ``tool`` message (in order, before the rest of its turn).

    A ``system`` message inside ``messages`` (mid-conversation instructions, which newer models
    take and Claude Code sends) stays where it is; encoders that cannot place it there fold it
    into the system prompt."""
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages: Field required (a non-empty array).", param="messages")
    out: list[Message] = []
    if system is not None:
        if isinstance(system, str):
            if system:
                out.append(Message("system", [TextPart(system)]))
        elif isinstance(system, list):
            blocks: list[Part] = [_text_block(b, f"system.{i}") for i, b in enumerate(system)]
            if blocks:
                out.append(Message("system", blocks))
        else:
            raise BadRequest("system: must be a string or an array of text blocks.", param="system")
    for i, m in enumerate(raw):
        where = f"messages.{i}"
        if not isinstance(m, dict):
            raise BadRequest(f"{where}: must be an object.", param=where)
        role = m.get("role")
        if role not in ("user", "assistant", "system"):
            # Claude Code retries without its system messages when a 400 reads "... role ...
            # system ... not supported", as Anthropic's own does.
            raise BadRequest(
                f"{where}.role: role {role!r} is not supported; must be 'user', 'assistant' or "
                "'system'.",
                param=f"{where}.role",
            )
        content = m.get("content")
        if isinstance(content, str):
            out.append(Message(role, [TextPart(content)]))
            continue
        if not isinstance(content, list):
            raise BadRequest(
                f"{where}.content: must be a string or an array of content blocks.",
                param=f"{where}.content",
            )
        parts: list[Part] = []
        for j, block in enumerate(content):
            part = _decode_block(block, f"{where}.content.{j}", role)
            if type(part) is ToolResultPart:
                out.append(Message("tool", [part]))
            else:
                parts.append(part)
        if parts or not content:
            out.append(Message(role, parts))
    return out


def _text_block(b: Any, at: str) -> TextPart:
    if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
        raise BadRequest(f"{at}: must be a text block {{type: 'text', text}}.", param=at)
    return TextPart(b["text"], rest(b, ("type", "text")))


def rest(b: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, JSON] | None:
    return {k: v for k, v in b.items() if k not in known} or None


def _decode_block(b: Any, at: str, role: str) -> Part:
    if not isinstance(b, dict) or not isinstance(b.get("type"), str):
        raise BadRequest(f"{at}: must be an object with a 'type'.", param=at)
    kind = b["type"]
    if kind == "text":
        return _text_block(b, at)
    if kind == "image":
        return _decode_image(b, at)
    if kind == "tool_use" and role == "assistant":
        if not isinstance(b.get("id"), str) or not isinstance(b.get("name"), str):
            raise BadRequest(f"{at}: a tool_use block needs an 'id' and a 'name'.", param=at)
        args = b.get("input", {})
        if not isinstance(args, dict):
            raise BadRequest(f"{at}.input: must be an object.", param=f"{at}.input")
        return ToolCallPart(
            b["id"],
            b["name"],
            orjson.dumps(args).decode(),
            rest(b, ("type", "id", "name", "input")),
        )
    if kind == "tool_result" and role == "user":
        call_id = b.get("tool_use_id")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(f"{at}.tool_use_id: Field required.", param=f"{at}.tool_use_id")
        content = b.get("content", "")
        result: str | list[Part]
        if isinstance(content, str):
            result = content
        elif isinstance(content, list):
            result = [_decode_block(c, f"{at}.content.{k}", "tool") for k, c in enumerate(content)]
        else:
            raise BadRequest(f"{at}.content: must be a string or an array.", param=f"{at}.content")
        return ToolResultPart(
            call_id,
            result,
            bool(b.get("is_error")),
            rest(b, ("type", "tool_use_id", "content", "is_error")),
        )
    if kind == "thinking" and role == "assistant" and isinstance(b.get("thinking"), str):
        signature = b.get("signature")
        return ReasoningPart(b["thinking"], signature if isinstance(signature, str) else None)
    # documents, redacted thinking, server tool blocks, search results ...: Anthropic only
    return OpaquePart(PROTOCOL, b)


def _decode_image(b: Mapping[str, Any], at: str) -> ImagePart | OpaquePart:
    source = b.get("source")
    extra = rest(b, ("type", "source"))
    if not isinstance(source, dict) or not isinstance(source.get("type"), str):
        raise BadRequest(f"{at}.source: Field required (an object with a 'type').", param=at)
    kind = source["type"]
    if kind == "base64" and isinstance(source.get("data"), str):
        return ImagePart(data=source["data"], media_type=source.get("media_type"), extra=extra)
    if kind == "url" and isinstance(source.get("url"), str):
        return ImagePart(url=source["url"], extra=extra)
    # a ``file`` source (an id from Anthropic's Files API) or a kind yet to come: Anthropic only
    return OpaquePart(PROTOCOL, dict(b))


def decode_tools(tools: Any) -> list[Tool] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise BadRequest("tools: must be an array.", param="tools")
    out = []
    for i, t in enumerate(tools):
        at = f"tools.{i}"
        if not isinstance(t, dict):
            raise BadRequest(f"{at}: must be an object.", param=at)
        kind = t.get("type")
        if kind not in (None, "custom"):
            # Server tools (web search, code execution, an MCP server's toolset ...) only
            # Anthropic runs: kept whole. Some have no name (``mcp_toolset``).
            name = t.get("name") or t.get("mcp_server_name") or kind
            out.append(Tool(str(name), extra={"tool": t}))
            continue
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise BadRequest(f"{at}.name: Field required.", param=f"{at}.name")
        schema = t.get("input_schema")
        if not isinstance(schema, dict):
            raise BadRequest(f"{at}.input_schema: Field required (an object).", param=at)
        description = t.get("description")
        out.append(
            Tool(
                t["name"],
                description if isinstance(description, str) else None,
                schema,
                t.get("strict") if isinstance(t.get("strict"), bool) else None,
                rest(t, ("type", "name", "description", "input_schema", "strict")),
            )
        )
    return out


def decode_tool_choice(choice: Any) -> tuple[ToolChoice | None, bool | None]:
    """``tool_choice`` as a canonical choice and ``parallel_tool_calls``."""
    if choice is None:
        return None, None
    kind = choice.get("type") if isinstance(choice, dict) else None
    mode = _TOOL_CHOICE_MODES.get(kind) if isinstance(kind, str) else None
    if mode is None and isinstance(kind, str):
        mode = "auto"  # a kind yet to come: relayed as it is, "auto" elsewhere
    if mode is None or (mode == "tool" and not isinstance(choice.get("name"), str)):
        raise BadRequest(
            "tool_choice: must be {type: 'auto' | 'any' | 'none'} or {type: 'tool', name}.",
            param="tool_choice",
        )
    disable = choice.get("disable_parallel_tool_use")
    parallel = None if disable is None else not disable
    return ToolChoice(mode, choice.get("name") if mode == "tool" else None), parallel


# --- requests: canonical -> wire ----------------------------------------------------------------


def encode_request(
    req: ChatRequest, model: str, default_max_tokens: int, structured_output: str = "native"
) -> dict[str, JSON]:
    """The request body for an Anthropic upstream.

    A request that arrived in this protocol and was not changed on the way is sent as it came,
    with only the model replaced; otherwise it is encoded from the canonical fields, and what
    Anthropic cannot take is dropped (logged at debug) or, where dropping would change the
    answer, refused. A JSON output format becomes ``output_config.format``, or with
    ``structured_output="tool"`` a forced tool whose input is the JSON (for upstreams without
    structured outputs; the backend unwraps it).
    """
    if req.wire is not None and req.protocol == PROTOCOL:
        return {**req.wire, "model": model}
    same = req.protocol == PROTOCOL
    if not same:
        refuse_untranslatable(req)
    system, messages = encode_messages(req.messages, same)
    body: dict[str, JSON] = {
        "model": model,
        "max_tokens": req.max_tokens or default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = system
    if req.stream:
        body["stream"] = True
    allowed = req.tool_choice.allowed if req.tool_choice is not None else None
    tools = [
        t
        for t in req.tools or ()
        if (same or not (t.extra and "tool" in t.extra)) and (allowed is None or t.name in allowed)
    ]
    if tools:
        body["tools"] = [_encode_tool(t, same) for t in tools]
    choice = encode_tool_choice(req.tool_choice, req.parallel_tool_calls)
    if choice is not None and tools:
        body["tool_choice"] = choice
    if req.stop:
        body["stop_sequences"] = req.stop
    for key, value, limit in (("temperature", req.temperature, 1.0), ("top_p", req.top_p, 1.0)):
        if value is not None:
            if value > limit:
                log.debug("clamping %s=%s to Anthropic's maximum %s", key, value, limit)
                value = limit
            body[key] = value
    if req.top_k is not None:
        body["top_k"] = req.top_k
    if same and req.metadata is not None:
        body["metadata"] = req.metadata
    elif req.user:
        body["metadata"] = {"user_id": req.user}
    if same:
        if req.extra:
            body.update(req.extra)
    else:
        _encode_output_format(body, req.response_format, structured_output)
        _encode_thinking(body, req)
        dropped = sorted([*(req.extra or ())] + ["seed"] * (req.seed is not None))
        if dropped:
            log.debug("dropping %s fields the Anthropic format lacks: %s", req.protocol, dropped)
    return body


def output_schema(response_format: dict[str, JSON] | None) -> dict[str, JSON] | None:
    """The JSON schema a canonical ``response_format`` asks for (``json_object``: any object)."""
    kind = response_format.get("type") if response_format else None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema" or response_format is None:
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else {"type": "object"}


def _encode_output_format(
    body: dict[str, JSON], response_format: dict[str, JSON] | None, structured_output: str
) -> None:
    schema = output_schema(response_format)
    if schema is None:
        return
    if structured_output == "tool":
        tool = {
            "name": OUTPUT_TOOL,
            "description": "Give the answer as this tool's input, in the required format.",
            "input_schema": schema,
        }
        body["tools"] = [*body.get("tools", ()), tool]
        body["tool_choice"] = {"type": "tool", "name": OUTPUT_TOOL}
    elif response_format is not None and response_format.get("type") == "json_object":
        # Anthropic's structured outputs need a closed schema; "any object" is none
        log.debug("dropping response_format json_object: Anthropic has no JSON mode")
    else:
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}


def _thinking_may_continue(messages: list[dict[str, JSON]]) -> bool:
    """Whether thinking may be on for this history: Anthropic requires a tool loop's last
    assistant turn to start with its (signed) thinking, which a client of another protocol may
    not have kept; without it, the turn goes on without thinking rather than fail."""
    last = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    if last is None or not any(b.get("type") == "tool_use" for b in last["content"]):
        return True
    return last["content"][0].get("type") in ("thinking", "redacted_thinking")


def _encode_thinking(body: dict[str, JSON], req: ChatRequest) -> None:
    """Extended thinking for the reasoning ``req`` asks for, within Anthropic's rules: the budget
    at least 1024 and below ``max_tokens`` (which grows by the budget when it would not be), no
    ``temperature`` or ``top_k`` beside it, and none at all with a forced tool choice or in a
    tool loop whose last turn lost its thinking."""
    budget = req.reasoning_budget
    if budget is None and req.reasoning_effort is not None:
        budget = EFFORT_BUDGETS.get(req.reasoning_effort)
    if budget is None:
        return
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        log.debug("not enabling thinking: Anthropic refuses it beside a forced tool choice")
        return
    if not _thinking_may_continue(body["messages"]):
        log.debug("not enabling thinking: the tool loop's last turn has no signed thinking")
        return
    budget = max(1024, budget)
    if body["max_tokens"] <= budget:
        body["max_tokens"] += budget
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    dropped = [k for k in ("temperature", "top_k") if body.pop(k, None) is not None]
    if body.get("top_p", 1) < 0.95:
        dropped.append("top_p")
        del body["top_p"]
    if dropped:
        log.debug("dropping %s: Anthropic refuses them beside thinking", dropped)


#: Fields of other protocols that change what the answer is and that Anthropic cannot give:
#: translating them would be a silent lie, so the request is refused, naming the field.
_UNTRANSLATABLE: dict[str, Callable[[Any], bool]] = {
    "n": lambda v: isinstance(v, int) and v > 1,
    "logprobs": lambda v: bool(v),
    "top_logprobs": lambda v: v is not None,
    "functions": lambda v: bool(v),
    "function_call": lambda v: v is not None,
    # legacy Completions
    "prompt": lambda v: True,  # several prompts, or token arrays
    "echo": lambda v: bool(v),
    "suffix": lambda v: v is not None,
    "best_of": lambda v: isinstance(v, int) and v > 1,
}


def refuse_untranslatable(req: ChatRequest) -> None:
    """Raise :class:`BadRequest` naming the first field of ``req`` Anthropic cannot honour."""
    for key, matters in _UNTRANSLATABLE.items():
        if req.extra and key in req.extra and matters(req.extra[key]):
            why = (
                "legacy function calling is relayed only to OpenAI-compatible upstreams: use "
                "'tools'"
                if key.startswith("function")
                else "the Anthropic Messages API has no equivalent"
            )
            raise BadRequest(f"'{key}' cannot be used with model '{req.model}': {why}.", param=key)


def encode_tool_choice(choice: ToolChoice | None, parallel: bool | None) -> dict[str, JSON] | None:
    if choice is None and parallel is not False:
        return None
    mode = choice.mode if choice is not None else "auto"
    out: dict[str, JSON] = {"type": {"required": "any"}.get(mode, mode)}
    if choice is not None and mode == "tool":
        out["name"] = choice.name
    if parallel is False and mode != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _encode_tool(t: Tool, same: bool) -> dict[str, JSON]:
    if t.extra and "tool" in t.extra:
        tool: dict[str, JSON] = t.extra["tool"]
        return tool
    out: dict[str, JSON] = {
        "name": t.name,
        "input_schema": t.parameters or {"type": "object", "properties": {}},
    }
    if t.description:
        out["description"] = t.description
    if same:
        if t.strict is not None:
            out["strict"] = t.strict
        if t.extra:
            out.update(t.extra)
    else:
        _carry_cache_control(out, t.extra)
    return out


def _carry_cache_control(out: dict[str, JSON], extra: dict[str, JSON] | None) -> None:
    """Carry a foreign part's ``cache_control`` mark; its other fields are dropped."""
    if not extra:
        return
    if "cache_control" in extra:
        out["cache_control"] = extra["cache_control"]
    rest = sorted(k for k in extra if k != "cache_control")
    if rest:
        log.debug("dropping fields the Anthropic format lacks: %s", rest)


def encode_messages(
    messages: list[Message], same: bool
) -> tuple[list[dict[str, JSON]], list[dict[str, JSON]]]:
    """The ``system`` blocks and the ``messages`` of a request.

    System and developer messages become the top-level system prompt. Tool results become
    ``tool_result`` blocks of one user turn, right after the assistant turn that called them,
    followed by the rest of that user turn; consecutive turns of one role are merged, so the
    history stays valid for Anthropic whatever the client's protocol allowed.
    """
    system: list[dict[str, JSON]] = []
    out: list[dict[str, JSON]] = []
    for msg in messages:
        role = msg.role
        if role in ("system", "developer"):
            system.extend(_encode_parts(msg.parts, same))
            continue
        blocks = list(_encode_parts(msg.parts, same))
        wire_role = "assistant" if role == "assistant" else "user"
        if not blocks:
            continue
        if out and out[-1]["role"] == wire_role:
            previous = out[-1]["content"]
            if role == "tool":
                # tool results go before any other content of the user turn
                at = sum(1 for b in previous if b.get("type") == "tool_result")
                previous[at:at] = blocks
            else:
                previous.extend(blocks)
        else:
            out.append({"role": wire_role, "content": blocks})
    return system, out


def _encode_parts(parts: list[Part], same: bool) -> Iterator[dict[str, JSON]]:
    for p in parts:
        if type(p) is TextPart:
            if not p.text and not same:
                continue  # Anthropic rejects empty text blocks
            block: dict[str, JSON] = {"type": "text", "text": p.text}
            if same and p.extra:
                block.update(p.extra)
            else:
                _carry_cache_control(block, p.extra)
            yield block
        elif type(p) is ImagePart:
            yield _encode_image(p, same)
        elif type(p) is ToolCallPart:
            yield tool_use_block(p, same)
        elif type(p) is ToolResultPart:
            yield _encode_tool_result(p, same)
        elif type(p) is ReasoningPart:
            if p.signature:
                yield {"type": "thinking", "thinking": p.text, "signature": p.signature}
            else:
                log.debug("dropping reasoning without a signature (Anthropic requires one)")
        elif type(p) is OpaquePart and p.protocol == PROTOCOL:
            yield p.data
        elif type(p) is OpaquePart and p.data.get("type") in _FOREIGN_MEDIA:
            raise BadRequest(
                f"A '{p.data['type']}' content part cannot be sent to an Anthropic model: "
                "it is relayed only to upstreams of the client's own protocol.",
                param="messages",
            )
        else:
            log.debug("dropping a %s part the Anthropic format cannot carry", type(p).__name__)


def _encode_image(p: ImagePart, same: bool) -> dict[str, JSON]:
    if p.data is not None:
        source: dict[str, JSON] = {
            "type": "base64",
            "media_type": p.media_type or "image/png",
            "data": p.data,
        }
    elif p.url is not None and p.url.startswith("data:") and ";base64," in p.url:
        head, _, data = p.url.partition(";base64,")
        source = {"type": "base64", "media_type": head[5:] or "image/png", "data": data}
    else:
        source = {"type": "url", "url": p.url}
    block: dict[str, JSON] = {"type": "image", "source": source}
    if same and p.extra:
        block.update(p.extra)
    else:
        _carry_cache_control(block, p.extra)
    return block


def tool_use_block(p: ToolCallPart, same: bool) -> dict[str, JSON]:
    try:
        args = orjson.loads(p.arguments) if p.arguments else {}
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        log.debug("tool call %s has arguments that are not a JSON object; sending {}", p.id)
        args = {}
    block: dict[str, JSON] = {"type": "tool_use", "id": p.id, "name": p.name, "input": args}
    if same and p.extra:
        block.update(p.extra)
    return block


def _encode_tool_result(p: ToolResultPart, same: bool) -> dict[str, JSON]:
    content: JSON = p.content
    if not isinstance(p.content, str):
        content = list(_encode_parts(p.content, same))
    block: dict[str, JSON] = {"type": "tool_result", "tool_use_id": p.call_id, "content": content}
    if p.is_error:
        block["is_error"] = True
    if same and p.extra:
        block.update(p.extra)
    else:
        _carry_cache_control(block, p.extra)
    return block
