"""OpenAI's legacy Completions (``POST /v1/completions``) on the wire, both ways.

Requests are a ``prompt`` to continue. An OpenAI-compatible upstream gets them as they came
(its ``/completions``, the model replaced) and its answer is relayed; any other upstream gets
the prompt as one user message, and its answer is written back as ``text_completion``
objects. Fields only ``/completions`` has (``echo``, ``suffix``, ``best_of``, ``logprobs``,
several prompts) are refused by encoders that cannot honour them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway import (
    JSON,
    BadRequest,
    ChatRequest,
    ChatResponse,
    Error,
    Event,
    Finish,
    Message,
    Raw,
    Start,
    TextDelta,
    TextPart,
    UpstreamError,
    Usage,
    UsageEvent,
    new_id,
)
from gateway.protocols.openai.chat import FINISH_IN, error_body
from gateway.protocols.openai.chat_response import decode_usage, encode_usage
from gateway.protocols.openai.chat_stream import DONE

#: The protocol name of Completions requests (an OpenAI-compatible upstream relays them).
COMPLETIONS = "openai-completions"
#: Request fields the canonical model holds; every other field is kept in ``extra``.
_KNOWN = frozenset(
    {
        "model",
        "prompt",
        "stream",
        "stream_options",
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "user",
    }
)
_FINISH_OUT = {"stop": "stop", "stop_sequence": "stop", "length": "length"}


def decode_request(body: Any) -> ChatRequest:
    """Validate and decode a Completions request; the prompt becomes one user message (a
    list of several prompts, or token arrays, stays in ``extra`` for a relay only)."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string.", param="model")
    prompt = body.get("prompt", "")
    extra = {k: v for k, v in body.items() if k not in _KNOWN}
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        if not isinstance(prompt, list):
            raise BadRequest("'prompt' must be a string or an array.", param="prompt")
        extra["prompt"] = prompt
        prompt = ""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is not None and not (
        isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    ):
        raise BadRequest("'stop' must be a string or an array of strings.", param="stop")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, float) and max_tokens.is_integer():
        max_tokens = int(max_tokens)
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
        raise BadRequest("'max_tokens' must be an integer.", param="max_tokens")
    return ChatRequest(
        model=model,
        messages=[Message("user", [TextPart(prompt)])],
        protocol=COMPLETIONS,
        stream=bool(stream),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        stop=stop or None,
        seed=body.get("seed") if isinstance(body.get("seed"), int) else None,
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        extra=extra or None,
        wire=body,
    )


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        raise BadRequest(f"'{key}' must be a number.", param=key)
    return value


def encode_request(req: ChatRequest, model: str) -> dict[str, JSON]:
    """The body for an upstream's ``/completions``: the client's own with the model replaced,
    or, once a filter changed the request, rebuilt with the messages' text as the prompt."""
    if req.wire is not None:
        return {**req.wire, "model": model}
    body: dict[str, JSON] = {"model": model, "prompt": "".join(m.text() for m in req.messages)}
    for key in ("max_tokens", "temperature", "top_p", "stop", "seed", "user"):
        value = getattr(req, key)
        if value is not None:
            body[key] = value
    if req.stream:
        body["stream"] = True
        if req.include_usage:
            body["stream_options"] = {"include_usage": True}
    body.update(req.extra or {})
    return body


