"""A scripted model for real agent clients (Claude Code, the AI SDK, ...): one upstream that
speaks both Anthropic Messages (``/v1/messages``) and Chat Completions
(``/v1/chat/completions``), streamed and not, and plays one tool loop whatever the client's
system prompt and tools are:

- no tool result in the conversation yet, and a tool named in :data:`READ_TOOLS` offered: the
  model calls it on the path written after ``read `` in the last user message (after some
  reasoning, when the client asked for reasoning);
- once a tool result is in: ``The file says: <the result's text>``;
- a JSON output format (OpenAI ``response_format``, Anthropic ``output_config.format``, or a
  forced tool): :data:`JSON_ANSWER`;
- otherwise: ``ok`` (titles, summaries and the other side requests clients make).

Every request is recorded (``REQUESTS``), with the headers (``HEADERS``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from fakes.anthropic_upstream import thinking_continuity

REQUESTS: web.AppKey[list[dict[str, Any]]] = web.AppKey("agent_requests", list)
HEADERS: web.AppKey[list[Any]] = web.AppKey("agent_headers", list)
#: Tools the script calls to read the file (Claude Code's ``Read``, the tests' ``read_file``).
READ_TOOLS = ("Read", "read_file")
JSON_ANSWER = '{"city": "Paris", "temperature": 21}'
THOUGHT = "The user wants the file read."
SIGNATURE = "sig-agent"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    out = []
    for block in content or ():
        if isinstance(block, dict):
            if block.get("type") in ("text", "input_text"):
                out.append(block.get("text", ""))
            elif block.get("type") == "tool_result":
                out.append(_text(block.get("content")))
    return "".join(out)


def plan(messages: list[dict[str, Any]], tools: list[str], wants_json: bool) -> dict[str, Any]:
    """What the model answers: ``{"text": ...}`` or ``{"call": (tool, {input})}``."""
    if wants_json:
        return {"text": JSON_ANSWER}
    results = [
        _text(m.get("content")) if m.get("role") == "tool" else _text([b])
        for m in messages
        for b in (m.get("content") if isinstance(m.get("content"), list) else [None])
        if m.get("role") == "tool" or (isinstance(b, dict) and b.get("type") == "tool_result")
    ]
    if results:
        return {"text": "The file says: " + results[-1].strip()}
    users = [m for m in messages if m.get("role") == "user"]
    match = re.search(r"read (\S+)", _text(users[-1].get("content")) if users else "")
    tool = next((t for t in READ_TOOLS if t in tools), None)
    if match and tool:
        key = "file_path" if tool == "Read" else "path"
        return {"call": (tool, {key: match.group(1).rstrip(".")})}
    return {"text": "ok"}


# --- Anthropic Messages ---------------------------------------------------------------------------


def _frame(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


async def messages(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[REQUESTS].append(body)
    request.app[HEADERS].append(request.headers.copy())
    problem = thinking_continuity(body)
    if problem:
        error = {"type": "invalid_request_error", "message": problem}
        return web.json_response({"type": "error", "error": error}, status=400)
    tools = [t.get("name") for t in body.get("tools") or ()]
    choice = body.get("tool_choice") or {}
    forced = choice.get("type") == "tool"
    wants_json = bool((body.get("output_config") or {}).get("format")) or forced
    step = plan(body.get("messages") or [], tools, wants_json)
    thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    blocks: list[dict[str, Any]] = []
    if thinking and "call" in step:
        blocks.append({"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE})
    if forced:
        step = {"call": (choice["name"], orjson.loads(JSON_ANSWER))}
    if "call" in step:
        name, args = step["call"]
        blocks.append(
            {
                "type": "tool_use",
                "id": f"toolu_{len(request.app[REQUESTS])}",
                "name": name,
                "input": args,
            }
        )
        reason = "tool_use"
    else:
        blocks.append({"type": "text", "text": step["text"], "citations": None})
        reason = "end_turn"
    usage = {
        "input_tokens": 20,
        "output_tokens": 5,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    message = {
        "id": f"msg_agent_{len(request.app[REQUESTS])}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": blocks,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return web.json_response(message)
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    start = {**message, "content": [], "stop_reason": None}
    await resp.write(_frame({"type": "message_start", "message": start}))
    for index, block in enumerate(blocks):
        kind = block["type"]
        if kind == "tool_use":
            opening = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()}
            ]
        elif kind == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": block["thinking"]},
                {"type": "signature_delta", "signature": block["signature"]},
            ]
        else:
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": block["text"]}]
        await resp.write(
            _frame({"type": "content_block_start", "index": index, "content_block": opening})
        )
        for delta in deltas:
            await resp.write(
                _frame({"type": "content_block_delta", "index": index, "delta": delta})
            )
        await resp.write(_frame({"type": "content_block_stop", "index": index}))
    await resp.write(
        _frame(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": {"output_tokens": 5},
            }
        )
    )
    await resp.write(_frame({"type": "message_stop"}))
    await resp.write_eof()
    return resp


# --- Chat Completions ---------------------------------------------------------------------------


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[REQUESTS].append(body)
    request.app[HEADERS].append(request.headers.copy())
    tools = [(t.get("function") or {}).get("name") for t in body.get("tools") or ()]
    wants_json = (body.get("response_format") or {}).get("type") == "json_schema"
    step = plan(body.get("messages") or [], tools, wants_json)
    reasoning = THOUGHT if body.get("reasoning_effort") and "call" in step else None
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if "call" in step:
        name, args = step["call"]
        call_id = f"call_{len(request.app[REQUESTS])}"
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": orjson.dumps(args).decode()},
            }
        ]
        finish = "tool_calls"
    else:
        message["content"] = step["text"]
        finish = "stop"
    usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    head = {
        "id": f"chatcmpl-agent{len(request.app[REQUESTS])}",
        "created": 1700000001,
        "model": body.get("model"),
    }
    if not body.get("stream"):
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return web.json_response(
            {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        )
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)

    async def chunk(delta: dict[str, Any], reason: str | None = None, **more: Any) -> None:
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]
        obj = {**head, "object": "chat.completion.chunk", "choices": choices, **more}
        await resp.write(b"data: " + orjson.dumps(obj) + b"\n\n")

    await chunk({"role": "assistant", "content": ""})
    if reasoning:
        await chunk({"reasoning_content": reasoning})
    for i, call in enumerate(message.get("tool_calls") or ()):
        await chunk({"tool_calls": [{"index": i, **call}]})
    if message["content"]:
        await chunk({"content": message["content"]})
    await chunk({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        obj = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        await resp.write(b"data: " + orjson.dumps(obj) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


def make_app() -> web.Application:
    app = web.Application()
    app[REQUESTS] = []
    app[HEADERS] = []
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/chat/completions", chat)
    return app
