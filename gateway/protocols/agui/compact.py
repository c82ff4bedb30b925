"""The compact form of AG-UI runs: the short vocabulary of hookgate's original design.

``run_started``, ``text_delta``, ``tool_call``, ``tool_result``, ``run_completed`` and
``run_error``, sent as the SSE ``event:`` with small JSON data (``{"delta": "..."}``), derived
from the full AG-UI events. It is not AG-UI: official AG-UI clients and validators do not read
it, so it is only sent when asked for (``?format=compact``).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway import JSON


class CompactTranslator:
    """AG-UI events -> the compact vocabulary, one ``(name, data)`` pair or ``None`` per event."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[str, list[str]] = {}  # tool call id -> [name, argument fragments...]

    def feed(self, ev: dict[str, Any]) -> tuple[str, dict[str, JSON]] | None:
        kind = ev.get("type")
        if kind == "TEXT_MESSAGE_CONTENT":
            return "text_delta", {"delta": ev["delta"], "message_id": ev["messageId"]}
        if kind == "TOOL_CALL_START":
            self._calls[ev["toolCallId"]] = [ev["toolCallName"]]
        elif kind == "TOOL_CALL_ARGS":
            self._calls.setdefault(ev["toolCallId"], [""]).append(ev["delta"])
        elif kind == "TOOL_CALL_END":
            name, *args = self._calls.get(ev["toolCallId"], [""])
            text = "".join(args) or "{}"
            try:
                arguments: JSON = orjson.loads(text)
            except orjson.JSONDecodeError:
                arguments = text
            return "tool_call", {"id": ev["toolCallId"], "name": name, "arguments": arguments}
        elif kind == "TOOL_CALL_RESULT":
            name = self._calls.get(ev["toolCallId"], [""])[0]
            is_error = bool((ev.get("metadata") or {}).get("isError"))
            data = {"id": ev["toolCallId"], "name": name, "content": ev["content"]}
            return "tool_result", {**data, "is_error": is_error}
        elif kind == "RUN_STARTED":
            return "run_started", {"run_id": ev["runId"], "thread_id": ev["threadId"]}
        elif kind == "RUN_FINISHED":
            outcome = ev.get("outcome") or {}
            data = {
                "run_id": ev["runId"],
                "thread_id": ev["threadId"],
                "status": "cancelled" if outcome.get("type") == "cancelled" else "completed",
            }
            if outcome.get("pendingToolCallIds"):
                data["pending_tool_calls"] = outcome["pendingToolCallIds"]
            return "run_completed", data
        elif kind == "RUN_ERROR":
            error = {"message": ev["message"]}
            if ev.get("code"):
                error["code"] = ev["code"]
            return "run_error", error
        return None


def compact_frame(seq: int, name: str, data: dict[str, JSON]) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, name.encode(), orjson.dumps(data))
