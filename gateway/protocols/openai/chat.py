"""OpenAI Chat Completions on the wire, both ways.

The protocol adapter decodes client requests and encodes answers with this module; the
``openai`` backend encodes requests for its upstream and decodes what comes back. Fields with no
canonical counterpart are kept in ``extra`` and written back only to an OpenAI-speaking peer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from gateway import (
    JSON,
    BadRequest,
    ChatRequest,
    GatewayError,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    default_error_body,
)

PROTOCOL = "openai"
log = logging.getLogger(__name__)

#: The most choices a request may ask for (``n``), as OpenAI's API allows.
MAX_CHOICES = 128
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
#: Roles whose message may be just text (``{"role": ..., "content": "..."}``).
_TEXT_ROLES = frozenset({"system", "developer", "user", "assistant"})
#: Request fields the canonical model holds; every other field is kept in ``extra``.
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "seed",
        "response_format",
        "reasoning_effort",
        "user",
        "metadata",
    }
)
#: Fields of other protocols kept in their ``extra`` and translated through canonical ones.
_TRANSLATED = frozenset({"thinking", "output_config", "output_format"})
#: Canonical reasoning efforts for Anthropic thinking budgets (up to each bound).
_BUDGET_EFFORTS = ((2048, "low"), (8192, "medium"), (16384, "high"))
FINISH_IN = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
}
FINISH_OUT = {
    "stop": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}


# --- requests: wire -> canonical ----------------------------------------------------------------


def decode_request(body: Any) -> ChatRequest:
    """Validate and decode a Chat Completions request body. Raises :class:`BadRequest`
    naming the offending parameter."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string.", param="model")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise BadRequest("'messages' is required and must be a non-empty array.", param="messages")
    legacy: list[str] = []  # ids given to legacy ``function_call``s, for their answers
    messages = []
    for i, m in enumerate(raw_messages):
        if type(m) is dict and len(m) == 2:
            # The common message, a role and its text, without the general path's checks.
            role, content = m.get("role"), m.get("content")
            if type(content) is str and type(role) is str and role in _TEXT_ROLES:
                messages.append(Message(role, [TextPart(content)]))  # type: ignore[arg-type]
                continue
        messages.append(_decode_message(m, i, legacy))
    if len(body) == 2:
        # The model and the messages alone: no optional field to look for.
        return ChatRequest(model=model, messages=messages, protocol=PROTOCOL, wire=body)
    # Optional fields are looked at only when present (most requests carry a few).
    stream = _opt(body, "stream", bool) or False if "stream" in body else False
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise BadRequest("'stream_options' must be an object.", param="stream_options")
        include_usage = _opt(options, "include_usage", bool, "stream_options.") or False
    if "n" in body:
        n = _opt(body, "n", int)
        if n is not None and not 1 <= n <= MAX_CHOICES:
            raise BadRequest(f"'n' must be between 1 and {MAX_CHOICES}.", param="n")
    max_tokens = _whole(body, "max_tokens") if "max_tokens" in body else None
    if max_tokens is None and "max_completion_tokens" in body:
        max_tokens = _whole(body, "max_completion_tokens")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is not None and not (
        isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    ):
        raise BadRequest("'stop' must be a string or an array of strings.", param="stop")
    metadata = _opt(body, "metadata", dict) if "metadata" in body else None
    session = metadata.get("session_id") if metadata else None
    # Loops, not comprehensions (each a function call of its own in Python 3.11).
    extra: dict[str, Any] | None = None
    for k in body:
        if k not in _KNOWN:
            if extra is None:
                extra = {}
            extra[k] = body[k]
    if options is not None and set(options) - {"include_usage"}:
        extra = {**(extra or {}), "stream_options": options}
    # The simple optional fields, each looked at only when the request has it.
    given = {}
    for key, kind in _SIMPLE:
        if key in body:
            given[key] = _opt(body, key, kind)
    return ChatRequest(
        model=model,
        messages=messages,
        protocol=PROTOCOL,
        stream=stream,
        include_usage=include_usage,
        tools=_decode_tools(body["tools"]) if "tools" in body else None,
        tool_choice=_decode_tool_choice(body["tool_choice"]) if "tool_choice" in body else None,
        max_tokens=max_tokens,
        stop=stop or None,
        metadata=metadata,
        session_id=session if isinstance(session, str) and session else None,
        extra=extra,
        wire=body,
        **given,
    )


