"""A scripted OpenAI-compatible upstream for tests, in-process (``aiohttp_server``) or as its own
process (``python tests/fakes/openai_upstream.py PORT``).

What it does is chosen by the last user message:

- ``TOOLS``: two tool calls in one turn (get_weather, get_time), arguments in fragments
- ``STOPTOOLS``: the same, ending with ``finish_reason: "stop"`` (as some servers do)
- a ``response_format`` of type ``json_schema``: :data:`JSON_ANSWER` as the text
- ``BREAK``: two text chunks, then the connection is cut mid-body
- ``HALFFRAME``: one text chunk, then half of the next frame, then the connection is cut
- ``ERRFRAME``: one text chunk, then an ``{"error": ...}`` frame
- ``NOFINISH``: text, then the stream ends with neither a finish reason nor ``[DONE]``
- ``STATUS:<code>``: that HTTP error status with an OpenAI error body (429 adds retry-after)
- ``SLOW:<seconds>``: wait that long before answering
- ``DRIP``: a text chunk every 0.1 s for a minute (to test cancellation)
- ``ROUNDS``: answers with a tool call until three tool results are in the history
- ``CALL name {json}; name2 {json}``: the script of an agent's model. While no tool result
  follows the last user message: "Calling tools." and those tool calls (ids ``call_1``, ...);
  then ``results: <each tool result, joined by " | ">``
- ``LOOP name {json}``: calls that tool every time (an agent that never finishes)
- anything else: ``upstream says: <text>`` in three chunks

``POST /v1/embeddings`` answers fixed vectors (see :func:`vector`) in the asked encoding.

Every request body is recorded (``GET /_requests`` returns them), and so is whether a streaming
handler saw its client go away (``GET /_cancelled``).
"""

from __future__ import annotations

import asyncio
import base64
import struct
import sys
import time
from typing import Any

import orjson
from aiohttp import web

try:
    from fakes import media_upstream
except ImportError:  # run as a script: its own folder is on the path
    import media_upstream

REQUESTS: web.AppKey[list[dict[str, Any]]] = web.AppKey("requests", list)
HEADERS: web.AppKey[list[Any]] = web.AppKey("headers", list)
CANCELLED: web.AppKey[list[str]] = web.AppKey("cancelled", list)
#: The times the upstream's model list was asked for.
MODEL_LISTS: web.AppKey[list[str]] = web.AppKey("model_lists", list)
#: The upstream's own model list.
MODEL_IDS = ["gpt-fake-1", "gpt-fake-2", "other-model"]

TOOL_CALLS = [
    ("call_weather_1", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}']),
    ("call_time_2", "get_time", ['{"tz":', ' "CET"}']),
]


