"""A scripted Anthropic Messages upstream for tests, in-process (``aiohttp_server``) or as its own
process (``python tests/fakes/anthropic_upstream.py PORT``).

It checks requests the way the real API does where translation could go wrong: ``x-api-key`` and
``anthropic-version`` present, ``max_tokens`` given, no fields Anthropic does not know,
``temperature`` at most 1, no empty text blocks, and every ``tool_use`` answered by its
``tool_result`` in the very next (user) message. A request that breaks a rule gets a 400
``invalid_request_error``.

What it answers is chosen by the text of the last user message:

- ``TOOLS``: a text block, then two tool_use blocks in one turn, arguments in fragments
- ``BREAK``: two text deltas, then the connection is cut mid-body
- ``HALFFRAME``: one text delta, then half of the next frame, then the connection is cut
- ``ERRFRAME``: one text delta, then ``event: error`` (overloaded_error)
- ``NOFINISH``: text and message_delta, then the stream ends without message_stop
- ``STATUS:<code>``: that HTTP status with an Anthropic error body (429 adds retry-after)
- ``STOPSEQ``: stops at the stop sequence ``###``
- ``THINK``: a thinking block (with signature), then text
- an ``output_config.format``: :data:`JSON_ANSWER` as the text; a forced tool: that tool
  called with :data:`JSON_ANSWER` as its input
- ``ROUNDS``: answers with a tool call until three tool results are in the history
- ``CALL name {json}`` (the last of the turn's text, after whatever context the client put
  first): "Calling tools." and that tool call; once a tool result is in, ``results: <count>``
- ``DRIP``: a text delta every 0.1 s for a minute
- anything else: ``upstream says: <text>`` in three deltas

Every request body and its headers are recorded.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson
from aiohttp import web

REQUESTS: web.AppKey[list[dict[str, Any]]] = web.AppKey("requests", list)
HEADERS: web.AppKey[list[Any]] = web.AppKey("headers", list)
CANCELLED: web.AppKey[list[str]] = web.AppKey("cancelled", list)
#: The times the upstream's model list was asked for.
MODEL_LISTS: web.AppKey[list[str]] = web.AppKey("model_lists", list)
#: The upstream's own model list.
MODEL_IDS = ["claude-fake-1", "claude-fake-2"]

TOOL_CALLS = [
    ("toolu_weather_1", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}']),
    ("toolu_time_2", "get_time", ['{"tz":', ' "CET"}']),
]
USAGE = {
    "input_tokens": 11,
    "output_tokens": 7,
    "cache_read_input_tokens": 5,
    "cache_creation_input_tokens": 2,
}
COUNT = 4242
#: The answer to a request with a JSON output format (as text, or as a forced tool's input).
JSON_ANSWER = '{"city": "Paris", "temperature": 21}'
_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "stream",
    "tools",
    "tool_choice",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
}


def _error(status: int, kind: str, message: str, headers: Any = None) -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": kind, "message": message}},
        status=status,
        headers=headers,
    )


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _invalid(body: dict[str, Any], counting: bool = False) -> str | None:
    """What the real API would reject in ``body``, or None."""
    unknown = set(body) - _FIELDS
    if unknown:
        return f"{sorted(unknown)[0]}: Extra inputs are not permitted"
    if not counting and not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    if (body.get("temperature") or 0) > 1:
        return "temperature: Input should be less than or equal to 1"
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens", 0)
        if not 1024 <= budget < body.get("max_tokens", 0):
            return "thinking.budget_tokens: must be at least 1024 and less than max_tokens"
        if body.get("temperature", 1) != 1 or "top_k" in body:
            return "temperature and top_k may not be set when thinking is enabled"
        if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
            return "Thinking may not be enabled when tool_choice forces tool use."
        problem = thinking_continuity(body)
        if problem:
            return problem
    messages = body.get("messages") or []
    if not messages or messages[0].get("role") != "user":
        return "messages: the first message must use the user role"
    for i, m in enumerate(messages):
        blocks = _blocks(m.get("content"))
        for b in blocks:
            if b.get("type") == "text" and not b.get("text"):
                return f"messages.{i}: text content blocks must be non-empty"
            if b.get("type") == "tool_use" and not isinstance(b.get("input"), dict):
                return f"messages.{i}: tool_use.input must be an object"
        calls = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        if calls:
            following = _blocks(messages[i + 1].get("content")) if i + 1 < len(messages) else []
            answered = {b.get("tool_use_id") for b in following if b.get("type") == "tool_result"}
            if (i + 1 < len(messages) and messages[i + 1].get("role") != "user") or not set(
                calls
            ) <= answered:
                return (
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                    "immediately after"
                )
        if m.get("role") == "user" and i > 0:
            results = [b for b in blocks if b.get("type") == "tool_result"]
            previous = _blocks(messages[i - 1].get("content"))
            known = {b.get("id") for b in previous if b.get("type") == "tool_use"}
            if any(r.get("tool_use_id") not in known for r in results):
                return f"messages.{i}: unexpected `tool_use_id` in `tool_result` blocks"
    return None


def thinking_continuity(body: dict[str, Any]) -> str | None:
    """Anthropic's rule for thinking in a tool loop: with thinking on, the last assistant turn,
    when it used tools, starts with its thinking."""
    if (body.get("thinking") or {}).get("type") not in ("enabled", "adaptive"):
        return None
    last = next(
        (m for m in reversed(body.get("messages") or []) if m.get("role") == "assistant"), None
    )
    content = last.get("content") if last else None
    if not isinstance(content, list) or not any(b.get("type") == "tool_use" for b in content):
        return None
    if content[0].get("type") in ("thinking", "redacted_thinking"):
        return None
    return (
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        f"`{content[0].get('type')}`. When `thinking` is enabled, a final `assistant` message "
        "must start with a thinking block."
    )


def _last_user(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages", [])):
        if m.get("role") == "user":
            text = "".join(
                b.get("text", "") for b in _blocks(m.get("content")) if b["type"] == "text"
            )
            if text:
                return text
    return ""


def _tool_results(body: dict[str, Any]) -> int:
    return sum(
        1
        for m in body.get("messages", [])
        for b in _blocks(m.get("content"))
        if b.get("type") == "tool_result"
    )


def _script(text: str, results: int) -> tuple[list[dict[str, Any]], str, str | None]:
    """The content blocks (tool inputs as fragment lists), stop reason and stop sequence."""
    if "CALL " in text:
        if results:
            return [{"type": "text", "text": f"results: {results}"}], "end_turn", None
        name, _, args = text[text.rindex("CALL ") + 5 :].strip().partition(" ")
        cut = max(1, len(args) // 2)
        call = {
            "type": "tool_use",
            "id": "toolu_call_1",
            "name": name,
            "input": [args[:cut], args[cut:]],
        }
        return [{"type": "text", "text": "Calling tools."}, call], "tool_use", None
    if text == "TOOLS" or (text == "ROUNDS" and results < 3):
        calls = (
            TOOL_CALLS
            if text == "TOOLS"
            else [(f"toolu_round_{results}", "step", ['{"n": ', str(results), "}"])]
        )
        blocks: list[dict[str, Any]] = [{"type": "text", "text": "Let me check."}] * (
            text == "TOOLS"
        )
        blocks += [
            {"type": "tool_use", "id": cid, "name": name, "input": frags}
            for cid, name, frags in calls
        ]
        return blocks, "tool_use", None
    if text.startswith("FORCED:"):
        name = text.split(":", 1)[1]
        return (
            [{"type": "tool_use", "id": "toolu_json", "name": name, "input": [JSON_ANSWER]}],
            "tool_use",
            None,
        )
    if text == "JSON":
        return [{"type": "text", "text": JSON_ANSWER}], "end_turn", None
    if text == "STOPSEQ":
        return [{"type": "text", "text": "upstream stops here"}], "stop_sequence", "###"
    if text == "THINK":
        return (
            [
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig-fake"},
                {"type": "text", "text": "upstream thought"},
            ],
            "end_turn",
            None,
        )
    return [{"type": "text", "text": f"upstream says: {text}"}], "end_turn", None


def _frame(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


async def messages(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[REQUESTS].append(body)
    request.app[HEADERS].append(request.headers.copy())
    if not request.headers.get("x-api-key") or not request.headers.get("anthropic-version"):
        return _error(401, "authentication_error", "x-api-key and anthropic-version required")
    problem = _invalid(body)
    if problem:
        return _error(400, "invalid_request_error", problem)
    text = _last_user(body)
    model = body["model"]
    if text.startswith("STATUS:"):
        status = int(text.split(":", 1)[1])
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        headers = {"retry-after": "7"} if status == 429 else None
        return _error(status, kind, f"fake upstream refuses with {status}", headers)
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool":
        text = "FORCED:" + choice["name"]
    elif (body.get("output_config") or {}).get("format"):
        text = "JSON"
    blocks, reason, sequence = _script(text, _tool_results(body))
    if (body.get("thinking") or {}).get("type") == "enabled" and blocks[0]["type"] != "thinking":
        blocks.insert(0, {"type": "thinking", "thinking": "Let me think.", "signature": "sig-fake"})
    if not body.get("stream"):
        content = [
            {**b, "input": orjson.loads("".join(b["input"]))} if b["type"] == "tool_use" else b
            for b in blocks
        ]
        return web.json_response(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": reason,
                "stop_sequence": sequence,
                "usage": USAGE,
            }
        )
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    start_usage = {**USAGE, "output_tokens": 1}
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    try:
        await resp.write(_frame({"type": "message_start", "message": message}))
        await resp.write(_frame({"type": "ping"}))
        if text in ("BREAK", "ERRFRAME", "DRIP", "HALFFRAME"):
            await _failing(request, resp, text)
            return resp
        for index, b in enumerate(blocks):
            await _block(resp, index, b)
        await resp.write(
            _frame(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": {"output_tokens": USAGE["output_tokens"]},
                }
            )
        )
        if text == "NOFINISH":
            await resp.write_eof()
            return resp
        await resp.write(_frame({"type": "message_stop"}))
        await resp.write_eof()
    except (asyncio.CancelledError, ConnectionResetError):
        request.app[CANCELLED].append(text)
        raise
    return resp


async def _block(resp: web.StreamResponse, index: int, b: dict[str, Any]) -> None:
    kind = b["type"]
    if kind == "tool_use":
        start = {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": f} for f in b["input"]]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": b["thinking"]},
            {"type": "signature_delta", "signature": b["signature"]},
        ]
    else:
        start = {"type": "text", "text": ""}
        words = b["text"].split(" ")
        deltas = [
            {"type": "text_delta", "text": w + (" " if i < len(words) - 1 else "")}
            for i, w in enumerate(words)
        ]
    await resp.write(
        _frame({"type": "content_block_start", "index": index, "content_block": start})
    )
    for d in deltas:
        await resp.write(_frame({"type": "content_block_delta", "index": index, "delta": d}))
    await resp.write(_frame({"type": "content_block_stop", "index": index}))


async def _failing(request: web.Request, resp: web.StreamResponse, text: str) -> None:
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    await resp.write(_frame(start))

    def delta(t: str) -> bytes:
        return _frame(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
        )

    if text == "DRIP":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await resp.write(delta("drip "))
            await asyncio.sleep(0.1)
        return
    await resp.write(delta("upstream "))
    if text == "HALFFRAME":
        half = delta("cut")
        await resp.write(half[: len(half) // 2])
        await asyncio.sleep(0.05)  # the gateway reads the half on its own
        assert request.transport is not None
        request.transport.close()
        return
    if text == "BREAK":
        await resp.write(delta("says: "))
        assert request.transport is not None
        request.transport.close()
        return
    await resp.write(
        _frame({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    )
    await resp.write_eof()


async def count_tokens(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[REQUESTS].append(body)
    request.app[HEADERS].append(request.headers.copy())
    problem = _invalid(body, counting=True)
    if problem or "max_tokens" in body:
        return _error(400, "invalid_request_error", problem or "max_tokens: Extra inputs")
    return web.json_response({"input_tokens": COUNT})


async def model_list(request: web.Request) -> web.Response:
    request.app[MODEL_LISTS].append(request.path_qs)
    models = [{"id": m, "type": "model", "object": "model"} for m in MODEL_IDS]
    return web.json_response({"object": "list", "data": models, "has_more": False})


def make_app() -> web.Application:
    app = web.Application()
    app[MODEL_LISTS] = []
    app[REQUESTS] = []
    app[HEADERS] = []
    app[CANCELLED] = []
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_get("/v1/models", model_list)
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=lambda *_: print("ready", flush=True),
        handler_cancellation=True,
    )