#: Optional request fields decoded as they are, and their types.
_SIMPLE = (
    ("parallel_tool_calls", bool),
    ("temperature", float),
    ("top_p", float),
    ("top_k", int),
    ("seed", int),
    ("response_format", dict),
    ("reasoning_effort", str),
    ("user", str),
)


_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "an object",
}


def _opt(body: Mapping[str, Any], key: str, kind: type, prefix: str = "") -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise BadRequest(f"'{prefix}{key}' must be {_TYPE_NAMES[kind]}.", param=prefix + key)
    return value


def _whole(body: Mapping[str, Any], key: str) -> int | None:
    """An integer field, also given as a float with no fraction (``1000.0``)."""
    value = body.get(key)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    result: int | None = _opt(body, key, int)
    return result


def _decode_message(m: Any, i: int, legacy: list[str]) -> Message:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise BadRequest(f"'{where}' must be an object.", param=where)
    role = m.get("role")
    if isinstance(role, dict | list) or (role not in _ROLES and role != "function"):
        raise BadRequest(
            f"'{where}.role' must be one of system, developer, user, assistant, tool, function.",
            param=f"{where}.role",
        )
    content = m.get("content")
    extra: dict[str, JSON] | None = {
        k: v
        for k, v in m.items()
        if k not in ("role", "content", "name", "tool_calls", "tool_call_id", "function_call")
    } or None
    name = m.get("name")
    if name is not None and not isinstance(name, str):
        raise BadRequest(f"'{where}.name' must be a string.", param=f"{where}.name")
    if role == "function":
        # a legacy function result: it answers the latest legacy call
        if name is None:
            raise BadRequest(f"'{where}.name' is required for function messages.", param=where)
        answers = legacy[-1] if legacy else f"call_{name}"
        result: str | list[Part] = (
            content if isinstance(content, str | None) else _decode_parts(content, where, role)
        ) or ""
        return Message("tool", [ToolResultPart(answers, result)], name)
    if role == "tool":
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(
                f"'{where}.tool_call_id' is required for tool messages.",
                param=f"{where}.tool_call_id",
            )
        result = content if isinstance(content, str) else _decode_parts(content, where, role)
        return Message("tool", [ToolResultPart(call_id, result)], name, extra)
    if role == "assistant":
        parts: list[Part] = []
        reasoning = m.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            parts.append(ReasoningPart(reasoning))
            if extra:
                extra.pop("reasoning_content", None)
                extra = extra or None
        if content is not None:
            parts.extend(_decode_parts(content, where, role))
        calls = m.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise BadRequest(
                    f"'{where}.tool_calls' must be an array.", param=f"{where}.tool_calls"
                )
            parts.extend(
                _decode_tool_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(calls)
            )
        legacy_call = m.get("function_call")
        if isinstance(legacy_call, dict):
            legacy.append(f"call_legacy_{len(legacy)}")
            call = {"id": legacy[-1], "function": legacy_call}
            parts.append(_decode_tool_call(call, f"{where}.function_call"))
        if (
            content is None
            and calls is None
            and legacy_call is None
            and not (extra and ("refusal" in extra or "audio" in extra))
        ):
            raise BadRequest(
                f"'{where}.content' is required unless 'tool_calls' is given.",
                param=f"{where}.content",
            )
        return Message("assistant", parts, name, extra)
    if content is None:
        raise BadRequest(f"'{where}.content' is required.", param=f"{where}.content")
    return Message(role, _decode_parts(content, where, role), name, extra)


