"""A fault-injecting model upstream: a real aiohttp server, in a thread of its own, that speaks
OpenAI chat completions and Anthropic Messages and fails on demand.

Each backend of a gateway under test gets its own name in the URL path
(``http://127.0.0.1:<port>/<name>/v1`` for the openai kind, ``.../<name>`` for anthropic;
``https://`` when it is made with a TLS context: how hosted APIs are reached), and a
test scripts what that name does with its next requests (:meth:`FaultUpstream.script`):

- ``ok``: the answer :data:`ANSWER`, streamed one word a frame when asked to stream
- ``429`` (with ``retry-after: 1``), ``429-bare`` (without), ``500``, ``503``: that status
- ``reset``: the request is read, then the connection is closed before any byte of an answer
- ``hang``: no response at all (until the gateway gives up and closes)
- ``slow-first``: the stream's first frame (the role) at once, its first content after 5 s
- ``cut``: three words of a stream (half a whole answer), then the connection is cut
- ``stall``: three words of a stream (half a whole answer), then silence
- ``malformed``: three words, then a frame of broken JSON carrying ``"finish_reason":null``
  (a whole answer: broken JSON)
- ``malformed-at-once``: as ``malformed``, the frames up to the broken one sent in one write (so
  the gateway reads the failure together with the content before it)
- ``no-done``: the whole stream, finish reason and usage included, but no ``data: [DONE]``
- ``ctx400``, ``policy400``: a context-length or content-policy 400 in the provider's words
- ``reject-prefill``: 400 when the last message is the assistant's (a prefill), else ``ok``

A request with ``tools`` is answered (OpenAI only) with one ``get_weather`` call, its arguments
streamed in fragments (:data:`TOOL_ARGUMENTS`). An answer to a request ending with an
assistant message continues :data:`ANSWER` from that
prefill (as a provider does), so a gateway that continues a cut stream can be checked to give the
client the whole answer exactly once. Every request's JSON body is kept per name.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from support.threaded import ThreadedServer

ANSWER = "The quick brown fox jumps over the lazy dog."
#: The words of a stream, each with the space before it.
WORDS = [w if i == 0 else " " + w for i, w in enumerate(ANSWER.split(" "))]


#: A tool call's arguments, in the fragments a stream sends them (requests with ``tools``).
TOOL_ARGUMENTS = ['{"ci', 'ty": "Pa', 'ris"', "}"]


def usage_of(name: str) -> int:
    """The input token count ``name`` reports (distinct per name: usage shows who answered)."""
    return 100 + sum(map(ord, name)) % 900


class FaultUpstream(ThreadedServer):
    """The server; :meth:`running` starts it in a thread and stops it at the end."""

    what = "the fault upstream"

    def __init__(self, tls: ssl.SSLContext | None = None, ca_file: Path | None = None) -> None:
        super().__init__()
        #: Served over TLS with this context (``https://`` URLs), or plain HTTP.
        self.tls = tls
        self.scheme = "https" if tls is not None else "http"
        #: What a backend's TOML table says to trust the server's certificate (``ca_file``,
        #: the CA that signed it), when it is served over TLS.
        self.trust = f'ca_file = "{ca_file}"' if tls is not None and ca_file is not None else ""
        self.requests: dict[str, list[dict[str, Any]]] = {}
        self._scripts: dict[str, list[str]] = {}
        self._cycles: dict[str, list[str]] = {}

    # -- what tests use

    def openai_url(self, name: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{name}/v1"

    def anthropic_url(self, name: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{name}"

    def script(self, name: str, *faults: str, cycle: bool = False) -> None:
        """What ``name`` does with its next requests, in order (then ``ok``); with ``cycle``,
        the faults repeat forever."""
        self.requests[name] = []
        if cycle:
            self._cycles[name] = list(faults)
            self._scripts.pop(name, None)
        else:
            self._scripts[name] = list(faults)
            self._cycles.pop(name, None)

    def seen(self, name: str) -> list[dict[str, Any]]:
        """The JSON bodies ``name`` received."""
        return self.requests.get(name, [])

    # -- the server

    async def _start(self) -> Callable[[], Awaitable[None]]:
        app = web.Application()
        app.router.add_post("/{name}/v1/chat/completions", self._openai)
        app.router.add_post("/{name}/v1/messages", self._anthropic)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner.cleanup

    def _next(self, name: str) -> str:
        cycle = self._cycles.get(name)
        if cycle:
            fault = cycle.pop(0)
            cycle.append(fault)
            return fault
        script = self._scripts.get(name)
        return script.pop(0) if script else "ok"

    async def _begin(self, request: web.Request) -> tuple[str, dict[str, Any], str, str]:
        name = request.match_info["name"]
        body = await request.json()
        self.requests.setdefault(name, []).append(body)
        fault = self._next(name)
        prefill = _prefill(body.get("messages") or [])
        if fault == "reject-prefill":
            fault = "prefill400" if prefill is not None else "ok"
        rest = ANSWER[len(prefill) :] if prefill and ANSWER.startswith(prefill) else ANSWER
        if prefill is not None and not ANSWER.startswith(prefill):
            rest = f"[prefill {prefill!r} is not a prefix of the answer]"
        return name, body, fault, rest

    async def _status(self, request: web.Request, fault: str, anthropic: bool) -> web.Response:
        """The error answers; ``reset`` and ``hang`` too."""
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if fault == "hang":
            await asyncio.Event().wait()
        status, message, code, headers = _ERRORS[fault]
        if anthropic:
            kind = {429: "rate_limit_error", 500: "api_error", 503: "overloaded_error"}
            body: dict[str, Any] = {
                "type": "error",
                "error": {"type": kind.get(status, "invalid_request_error"), "message": message},
            }
        else:
            body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
        return web.json_response(body, status=status, headers=headers)

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        name, body, fault, rest = await self._begin(request)
        if fault in _ERRORS or fault in ("reset", "hang"):
            return await self._status(request, fault, anthropic=False)
        model = body["model"]
        words = _words(rest)
        usage = {
            "prompt_tokens": usage_of(name),
            "completion_tokens": len(words),
            "total_tokens": usage_of(name) + len(words),
        }
        if not body.get("stream"):
            return await _whole(
                request,
                fault,
                {
                    "id": f"chatcmpl-{name}",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": rest},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
            )

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            obj = {
                "id": f"chatcmpl-{name}",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

        frames = [chunk({"role": "assistant", "content": ""})]
        finish = "stop"
        if body.get("tools"):
            # A tool call, its arguments in fragments: "cut" falls in the middle of the call.
            call = {"index": 0, "id": f"call_{name}", "type": "function"}
            frames.append(
                chunk(
                    {"tool_calls": [{**call, "function": {"name": "get_weather", "arguments": ""}}]}
                )
            )
            frames += [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
                for part in TOOL_ARGUMENTS
            ]
            finish = "tool_calls"
        else:
            frames += [chunk({"content": w}) for w in words]
        frames.append(chunk({}, finish))
        frames.append(
            b"data: "
            + json.dumps(
                {
                    "id": f"chatcmpl-{name}",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [],
                    "usage": usage,
                },
                separators=(",", ":"),
            ).encode()
            + b"\n\n"
        )
        frames.append(b"data: [DONE]\n\n")
        broken = b'data: {"id":"x","choices":[{"index":0,"delta":{"content":" oops"},"finish_reason":null}]\n\n'
        return await _stream(request, frames, fault, broken, content_from=1)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        name, body, fault, rest = await self._begin(request)
        if fault in _ERRORS or fault in ("reset", "hang"):
            return await self._status(request, fault, anthropic=True)
        model = body["model"]
        words = _words(rest)
        usage = {"input_tokens": usage_of(name), "output_tokens": len(words)}
        message = {
            "id": f"msg_{name}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": rest}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return await _whole(request, fault, message)

        def event(kind: str, data: dict[str, Any]) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": usage_of(name), "output_tokens": 1},
        }
        frames = [event("message_start", {"message": start})]
        frames.append(
            event(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
        )
        frames += [
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}})
            for w in words
        ]
        frames.append(event("content_block_stop", {"index": 0}))
        frames.append(
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(words)},
                },
            )
        )
        frames.append(event("message_stop", {}))
        broken = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0\n\n'
        return await _stream(request, frames, fault, broken, content_from=2)


_ERRORS: dict[str, tuple[int, str, str | None, dict[str, str]]] = {
    "429": (429, "Rate limit reached; retry shortly.", "rate_limit_exceeded", {"retry-after": "1"}),
    "429-bare": (429, "Rate limit reached.", "rate_limit_exceeded", {}),
    "500": (500, "The server had an error while processing your request.", None, {}),
    "503": (503, "The engine is currently overloaded.", None, {}),
    "ctx400": (
        400,
        "This model's maximum context length is 8192 tokens. However, your messages resulted "
        "in 9000 tokens. Please reduce the length of the messages.",
        "context_length_exceeded",
        {},
    ),
    "policy400": (
        400,
        "Your request was rejected as a result of our safety system: it may contain content "
        "that is not allowed.",
        "content_policy_violation",
        {},
    ),
    "prefill400": (
        400,
        "This model does not support assistant message prefill.",
        "invalid_request_error",
        {},
    ),
}


def _prefill(messages: list[dict[str, Any]]) -> str | None:
    """The text of a trailing assistant message (a prefill), if the request ends with one."""
    if not messages or messages[-1].get("role") != "assistant":
        return None
    content = messages[-1].get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or () if isinstance(part, dict))


def _words(text: str) -> list[str]:
    """``text`` cut into stream deltas: one word each, the space before it included."""
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts) if p or i == 0] or [""]


async def _whole(request: web.Request, fault: str, answer: dict[str, Any]) -> web.StreamResponse:
    """A whole (non-streamed) answer with ``fault`` applied: ``slow-first`` waits before it,
    ``cut`` and ``stall`` send half of the body (then cut or go silent), ``malformed`` sends
    broken JSON; ``no-done`` does not apply (the answer is whole)."""
    if fault == "slow-first":
        await asyncio.sleep(5)
    data = json.dumps(answer).encode()
    if fault.startswith("malformed"):
        data = data[: len(data) // 2]
    if fault not in ("cut", "stall"):
        return web.Response(body=data, content_type="application/json")
    resp = web.StreamResponse(headers={"content-type": "application/json"})
    resp.content_length = len(data)
    await resp.prepare(request)
    await resp.write(data[: len(data) // 2])
    if fault == "stall":
        await asyncio.Event().wait()
    assert request.transport is not None
    request.transport.abort()
    return resp


async def _stream(
    request: web.Request, frames: list[bytes], fault: str, broken: bytes, content_from: int
) -> web.StreamResponse:
    """Write a stream's ``frames``, with ``fault`` applied; content frames start at
    ``content_from``."""
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    cut_at = content_from + 3
    if fault == "malformed-at-once":
        await resp.write(b"".join(frames[:cut_at]) + broken)
        await resp.write_eof()
        return resp
    try:
        for i, frame in enumerate(frames):
            if fault == "slow-first" and i == content_from:
                await asyncio.sleep(5)
            if i == cut_at and fault in ("cut", "stall", "malformed"):
                if fault == "malformed":
                    await resp.write(broken)
                    await resp.write_eof()
                    return resp
                if fault == "stall":
                    await asyncio.Event().wait()
                assert request.transport is not None
                request.transport.abort()
                return resp
            if fault == "no-done" and frame.startswith(b"data: [DONE]"):
                break
            await resp.write(frame)
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return resp
