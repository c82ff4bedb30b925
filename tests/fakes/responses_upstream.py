"""A scripted upstream that speaks OpenAI's Responses API (``POST /v1/responses``), in-process
(``aiohttp_server``).

What it answers is chosen by the text of the last user message (its last text part):

- ``CALL name {json}; name2 {json}``: while no tool output follows that message, "Calling
  tools." and those calls (ids ``call_1``, ...); a tool the request declares as ``custom`` is
  called with a ``custom_tool_call`` whose input is the JSON's ``input``, and a tool of a
  ``namespace`` (named ``<namespace>.<name>`` in the script) with its namespace; then
  ``results: <each output, joined by " | ">``
- ``FAIL``: text, then a ``response.failed`` event
- anything else: ``upstream says: <text>``, with a reasoning item first

Every request body is recorded (:data:`REQUESTS`).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

REQUESTS: web.AppKey[list[dict[str, Any]]] = web.AppKey("requests", list)
USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 2},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 1},
    "total_tokens": 17,
}


def _last_user(items: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The last user message's last text, and the tool outputs after it."""
    for i in range(len(items) - 1, -1, -1):
        item = items[i]
        if item.get("type", "message") == "message" and item.get("role") == "user":
            content = item.get("content")
            texts = (
                [content]
                if isinstance(content, str)
                else [p.get("text", "") for p in content if p.get("type") == "input_text"]
            )
            outputs = [
                str(later.get("output"))
                for later in items[i + 1 :]
                if later.get("type") in ("function_call_output", "custom_tool_call_output")
            ]
            return (texts[-1] if texts else ""), outputs
    return "", []


def _output(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = (
        body["input"]
        if isinstance(body["input"], list)
        else [{"type": "message", "role": "user", "content": body["input"]}]
    )
    text, outputs = _last_user(items)
    if text.startswith("CALL ") and not outputs:
        tools = body.get("tools") or []
        custom = {t["name"] for t in tools if t.get("type") == "custom"}
        out: list[dict[str, Any]] = [_message("Calling tools.")]
        for n, spec in enumerate(text[5:].split(";"), start=1):
            name, _, args = spec.strip().partition(" ")
            namespace, _, short = name.rpartition(".")
            call_id, short = f"call_{n}", short or name
            if short in custom:
                given = orjson.loads(args)["input"]
                out.append(
                    {
                        "type": "custom_tool_call",
                        "id": f"ctc_{n}",
                        "call_id": call_id,
                        "name": short,
                        "input": given,
                    }
                )
            else:
                item = {
                    "type": "function_call",
                    "id": f"fc_{n}",
                    "call_id": call_id,
                    "name": short,
                    "arguments": args or "{}",
                    "status": "completed",
                }
                if namespace:
                    item["namespace"] = namespace
                out.append(item)
        return out
    if text.startswith("CALL "):
        return [_message("results: " + " | ".join(outputs))]
    reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "thinking it over"}],
    }
    return [reasoning, _message(f"upstream says: {text}")]


def _message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_up",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _response(body: dict[str, Any], status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "resp_up",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "model": body.get("model"),
        "output": output,
        "error": None,
        "usage": USAGE if status == "completed" else None,
    }


def _event(seq: list[int], kind: str, **fields: Any) -> bytes:
    seq[0] += 1
    data = orjson.dumps({"type": kind, "sequence_number": seq[0], **fields})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


async def responses(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[REQUESTS].append(body)
    if request.headers.get("authorization") != "Bearer responses-secret":
        return web.json_response({"error": {"message": "bad key"}}, status=401)
    output = _output(body)
    if not body.get("stream"):
        return web.json_response(_response(body, "completed", output))
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    seq = [-1]
    await resp.write(_event(seq, "response.created", response=_response(body, "in_progress", [])))
    for index, item in enumerate(output):
        kind = item["type"]
        opened = {**item, "status": "in_progress"}
        if kind == "message":
            opened["content"] = []
        elif kind == "function_call":
            opened["arguments"] = ""
        elif kind == "custom_tool_call":
            opened["input"] = ""
        await resp.write(_event(seq, "response.output_item.added", output_index=index, item=opened))
        where = {"item_id": item["id"], "output_index": index}
        if kind == "message":
            text = item["content"][0]["text"]
            for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                await resp.write(
                    _event(
                        seq,
                        "response.output_text.delta",
                        **where,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                    )
                )
            if text.startswith("upstream says: FAIL"):
                failed = {
                    **_response(body, "failed", []),
                    "error": {"code": "server_error", "message": "the model broke"},
                }
                await resp.write(_event(seq, "response.failed", response=failed))
                await resp.write_eof()
                return resp
        elif kind == "reasoning":
            await resp.write(
                _event(
                    seq,
                    "response.reasoning_text.delta",
                    **where,
                    content_index=0,
                    delta=item["content"][0]["text"],
                )
            )
        elif kind == "function_call":
            args = item["arguments"]
            for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
                await resp.write(
                    _event(seq, "response.function_call_arguments.delta", **where, delta=piece)
                )
        elif kind == "custom_tool_call":
            await resp.write(
                _event(seq, "response.custom_tool_call_input.delta", **where, delta=item["input"])
            )
        await resp.write(_event(seq, "response.output_item.done", output_index=index, item=item))
    await resp.write(
        _event(seq, "response.completed", response=_response(body, "completed", output))
    )
    await resp.write_eof()
    return resp


def make_app() -> web.Application:
    app = web.Application()
    app[REQUESTS] = []
    app.router.add_post("/v1/responses", responses)
    return app
