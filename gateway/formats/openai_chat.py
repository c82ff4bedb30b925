"""OpenAI Chat Completions on the wire, both ways.

The protocol adapter decodes client requests and encodes answers with this module; the
``openai`` backend encodes requests for its upstream and decodes what comes back. Fields with no
canonical counterpart are kept in ``extra`` and written back only to an OpenAI-speaking peer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from gateway.canonical import (
    JSON,
    ChatRequest,
    ChatResponse,
    Error,
    Event,
    Finish,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    Raw,
    ReasoningDelta,
    ReasoningPart,
    Start,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from gateway.errors import BadRequest, GatewayError, UpstreamError, default_error_body
from gateway.streaming import new_id

PROTOCOL = "openai"
log = logging.getLogger(__name__)

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
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
        "user",
        "metadata",
    }
)
_FINISH_IN = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
}
_FINISH_OUT = {
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
    messages = [_decode_message(m, i) for i, m in enumerate(raw_messages)]
    stream = _opt(body, "stream", bool) or False
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise BadRequest("'stream_options' must be an object.", param="stream_options")
        include_usage = bool(options.get("include_usage"))
    max_tokens = _opt(body, "max_tokens", int)
    if max_tokens is None:
        max_tokens = _opt(body, "max_completion_tokens", int)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is not None and not (
        isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    ):
        raise BadRequest("'stop' must be a string or an array of strings.", param="stop")
    metadata = _opt(body, "metadata", dict)
    session = metadata.get("session_id") if metadata else None
    extra = {k: v for k, v in body.items() if k not in _KNOWN} or None
    if options is not None and set(options) - {"include_usage"}:
        extra = {**(extra or {}), "stream_options": options}
    return ChatRequest(
        model=model,
        messages=messages,
        protocol=PROTOCOL,
        stream=stream,
        include_usage=include_usage,
        tools=_decode_tools(body.get("tools")),
        tool_choice=_decode_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_opt(body, "parallel_tool_calls", bool),
        max_tokens=max_tokens,
        temperature=_opt(body, "temperature", float),
        top_p=_opt(body, "top_p", float),
        top_k=_opt(body, "top_k", int),
        stop=stop or None,
        seed=_opt(body, "seed", int),
        response_format=_opt(body, "response_format", dict),
        user=_opt(body, "user", str),
        metadata=metadata,
        session_id=session if isinstance(session, str) and session else None,
        extra=extra,
        wire=body,
    )


_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "an object",
}


def _opt(body: Mapping[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise BadRequest(f"'{key}' must be {_TYPE_NAMES[kind]}.", param=key)
    return value


def _decode_message(m: Any, i: int) -> Message:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise BadRequest(f"'{where}' must be an object.", param=where)
    role = m.get("role")
    if role not in _ROLES:
        hint = " (the 'function' role is deprecated: use 'tool')" if role == "function" else ""
        raise BadRequest(
            f"'{where}.role' must be one of system, developer, user, assistant, tool{hint}.",
            param=f"{where}.role",
        )
    content = m.get("content")
    extra = {
        k: v
        for k, v in m.items()
        if k not in ("role", "content", "name", "tool_calls", "tool_call_id")
    } or None
    name = m.get("name") if isinstance(m.get("name"), str) else None
    if role == "tool":
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(
                f"'{where}.tool_call_id' is required for tool messages.",
                param=f"{where}.tool_call_id",
            )
        result: str | list[Part] = (
            content if isinstance(content, str) else _decode_parts(content, where, role)
        )
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
        if (
            content is None
            and calls is None
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
        elif kind == "image_url" and role == "user":
            image = p.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str):
                raise BadRequest(
                    f"'{at}.image_url.url' must be a string.", param=f"{at}.image_url.url"
                )
            parts.append(image_from_url(url, image.get("detail")))
        elif (kind == "refusal" and role == "assistant") or (
            role == "user" and kind in ("input_audio", "file")
        ):
            parts.append(OpaquePart(PROTOCOL, p))
        else:
            raise BadRequest(
                f"'{at}.type' {kind!r} is not allowed in a {role} message.", param=f"{at}.type"
            )
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
    if not isinstance(args, str):
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
        if t.get("type", "function") != "function":
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
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return ToolChoice("tool", fn["name"])
    raise BadRequest(
        '\'tool_choice\' must be "none", "auto", "required" or {"type": "function", '
        '"function": {"name": ...}}.',
        param="tool_choice",
    )


# --- requests: canonical -> wire ----------------------------------------------------------------


def encode_request(
    req: ChatRequest, model: str, *, max_tokens_field: str = "max_tokens"
) -> dict[str, JSON]:
    """The request body for an OpenAI-compatible upstream.

    A request that arrived in this protocol and was not changed on the way is sent as it came,
    with only the model replaced; otherwise it is encoded from the canonical fields.
    """
    if req.wire is not None and req.protocol == PROTOCOL:
        body = dict(req.wire)
        body["model"] = model
        return body
    same = req.protocol == PROTOCOL
    body: dict[str, JSON] = {
        "model": model,
        "messages": [m for msg in req.messages for m in _encode_message(msg, same)],
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
        body["tool_choice"] = (
            {"type": "function", "function": {"name": tc.name}} if tc.mode == "tool" else tc.mode
        )
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
    _put(body, "user", req.user)
    if same:
        _put(body, "metadata", req.metadata)
        if req.extra:
            body.update(req.extra)
    else:
        dropped = [*(req.extra or ())]
        dropped += [k for k in ("top_k", "metadata") if getattr(req, k) is not None]
        if dropped:
            log.debug(
                "dropping %s fields the OpenAI format lacks: %s", req.protocol, sorted(dropped)
            )
    return body


def encode_messages(messages: list[Message]) -> list[dict[str, JSON]]:
    """Canonical messages as a Chat Completions ``messages`` array, every field kept."""
    return [m for msg in messages for m in _encode_message(msg, True)]


def _put(body: dict[str, JSON], key: str, value: Any) -> None:
    if value is not None:
        body[key] = value


def _encode_tool(t: Tool, same: bool) -> dict[str, JSON]:
    if t.extra and "tool" in t.extra:
        return t.extra["tool"]
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
        rest = [p for p in msg.parts if type(p) is not ToolResultPart]
        if not rest:
            return
        msg = Message("user", rest, msg.name, msg.extra)
    out = {"role": role}
    if role == "assistant":
        calls = [p for p in msg.parts if type(p) is ToolCallPart]
        body = [
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
        t = type(p)
        if t is TextPart:
            item: dict[str, JSON] = {"type": "text", "text": p.text}
            if p.extra:
                if same:
                    item.update(p.extra)
                else:
                    _dropped_part_fields(p.extra)
            out.append(item)
        elif t is ImagePart:
            image: dict[str, JSON] = {"url": p.as_url()}
            _put(image, "detail", p.detail)
            out.append({"type": "image_url", "image_url": image})
        elif t is OpaquePart and p.protocol == PROTOCOL:
            out.append(p.data)
        else:
            log.debug("dropping a %s part the OpenAI format cannot carry", t.__name__)
    return out


# --- responses ----------------------------------------------------------------------------------


def decode_response(obj: Any) -> ChatResponse:
    """A non-streamed upstream answer, as a canonical response (first choice)."""
    try:
        choice = obj["choices"][0]
        msg = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise UpstreamError("the upstream's answer has no choices") from None
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
    extra = {
        k: v for k, v in msg.items() if k in ("refusal", "annotations", "audio") and v is not None
    } or None
    return ChatResponse(
        id=obj.get("id") or new_id("chatcmpl-"),
        model=obj.get("model") or "",
        message=Message("assistant", parts, extra=extra),
        finish_reason=_FINISH_IN.get(choice.get("finish_reason") or "stop", "stop"),
        usage=decode_usage(obj.get("usage")),
        created=obj.get("created") or int(time.time()),
    )


_USAGE_DETAILS = ("prompt_tokens_details", "completion_tokens_details")


def decode_usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    details = {k: v for k, v in u.items() if k in _USAGE_DETAILS and v} or None
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
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
        "model": resp.model or model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _FINISH_OUT.get(resp.finish_reason, "stop"),
            }
        ],
    }
    if resp.usage is not None:
        out["usage"] = encode_usage(resp.usage)
    return out


# --- streams: wire -> events --------------------------------------------------------------------


class StreamParser:
    """Turns ``chat.completion.chunk`` objects into canonical events (choice 0)."""

    __slots__ = ("_open", "finished", "started")

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self._open: dict[int, bool] = {}

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self.started:
            self.started = True
            out.append(Start(chunk.get("id"), chunk.get("model"), chunk.get("created")))
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                out.append(ReasoningDelta(reasoning))
            text = delta.get("content")
            if text:
                out.append(TextDelta(text))
            for call in delta.get("tool_calls") or ():
                index = call.get("index", 0)
                fn = call.get("function") or {}
                if index not in self._open:
                    self._open[index] = True
                    out.append(
                        ToolCallStart(
                            index, call.get("id") or new_id("call_"), fn.get("name") or ""
                        )
                    )
                if fn.get("arguments"):
                    out.append(ToolCallDelta(index, fn["arguments"]))
            reason = choice.get("finish_reason")
            if reason:
                out.extend(ToolCallEnd(i) for i in self._open)
                self._open.clear()
                self.finished = True
                out.append(Finish(_FINISH_IN.get(reason, "stop")))
        usage = chunk.get("usage")
        if usage:
            decoded = decode_usage(usage)
            if decoded is not None:
                out.append(UsageEvent(decoded))
        return out


def stream_error(obj: dict[str, Any]) -> GatewayError:
    """The error an upstream reported inside its stream (``{"error": {...}}``)."""
    err = obj.get("error")
    message = err.get("message") if isinstance(err, dict) else err
    return UpstreamError(f"upstream error: {message or 'unknown error'}")


# --- streams: events -> wire --------------------------------------------------------------------

DONE = b"data: [DONE]\n\n"


def error_body(err: GatewayError) -> dict[str, JSON]:
    """The OpenAI error object for ``err``."""
    return default_error_body(err)


class ChunkEncoder:
    """Encodes canonical events as ``chat.completion.chunk`` SSE frames.

    Every chunk shares one id, created time and model; the first carries the role; a tool call
    opens with its id and name and continues with argument fragments at its index; the finish
    chunk has an empty delta; with ``include_usage`` every chunk has ``"usage": null`` and one
    usage chunk with no choices comes last, before ``[DONE]``. A failure is an error frame and
    no ``[DONE]``: never a normal finish. :class:`Raw` events (same-protocol upstream bytes) are
    written as they are; events they already carry are skipped.
    """

    __slots__ = (
        "_failed",
        "_handlers",
        "_head",
        "_include_usage",
        "_model",
        "_relayed",
        "_role_sent",
        "_usage",
    )

    def __init__(self, model: str, include_usage: bool = False, id: str | None = None) -> None:
        self._model = model
        self._include_usage = include_usage
        self._head: bytes | None = None
        self._role_sent = False
        self._usage: Usage | None = None
        self._relayed = False
        self._failed = False
        self._handlers: dict[type, Callable[[Any], bytes]] = {
            TextDelta: self._text,
            ToolCallStart: self._call_start,
            ToolCallDelta: self._call_delta,
            Finish: self._finish,
            UsageEvent: self._usage_event,
            Error: self._error,
            Raw: self._raw,
            Start: self._start,
            ReasoningDelta: self._reasoning,
        }
        if id is not None:
            self._set_head(id, int(time.time()), model)

    def encode(self, ev: Event) -> bytes:
        """The bytes to send for ``ev`` (possibly none)."""
        if ev.relayed:
            return b""
        handler = self._handlers.get(type(ev))
        return handler(ev) if handler is not None else b""

    def end(self) -> bytes:
        """The trailer after the last event: the usage chunk and ``[DONE]`` (nothing after a
        failure, nor after a relayed stream, which carried its own)."""
        if self._failed or self._relayed:
            return b""
        tail = b""
        if self._include_usage and self._usage is not None:
            tail = self._frame(
                b'[],"usage":' + orjson.dumps(encode_usage(self._usage)), usage=False
            )
        return tail + DONE

    # -- handlers

    def _set_head(self, id: str, created: int, model: str) -> None:
        self._head = (
            b'data: {"id":'
            + orjson.dumps(id)
            + b',"object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b',"choices":'
        )

    def _frame(self, choices: bytes, usage: bool = True) -> bytes:
        if self._head is None:
            self._set_head(new_id("chatcmpl-"), int(time.time()), self._model)
        tail = b',"usage":null}\n\n' if usage and self._include_usage else b"}\n\n"
        return self._head + choices + tail  # type: ignore[operator]

    def _delta(self, delta: dict[str, JSON], finish: str | None = None) -> bytes:
        prefix = b""
        if not self._role_sent:
            self._role_sent = True
            prefix = self._delta({"role": "assistant", "content": "", "refusal": None})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return prefix + self._frame(b"[" + orjson.dumps(choice) + b"]")

    def _start(self, ev: Start) -> bytes:
        if self._head is None:
            self._set_head(
                ev.id or new_id("chatcmpl-"),
                ev.created or int(time.time()),
                ev.model or self._model,
            )
        return b""

    def _text(self, ev: TextDelta) -> bytes:
        return self._delta({"content": ev.text})

    def _reasoning(self, ev: ReasoningDelta) -> bytes:
        return self._delta({"reasoning_content": ev.text}) if ev.text else b""

    def _call_start(self, ev: ToolCallStart) -> bytes:
        return self._delta(
            {
                "tool_calls": [
                    {
                        "index": ev.index,
                        "id": ev.id,
                        "type": "function",
                        "function": {"name": ev.name, "arguments": ""},
                    }
                ]
            }
        )

    def _call_delta(self, ev: ToolCallDelta) -> bytes:
        return self._delta(
            {"tool_calls": [{"index": ev.index, "function": {"arguments": ev.arguments}}]}
        )

    def _finish(self, ev: Finish) -> bytes:
        return self._delta({}, _FINISH_OUT.get(ev.reason, "stop"))

    def _usage_event(self, ev: UsageEvent) -> bytes:
        self._usage = ev.usage
        return b""

    def _error(self, ev: Error) -> bytes:
        self._failed = True
        return b"data: " + orjson.dumps(error_body(ev.error)) + b"\n\n"

    def _raw(self, ev: Raw) -> bytes:
        if ev.protocol != PROTOCOL:
            return b""
        self._relayed = True
        return ev.data