def _decode_parts(content: Any, where: str, role: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise BadRequest(
            f"'{where}.content' must be a string or an array of content parts.",
            param=f"{where}.content",
        )
    parts: list[Part] = []
    for j, p in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(p, dict) or not isinstance(p.get("type"), str):
            raise BadRequest(f"'{at}' must be an object with a 'type'.", param=at)
        kind = p["type"]
        if kind == "text":
            if not isinstance(p.get("text"), str):
                raise BadRequest(f"'{at}.text' must be a string.", param=f"{at}.text")
            rest = {k: v for k, v in p.items() if k not in ("type", "text")} or None
            parts.append(TextPart(p["text"], rest))
        elif kind == "image_url":
            image = p.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise BadRequest(
                    f"'{at}.image_url.url' must be a string.", param=f"{at}.image_url.url"
                )
            parts.append(image_from_url(image["url"], image.get("detail")))
        else:
            # audio, files, refusals, vLLM's video_url / audio_url, kinds yet to come: the
            # upstream decides; only an OpenAI-compatible one receives them
            parts.append(OpaquePart(PROTOCOL, p))
    return parts


def image_from_url(url: str, detail: Any) -> ImagePart:
    """An image part from a URL; a base64 ``data:`` URL becomes inline data."""
    if url.startswith("data:") and ";base64," in url:
        head, _, data = url.partition(";base64,")
        return ImagePart(
            data=data,
            media_type=head[5:] or None,
            detail=detail if isinstance(detail, str) else None,
        )
    return ImagePart(url=url, detail=detail if isinstance(detail, str) else None)


def _decode_tool_call(c: Any, at: str) -> ToolCallPart:
    fn = c.get("function") if isinstance(c, dict) else None
    if (
        not isinstance(fn, dict)
        or not isinstance(fn.get("name"), str)
        or not isinstance(c.get("id"), str)
    ):
        raise BadRequest(f"'{at}' must have an 'id' and a 'function' with a 'name'.", param=at)
    args = fn.get("arguments", "{}")
    if isinstance(args, dict):
        args = orjson.dumps(args).decode()  # an object, as some clients send: its JSON text
    elif not isinstance(args, str):
        raise BadRequest(
            f"'{at}.function.arguments' must be a JSON string.", param=f"{at}.function.arguments"
        )
    return ToolCallPart(c["id"], fn["name"], args)


def _decode_tools(tools: Any) -> list[Tool] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array.", param="tools")
    out = []
    for i, t in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(t, dict):
            raise BadRequest(f"'{at}' must be an object.", param=at)
        kind = t.get("type", "function")
        if not isinstance(kind, str):
            raise BadRequest(f"'{at}.type' must be a string.", param=f"{at}.type")
        if kind != "function":
            # Other tool types (custom, ...) only an OpenAI upstream understands: keep them whole.
            out.append(Tool(name=str(t.get("name", t.get("type"))), extra={"tool": t}))
            continue
        fn = t.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise BadRequest(f"'{at}.function.name' is required.", param=f"{at}.function.name")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise BadRequest(
                f"'{at}.function.parameters' must be an object.", param=f"{at}.function.parameters"
            )
        rest = {
            k: v for k, v in fn.items() if k not in ("name", "description", "parameters", "strict")
        } or None
        out.append(Tool(fn["name"], fn.get("description"), params, fn.get("strict"), rest))
    return out


def _decode_tool_choice(choice: Any) -> ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ToolChoice(choice)
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("function", "custom"):
        fn = choice.get(kind)
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return ToolChoice("tool", fn["name"])
    elif kind == "allowed_tools":
        allowed = choice.get("allowed_tools")
        if isinstance(allowed, dict) and allowed.get("mode") in ("auto", "required"):
            return ToolChoice(allowed["mode"], allowed=allowed_names(allowed.get("tools")))
    elif isinstance(kind, str):
        return ToolChoice("auto")  # a kind yet to come: relayed as it is, "auto" elsewhere
    raise BadRequest(
        '\'tool_choice\' must be "none", "auto", "required" or {"type": "function", '
        '"function": {"name": ...}} (or "custom" or "allowed_tools").',
        param="tool_choice",
    )


def allowed_names(tools: Any) -> list[str]:
    """The tool names of an ``allowed_tools`` list (Chat and Responses shapes alike)."""
    names = []
    for t in tools if isinstance(tools, list) else ():
        if isinstance(t, dict):
            inner = t.get(t.get("type") or "function")
            name = inner.get("name") if isinstance(inner, dict) else t.get("name")
            if isinstance(name, str):
                names.append(name)
    return names


# --- requests: canonical -> wire ----------------------------------------------------------------


def encode_request(
    req: ChatRequest, model: str, *, max_tokens_field: str = "max_tokens"
) -> dict[str, JSON]:
    """The request body for an OpenAI-compatible upstream.

    A request that arrived in this protocol and was not changed on the way is sent as it came,
    with only the model replaced; otherwise it is encoded from the canonical fields.
    """
    if req.wire is not None and req.protocol == PROTOCOL:
        return {**req.wire, "model": model}
    same = req.protocol == PROTOCOL
    body: dict[str, JSON] = {
        "model": model,
        "messages": [
            m
            for msg in (req.messages if same else _fold_system(req.messages))
            for m in _encode_message(msg, same)
        ],
    }
    if req.stream:
        body["stream"] = True
        if req.include_usage:
            body["stream_options"] = {"include_usage": True}
    if req.tools:
        body["tools"] = [
            _encode_tool(t, same) for t in req.tools if same or not (t.extra and "tool" in t.extra)
        ]
    if req.tool_choice is not None:
        tc = req.tool_choice
        body["tool_choice"] = encode_tool_choice(tc)
    _put(body, "parallel_tool_calls", req.parallel_tool_calls)
    if req.max_tokens is not None and not (
        same and req.extra and "max_completion_tokens" in req.extra
    ):
        body[max_tokens_field] = req.max_tokens
    _put(body, "temperature", req.temperature)
    _put(body, "top_p", req.top_p)
    if same:
        _put(body, "top_k", req.top_k)
    _put(body, "stop", req.stop)
    _put(body, "seed", req.seed)
    _put(body, "response_format", req.response_format)
    _put(body, "reasoning_effort", reasoning_effort(req))
    _put(body, "user", req.user)
    if same:
        _put(body, "metadata", req.metadata)
        if req.extra:
            body.update(req.extra)
    else:
        dropped = [k for k in req.extra or () if k not in _TRANSLATED]
        dropped += [k for k in ("top_k", "metadata") if getattr(req, k) is not None]
        if dropped:
            log.debug(
                "dropping %s fields the OpenAI format lacks: %s", req.protocol, sorted(dropped)
            )
    return body


def reasoning_effort(req: ChatRequest) -> str | None:
    """The ``reasoning_effort`` for what ``req`` asks: its effort, or its thinking budget's."""
    if req.reasoning_effort is not None or req.reasoning_budget is None:
        return req.reasoning_effort
    return next((e for bound, e in _BUDGET_EFFORTS if req.reasoning_budget <= bound), "xhigh")


def _fold_system(messages: list[Message]) -> list[Message]:
    """Another protocol's instructions as one leading system message: the Anthropic system
    prompt and the system messages inside its history (many chat templates of
    OpenAI-compatible servers refuse a system message after the first turn)."""
    system = [m for m in messages if m.role in ("system", "developer")]
    if len(system) < 2 and (not system or messages[0] is system[0]):
        return messages
    text = "\n\n".join(m.text() for m in system)
    rest = [m for m in messages if m.role not in ("system", "developer")]
    return [Message("system", [TextPart(text)]), *rest]


def encode_tool_choice(tc: ToolChoice) -> JSON:
    """A canonical tool choice as Chat Completions' ``tool_choice``."""
    if tc.mode == "tool":
        return {"type": "function", "function": {"name": tc.name}}
    if tc.allowed is not None and tc.mode in ("auto", "required"):
        tools = [{"type": "function", "function": {"name": n}} for n in tc.allowed]
        return {"type": "allowed_tools", "allowed_tools": {"mode": tc.mode, "tools": tools}}
    return tc.mode


def encode_messages(messages: list[Message]) -> list[dict[str, JSON]]:
    """Canonical messages as a Chat Completions ``messages`` array, every field kept."""
    return [m for msg in messages for m in _encode_message(msg, True)]


def _put(body: dict[str, JSON], key: str, value: Any) -> None:
    if value is not None:
        body[key] = value


def _encode_tool(t: Tool, same: bool) -> dict[str, JSON]:
    if t.extra and "tool" in t.extra:
        tool: dict[str, JSON] = t.extra["tool"]
        return tool
    fn: dict[str, JSON] = {"name": t.name}
    _put(fn, "description", t.description)
    _put(fn, "parameters", t.parameters)
    _put(fn, "strict", t.strict)
    if same and t.extra:
        fn.update(t.extra)
    return {"type": "function", "function": fn}


def _encode_message(msg: Message, same: bool) -> Iterator[dict[str, JSON]]:
    role = msg.role
    if role == "tool":
        for p in msg.parts:
            if type(p) is ToolResultPart:
                if not same and (p.is_error or p.extra):
                    log.debug("dropping is_error/fields of tool result %s", p.call_id)
                if isinstance(p.content, str):
                    content: JSON = p.content
                elif same:
                    content = _encode_content(p.content, same)
                else:
                    # OpenAI tool messages carry text only
                    if any(type(c) is not TextPart for c in p.content):
                        log.debug("dropping non-text parts of tool result %s", p.call_id)
                    content = p.text()
                out: dict[str, JSON] = {
                    "role": "tool",
                    "tool_call_id": p.call_id,
                    "content": content,
                }
                if same and msg.extra:
                    out.update(msg.extra)
                yield out
        return
    if role == "user" and any(type(p) is ToolResultPart for p in msg.parts):
        # A user turn that carries tool results (as other protocols group them): one tool
        # message per result, then the rest of the turn.
        for p in msg.parts:
            if type(p) is ToolResultPart:
                yield from _encode_message(Message("tool", [p]), same)
        rest: list[Part] = [p for p in msg.parts if type(p) is not ToolResultPart]
        if not rest:
            return
        msg = Message("user", rest, msg.name, msg.extra)
    out = {"role": role}
    if role == "assistant":
        calls = [p for p in msg.parts if type(p) is ToolCallPart]
        body: list[Part] = [
            p for p in msg.parts if type(p) is not ToolCallPart and type(p) is not ReasoningPart
        ]
        out["content"] = _encode_content(body, same) if body else None
        if calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
        reasoning = [p for p in msg.parts if type(p) is ReasoningPart]
        if reasoning and same:
            out["reasoning_content"] = "".join(p.text for p in reasoning)
    else:
        out["content"] = _encode_content(msg.parts, same)
    if msg.name is not None:
        out["name"] = msg.name
    if same and msg.extra:
        out.update(msg.extra)
    yield out


def _dropped_part_fields(extra: dict[str, JSON]) -> None:
    log.debug("dropping text part fields the OpenAI format lacks: %s", sorted(extra))


def _encode_content(parts: list[Part], same: bool) -> str | list[dict[str, JSON]]:
    if len(parts) == 1 and type(parts[0]) is TextPart and not (same and parts[0].extra):
        if parts[0].extra:
            _dropped_part_fields(parts[0].extra)
        return parts[0].text
    out: list[dict[str, JSON]] = []
    for p in parts:
        if type(p) is TextPart:
            item: dict[str, JSON] = {"type": "text", "text": p.text}
            if p.extra:
                if same:
                    item.update(p.extra)
                else:
                    _dropped_part_fields(p.extra)
            out.append(item)
        elif type(p) is ImagePart:
            image: dict[str, JSON] = {"url": p.as_url()}
            _put(image, "detail", p.detail)
            out.append({"type": "image_url", "image_url": image})
        elif type(p) is OpaquePart and p.protocol == PROTOCOL:
            out.append(p.data)
        elif type(p) is OpaquePart and p.data.get("type") in ("image", "document"):
            # an Anthropic Files API image, a PDF document: what the user gave, untranslatable
            source = p.data.get("source")
            kind = source.get("type") if isinstance(source, dict) else None
            raise BadRequest(
                f"An Anthropic '{p.data['type']}' block with a '{kind}' source cannot be sent "
                "to an OpenAI-compatible model: it is relayed only to Anthropic upstreams.",
                param="messages",
            )
        else:
            log.debug("dropping a %s part the OpenAI format cannot carry", type(p).__name__)
    return out


def error_body(err: GatewayError) -> dict[str, JSON]:
    """The OpenAI error object for ``err``."""
    return default_error_body(err)