def decode_response(obj: Any) -> ChatResponse:
    """An upstream's ``text_completion`` as a canonical response (first choice)."""
    try:
        choice = obj["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise UpstreamError("the upstream's answer has no choices") from None
    return ChatResponse(
        id=obj.get("id") or new_id("cmpl-"),
        model=obj.get("model") or "",
        message=Message("assistant", [TextPart(choice.get("text") or "")]),
        finish_reason=FINISH_IN.get(choice.get("finish_reason") or "stop", "stop"),
        usage=decode_usage(obj.get("usage")),
        created=obj.get("created") or int(time.time()),
    )


def encode_response(resp: ChatResponse, model: str) -> dict[str, JSON]:
    """A canonical response as a ``text_completion`` object."""
    out: dict[str, JSON] = {
        "id": resp.id if resp.id.startswith("cmpl-") else "cmpl-" + resp.id,
        "object": "text_completion",
        "created": resp.created or int(time.time()),
        "model": model,  # the name asked for, not the upstream's (resp.model)
        "choices": [
            {
                "text": resp.message.text(),
                "index": 0,
                "logprobs": None,
                "finish_reason": _FINISH_OUT.get(resp.finish_reason, "stop"),
            }
        ],
    }
    if resp.usage is not None:
        out["usage"] = encode_usage(resp.usage)
    return out


class StreamParser:
    """Turns streamed ``text_completion`` objects into canonical events (choice 0)."""

    __slots__ = ("done", "finished", "started")

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self.done = False  # the ``[DONE]`` frame came

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self.started:
            self.started = True
            out.append(Start(chunk.get("id"), chunk.get("model"), chunk.get("created")))
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            if choice.get("text"):
                out.append(TextDelta(choice["text"]))
            reason = choice.get("finish_reason")
            if reason:
                self.finished = True
                out.append(Finish(FINISH_IN.get(reason, "stop")))
        usage = decode_usage(chunk.get("usage"))
        if usage is not None:
            out.append(UsageEvent(usage))
        return out


class ChunkEncoder:
    """Encodes canonical events as streamed ``text_completion`` objects, then the usage chunk
    (when ``stream_options.include_usage`` asked) and ``[DONE]``; a failure is an error frame
    and no ``[DONE]``. Relayed bytes of a ``/completions`` upstream pass unchanged (but for the
    model's name: the one asked for)."""

    __slots__ = ("_created", "_failed", "_handlers", "_id", "_model", "_relayed", "_usage")

    def __init__(self, model: str, include_usage: bool = False) -> None:
        self._model = model
        self._id = new_id("cmpl-")
        self._created = int(time.time())
        self._usage: Usage | None = None
        self._failed = False
        self._relayed = False
        self._handlers: dict[type, Callable[[Any], bytes]] = {
            Start: self._start,
            TextDelta: lambda ev: self._chunk(ev.text, None),
            Finish: lambda ev: self._chunk("", _FINISH_OUT.get(ev.reason, "stop")),
            UsageEvent: self._usage_event,
            Error: self._error,
            Raw: self._raw,
        }
        if not include_usage:
            self._handlers[UsageEvent] = lambda ev: b""

    def encode(self, ev: Event) -> bytes:
        if ev.relayed:
            return b""
        handler = self._handlers.get(type(ev))
        return handler(ev) if handler is not None else b""

    def end(self) -> bytes:
        if self._failed or self._relayed:
            return b""
        tail = b""
        if self._usage is not None:
            obj = self._object([])
            obj["usage"] = encode_usage(self._usage)
            tail = b"data: " + orjson.dumps(obj) + b"\n\n"
        return tail + DONE

    def _object(self, choices: list[JSON]) -> dict[str, JSON]:
        return {
            "id": self._id,
            "object": "text_completion",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }

    def _chunk(self, text: str, finish: str | None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps(self._object([choice])) + b"\n\n"

    def _start(self, ev: Start) -> bytes:
        if ev.id:
            self._id = ev.id if ev.id.startswith("cmpl-") else "cmpl-" + ev.id
        return b""

    def _usage_event(self, ev: UsageEvent) -> bytes:
        self._usage = ev.usage
        return b""

    def _error(self, ev: Error) -> bytes:
        self._failed = True
        return b"data: " + orjson.dumps(error_body(ev.error)) + b"\n\n"

    def _raw(self, ev: Raw) -> bytes:
        if ev.protocol != COMPLETIONS:
            return b""
        self._relayed = True
        return ev.data