def _last_user(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages", [])):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            return "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


def _script(body: dict[str, Any], text: str) -> tuple[str, list[Any]]:
    """What an agent's scripted model says: (text, [(id, name, [argument fragments])])."""
    messages = body.get("messages", [])
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    results = [m.get("content") for m in messages[last_user + 1 :] if m.get("role") == "tool"]
    if text.startswith("CALL ") and results:
        return "results: " + " | ".join(str(r) for r in results), []
    calls = []
    for n, spec in enumerate(text.split(" ", 1)[1].split(";"), start=1):
        name, _, args = spec.strip().partition(" ")
        args = args or "{}"
        cut = max(1, len(args) // 2)
        calls.append((f"call_{len(results) + n}", name, [args[:cut], args[cut:]]))
    return "Calling tools.", calls


def _chunk(
    model: str, delta: dict[str, Any], finish: str | None = None, usage: Any = None
) -> bytes:
    obj: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000001,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        obj["choices"] = []
        obj["usage"] = usage
    return b"data: " + orjson.dumps(obj) + b"\n\n"


USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
#: The answer to a request with a JSON schema output format.
JSON_ANSWER = '{"city": "Paris", "temperature": 21}'


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[REQUESTS].append(body)
    request.app[HEADERS].append(request.headers.copy())
    text = _last_user(body)
    model = body.get("model", "?")
    if text.startswith("STATUS:"):
        status = int(text.split(":", 1)[1])
        headers = {"retry-after": "7"} if status == 429 else None
        return web.json_response(
            {
                "error": {
                    "message": f"fake upstream refuses with {status}",
                    "type": "x",
                    "param": None,
                    "code": None,
                }
            },
            status=status,
            headers=headers,
        )
    if text.startswith("SLOW:"):
        await asyncio.sleep(float(text.split(":", 1)[1]))
    tool_results = sum(1 for m in body.get("messages", []) if m.get("role") == "tool")
    wants_tools = text in ("TOOLS", "STOPTOOLS") or (text == "ROUNDS" and tool_results < 3)
    if (body.get("response_format") or {}).get("type") == "json_schema":
        text = "JSON"
    if text.startswith(("CALL ", "LOOP ")):
        return await _scripted(request, body, text)
    if not body.get("stream"):
        if wants_tools:
            calls = (
                TOOL_CALLS
                if text in ("TOOLS", "STOPTOOLS")
                else [(f"call_round_{tool_results}", "step", ['{"n": ', str(tool_results), "}"])]
            )
            message = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": cid,
                        "type": "function",
                        "function": {"name": name, "arguments": "".join(args)},
                    }
                    for cid, name, args in calls
                ],
            }
            finish = "stop" if text == "STOPTOOLS" else "tool_calls"
        else:
            say = JSON_ANSWER if text == "JSON" else f"upstream says: {text}"
            message = {"role": "assistant", "content": say, "refusal": None}
            finish = "stop"
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1700000001,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": USAGE,
                "system_fingerprint": "fp_fake",
            }
        )
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    try:
        await resp.write(_chunk(model, {"role": "assistant", "content": ""}))
        if wants_tools:
            calls = (
                TOOL_CALLS
                if text in ("TOOLS", "STOPTOOLS")
                else [(f"call_round_{tool_results}", "step", ['{"n": ', str(tool_results), "}"])]
            )
            for index, (cid, name, args) in enumerate(calls):
                await resp.write(
                    _chunk(
                        model,
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": cid,
                                    "type": "function",
                                    "function": {"name": name, "arguments": ""},
                                }
                            ]
                        },
                    )
                )
                for frag in args:
                    await resp.write(
                        _chunk(
                            model,
                            {"tool_calls": [{"index": index, "function": {"arguments": frag}}]},
                        )
                    )
            await resp.write(_chunk(model, {}, "stop" if text == "STOPTOOLS" else "tool_calls"))
        elif text == "DRIP":
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await resp.write(_chunk(model, {"content": "drip "}))
                await asyncio.sleep(0.1)
        else:
            words = (
                [JSON_ANSWER[:9], JSON_ANSWER[9:]]
                if text == "JSON"
                else ["upstream ", "says: ", text]
            )
            for i, w in enumerate(words):
                await resp.write(_chunk(model, {"content": w}))
                if text == "HALFFRAME":
                    half = _chunk(model, {"content": "cut"})
                    await resp.write(half[: len(half) // 2])
                    await asyncio.sleep(0.05)  # the gateway reads the half on its own
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if text == "BREAK" and i == 1:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if text == "ERRFRAME":
                    await resp.write(
                        b'data: {"error": {"message": "fake upstream exploded", "type": "server_error"}}\n\n'
                    )
                    return resp
            if text == "NOFINISH":
                await resp.write_eof()
                return resp
            await resp.write(_chunk(model, {}, "stop"))
        if include_usage:
            await resp.write(_chunk(model, {}, usage=USAGE))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
    except (asyncio.CancelledError, ConnectionResetError):
        request.app[CANCELLED].append(text)
        raise
    return resp


async def _scripted(request: web.Request, body: dict[str, Any], text: str) -> web.StreamResponse:
    """An agent's model, streamed or not, following the ``CALL``/``LOOP`` script."""
    model = body.get("model", "?")
    say, calls = _script(body, text)
    finish = "tool_calls" if calls else "stop"
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": say, "refusal": None}
        if calls:
            message["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": n, "arguments": "".join(a)}}
                for cid, n, a in calls
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1700000001,
                "model": model,
                "choices": [choice],
                "usage": USAGE,
            }
        )
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    frames = [_chunk(model, {"role": "assistant", "content": ""})]
    words = say.split(" ")
    frames += [
        _chunk(model, {"content": w + (" " if i < len(words) - 1 else "")})
        for i, w in enumerate(words)
    ]
    for index, (cid, name, args) in enumerate(calls):
        opening = {
            "index": index,
            "id": cid,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        frames.append(_chunk(model, {"tool_calls": [opening]}))
        for frag in args:
            frames.append(
                _chunk(model, {"tool_calls": [{"index": index, "function": {"arguments": frag}}]})
            )
    frames.append(_chunk(model, {}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append(_chunk(model, {}, usage=USAGE))
    frames.append(b"data: [DONE]\n\n")
    for frame in frames:
        await resp.write(frame)
    await resp.write_eof()
    return resp


def vector(text: Any, index: int) -> list[float]:
    """The fake's embedding of one input: numbers exact in float32, so both encodings agree."""
    return [float(len(text)), index + 0.5, -1.25, 0.375]


async def embeddings(request: web.Request) -> web.Response:
    """Embeddings in the asked ``encoding_format``; the model ``floats-only`` always answers
    floats (as some OpenAI-compatible servers do)."""
    body = await request.json()
    request.app[REQUESTS].append(body)
    inputs = body["input"]
    if isinstance(inputs, str) or isinstance(inputs[0], int):
        inputs = [inputs]
    encoded = body.get("encoding_format") == "base64" and body["model"] != "floats-only"
    data = []
    for i, text in enumerate(inputs):
        vec: Any = vector(text, i)
        if encoded:
            vec = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vec})
    tokens = sum(len(t) if isinstance(t, list) else len(t.split()) for t in inputs)
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def recorded(request: web.Request) -> web.Response:
    return web.json_response(request.app[REQUESTS])


async def cancelled(request: web.Request) -> web.Response:
    return web.json_response(request.app[CANCELLED])


async def model_list(request: web.Request) -> web.Response:
    request.app[MODEL_LISTS].append(request.path_qs)
    models = [{"id": m, "type": "model", "object": "model"} for m in MODEL_IDS]
    return web.json_response({"object": "list", "data": models, "has_more": False})


async def completions(request: web.Request) -> web.StreamResponse:
    """Legacy completions: the prompt continued with `` and so on.``, with logprobs (as only
    this endpoint has them in this shape), streamed in two chunks or whole."""
    body = await request.json()
    request.app[REQUESTS].append(body)
    model = body.get("model", "?")
    logprobs = {"tokens": [" and"], "token_logprobs": [-0.5], "top_logprobs": None}

    def obj(text: str, finish: str | None) -> dict[str, Any]:
        choice = {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}
        return {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": 1700000001,
            "model": model,
            "choices": [choice],
        }

    if not body.get("stream"):
        return web.json_response({**obj(" and so on.", "stop"), "usage": USAGE})
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for text, finish in ((" and", None), (" so on.", None), ("", "stop")):
        await resp.write(b"data: " + orjson.dumps(obj(text, finish)) + b"\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {**obj("", None), "choices": [], "usage": USAGE}
        await resp.write(b"data: " + orjson.dumps(usage) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


def make_app() -> web.Application:
    app = web.Application()
    app[MODEL_LISTS] = []
    app[REQUESTS] = []
    app[HEADERS] = []
    app[CANCELLED] = []
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/completions", completions)
    media_upstream.add_routes(app)
    app.router.add_get("/v1/models", model_list)
    app.router.add_get("/_requests", recorded)
    app.router.add_get("/_cancelled", cancelled)
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=lambda *_: print("ready", flush=True),
        handler_cancellation=True,
    )
